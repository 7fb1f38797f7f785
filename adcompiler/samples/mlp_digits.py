"""A two-hidden-layer MLP classifying the 8x8 handwritten digits (1,797 images, 10 classes).

    python -m adcompiler.samples.mlp_digits                  # or: adcompiler train mlp_digits
    python -m adcompiler.samples.mlp_digits --epochs 5 --lr 1e-3 --seed 1 --checkpoint mlp.ckpt

The loss is plain NumPy; adcompiler generates its gradient with respect to
the six parameter arrays, and ``adcompiler.train.fit`` runs Adam on
mini-batches. Data: adcompiler/samples/data/digits.npz (see docs/training.md), split
70/15/15 into train/validation/test with a fixed seed.
"""

import os
import sys

import numpy as np

from adcompiler.train import split
from adcompiler.train.losses import l2_penalty, softmax_cross_entropy
from adcompiler.train.metrics import accuracy as logits_accuracy

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "digits.npz")
HIDDEN = (128, 64)
WEIGHT_DECAY = 1e-4

defaults = {"epochs": 40, "batch_size": 64, "lr": 2e-3, "optimizer": "adam"}


def predict(W1, b1, W2, b2, W3, b3, x):
    """Logits of the 10 classes for images ``x`` of shape (n, 64)."""
    h1 = np.maximum(x @ W1 + b1, 0.0)
    h2 = np.maximum(h1 @ W2 + b2, 0.0)
    return h2 @ W3 + b3


def loss(W1, b1, W2, b2, W3, b3, x, y):
    """Mean softmax cross-entropy plus a small L2 penalty on the weights."""
    h1 = np.maximum(x @ W1 + b1, 0.0)
    h2 = np.maximum(h1 @ W2 + b2, 0.0)
    logits = h2 @ W3 + b3
    penalty = l2_penalty(W1) + l2_penalty(W2) + l2_penalty(W3)
    return softmax_cross_entropy(logits, y) + WEIGHT_DECAY * penalty


def accuracy(W1, b1, W2, b2, W3, b3, x, y):
    """Share of correctly classified images."""
    return logits_accuracy(predict(W1, b1, W2, b2, W3, b3, x), y)


metric = accuracy


def init_params(seed):
    """He-initialized weights, zero biases."""
    rng = np.random.default_rng(seed)
    sizes = (64,) + HIDDEN + (10,)
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        params[f"W{i}"] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
        params[f"b{i}"] = np.zeros(fan_out)
    return params


def load_data():
    """Pixels scaled to [0, 1] as float64 rows of 64; labels as int64."""
    with np.load(DATA, allow_pickle=False) as archive:
        x = archive["images"].reshape(-1, 64).astype(np.float64) / 16.0
        y = archive["labels"].astype(np.int64)
    train, validation, test = split((x, y), (0.7, 0.15, 0.15), seed=0)
    return {"train": train, "validation": validation, "test": test}


if __name__ == "__main__":
    from adcompiler.train.cli import run_module

    sys.exit(run_module(sys.modules[__name__], sys.argv[1:]))
