"""The command line: the table, one topic, --json, --plain, errata, and its errors."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest

from toolkit import backend
from worked_examples import __main__ as cli
from worked_examples.topics import TOPICS

from .payload import check_payload


def run(capsys, *argv):
    """(exit code, stdout, stderr with its 80-column line breaks undone)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def _fits(text: str) -> bool:
    return all(len(line) <= 80 for line in text.splitlines())


def test_table_of_topics(capsys):
    code, out, _ = run(capsys, "--plain")
    assert code == 0
    for name in TOPICS:
        assert name in out
    assert "004_dbdc799774d4d44b.txt" in out and _fits(out)


def test_table_of_topics_as_json(capsys):
    code, out, _ = run(capsys, "--json")
    payload = json.loads(out)
    assert code == 0 and [t["name"] for t in payload["topics"]] == list(TOPICS)


def test_one_topic_plain_has_no_colour_and_fits_80_columns(capsys):
    code, out, _ = run(capsys, "perceptron", "--plain")
    assert code == 0
    assert "\x1b" not in out and _fits(out)
    assert "McCulloch-Pitts" in out


def test_one_topic_as_json(capsys):
    code, out, _ = run(capsys, "perceptron", "--json", "--backend", "cpu")
    assert code == 0
    payload = check_payload(out)
    assert payload["backend"] == "cpu" and payload["topics"][0]["name"] == "perceptron"


def test_errata(capsys, monkeypatch, examples):
    monkeypatch.setattr(cli, "run_all", lambda plain=False: (list(examples.values()), {}))
    code, out, _ = run(capsys, "errata", "--plain")
    assert code == 0 and "ERRATUM" in out and "why:" in out and _fits(out)
    code, out, _ = run(capsys, "errata", "--json")
    listed = json.loads(out)["errata"]
    expected = sorted(r.claim.id for ex in examples.values() for r in ex.results if r.status == "erratum")
    assert sorted(e["id"] for e in listed) == expected
    assert all(e["reason"] and e["printed"] and e["computed_text"] for e in listed)


def test_all_runs_every_topic(capsys, monkeypatch, examples):
    monkeypatch.setattr(cli, "run_all", lambda plain=False: (list(examples.values()), {}))
    code, out, _ = run(capsys, "--all", "--plain")
    assert code == 0
    for name in examples:
        assert f" {name} " in out


def test_unknown_topic_suggests_close_matches(capsys):
    code, out, err = run(capsys, "activaton")
    assert code == 2 and not out
    assert "unknown topic 'activaton'" in err and "did you mean: activations" in err


def test_topic_and_all_together_is_refused(capsys):
    code, _, err = run(capsys, "perceptron", "--all")
    assert code == 2 and "not both" in err


def test_gpu_backend_without_a_gpu_is_a_clear_error(capsys):
    if backend.gpu_available():
        pytest.skip("this machine has a usable GPU")
    code, out, err = run(capsys, "perceptron", "--backend", "gpu")
    assert code == 2 and not out
    assert "--backend gpu" in err and "GPU" in err and "Traceback" not in err
    assert backend.current() == "cpu"  # the failed switch left the backend alone


def test_unavailable_topic_exits_3(capsys, monkeypatch):
    import worked_examples.runner as runner

    monkeypatch.setattr(runner, "missing", lambda topic: ["toolkit.ops.optim is not built yet"])
    code, out, err = run(capsys, "perceptron")
    assert code == 3 and "toolkit.ops.optim is not built yet" in err


def test_console_script_points_at_main():
    scripts = [e for e in entry_points(group="console_scripts") if e.name == "worked-examples"]
    if not scripts:
        pytest.skip("the package is not installed with its console scripts")
    assert scripts[0].value == "worked_examples.__main__:main"
