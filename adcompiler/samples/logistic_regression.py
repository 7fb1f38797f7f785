"""Logistic regression: tell handwritten 3s from 8s (a binary task on the digits data).

    python -m adcompiler.samples.logistic_regression
    adcompiler train logistic_regression --epochs 20 --seed 1  # with options

The model is ``sigmoid(x @ w + b)``, trained on the numerically stable
binary cross-entropy of its logits. Prints the test accuracy.
Data: adcompiler/samples/data/digits.npz, the images labelled 3 or 8 (see docs/training.md).
"""

import os
import sys

import numpy as np

from adcompiler.train import split
from adcompiler.train.losses import binary_cross_entropy, l2_penalty
from adcompiler.train.metrics import binary_accuracy

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "digits.npz")
POSITIVE, NEGATIVE = 8, 3

defaults = {"epochs": 30, "batch_size": 32, "lr": 0.05, "optimizer": "momentum"}


def loss(w, b, x, y):
    """Binary cross-entropy of the logits ``x @ w + b`` plus a small L2 penalty."""
    return binary_cross_entropy(x @ w + b, y) + 1e-3 * l2_penalty(w)


def accuracy(w, b, x, y):
    return binary_accuracy(x @ w + b, y)


metric = accuracy


def init_params(seed):
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(0.0, 0.01, size=64), "b": np.zeros(())}


def load_data():
    with np.load(DATA, allow_pickle=False) as archive:
        images, labels = archive["images"], archive["labels"]
    keep = (labels == POSITIVE) | (labels == NEGATIVE)
    x = images[keep].reshape(-1, 64).astype(np.float64) / 16.0
    y = (labels[keep] == POSITIVE).astype(np.float64)
    train, validation, test = split((x, y), (0.6, 0.2, 0.2), seed=0)
    return {"train": train, "validation": validation, "test": test}


def report(params, data):
    """What the test accuracy was measured on (printed by the CLI after training)."""
    return f"{POSITIVE}s vs {NEGATIVE}s: {len(data['test'][1])} test images"


if __name__ == "__main__":
    from adcompiler.train.cli import run_module

    sys.exit(run_module(sys.modules[__name__], sys.argv[1:]))
