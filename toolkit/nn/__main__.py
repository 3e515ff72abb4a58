"""python -m toolkit.nn [--epochs N] [--batch-size B]: LeNet-5 on the digits, Keras style.

Prints the model summary and the shape of every layer's output found by running it, then (when
scikit-learn is installed: it provides the digits) trains for N epochs on 80% of the 1797 digits
upsampled to 32x32 and reports the accuracy on the other 20%.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console

from . import zoo
from .datasets import load_digits_32x32
from .summary import as_table
from .utils import to_categorical


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolkit.nn", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    console = Console()
    model = zoo.lenet5(seed=args.seed)
    console.print(as_table(model.summary_dict()))
    rows = model.trace(np.zeros((1, 32, 32, 1), np.float32))
    console.print("shapes by running the layers: " + " -> ".join(f"{r['output_shape'][1:]}" for r in rows))
    try:
        x, labels = load_digits_32x32()
    except ImportError as exc:
        console.print(f"[yellow]no training run: {exc}[/yellow]")
        return 0
    order = np.random.default_rng(args.seed).permutation(len(x))
    split = int(0.8 * len(x))
    train, test = order[:split], order[split:]
    y = to_categorical(labels, 10)
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(x[train], y[train], epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    loss, accuracy = model.evaluate(x[test], y[test])
    console.print(f"{args.epochs} epoch(s) in {time.perf_counter() - started:.1f} s; "
                  f"held-out loss {loss:.4f}, accuracy {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
