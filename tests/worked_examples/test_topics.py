"""Every topic end to end: it runs on the CPU backend, checks all its claims, and its --json is valid."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toolkit import backend
from worked_examples.runner import TopicUnavailable, missing, run_topic
from worked_examples.topics import TOPICS

from .conftest import require
from .payload import check_payload


@pytest.mark.parametrize("name", list(TOPICS))
def test_topic_runs_and_its_json_is_valid(name, examples):
    require(name)
    ex = examples[name]
    assert ex.blocks, f"{name} showed nothing"
    text = json.dumps({"backend": "cpu", "topics": [ex.as_json()]}, ensure_ascii=False)
    payload = check_payload(text)
    assert payload["topics"][0]["name"] == name


@pytest.mark.parametrize("name", list(TOPICS))
def test_topic_documents_and_needs(name):
    topic = TOPICS[name]
    assert topic.documents and topic.needs and topic.summary
    assert len(topic.summary) <= 60, "the table of topics gives each a one-line description"


def test_an_unavailable_topic_says_what_it_waits_for(monkeypatch):
    import worked_examples.runner as runner

    monkeypatch.setattr(runner, "missing", lambda topic: ["toolkit.ops.dense is not built yet"])
    with pytest.raises(TopicUnavailable, match="toolkit.ops.dense is not built yet"):
        run_topic("perceptron")


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(TOPICS))
def test_topic_on_the_gpu_gives_the_cpu_numbers(name, examples):
    """Same statuses, same numbers (float64 kernels) on the GPU backend."""
    require(name)
    if not backend.gpu_available():
        pytest.skip(backend.gpu_status()[1])
    with backend.use("gpu"):
        gaps = missing(TOPICS[name])
        if gaps:
            pytest.skip("; ".join(gaps))
        ex = run_topic(name, plain=True)
    check_payload(json.dumps({"backend": "gpu", "topics": [ex.as_json()]}))
    cpu = {r.claim.id: r for r in examples[name].results}
    for r in ex.results:
        assert r.status == cpu[r.claim.id].status, r.claim.id
        if isinstance(r.computed, str):
            assert r.computed == cpu[r.claim.id].computed
        else:
            np.testing.assert_allclose(np.ravel(r.computed), np.ravel(cpu[r.claim.id].computed), rtol=1e-9,
                                       atol=1e-12, err_msg=r.claim.id)
