"""Generated vs hand-written value-and-gradient of the two-layer MLP of tests/corpus_models.py.

    python benchmarks/mlp_vs_hand.py [--batch 32] [--repeat 2000]

Prints the median time of each (same process, same inputs, interleaved rounds)
and their ratio. BLAS threads are pinned to 1 before NumPy is imported.
"""

import argparse
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

import adcompiler as ad  # noqa: E402
from benchmarks.handcompare import compare  # noqa: E402
from tests.corpus_models import mlp  # noqa: E402


def mlp_by_hand(W1, b1, W2, b2, x, y):
    """The value and gradient a careful person writes in NumPy."""
    n = x.shape[0]
    h = np.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    log_probs = shifted - np.log(total)
    value = -np.sum(y * log_probs) / n
    dlogits = (exp / total * y.sum(axis=1, keepdims=True) - y) / n
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(axis=0)
    dz = (dlogits @ W2.T) * (1 - h * h)
    return value, (x.T @ dz, dz.sum(axis=0), dW2, db2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2000)
    opts = parser.parse_args()
    rng = np.random.default_rng(0)
    sizes = (784, 128, 10)
    args = (
        rng.normal(size=sizes[:2]) * 0.05,
        np.zeros(sizes[1]),
        rng.normal(size=sizes[1:]) * 0.05,
        np.zeros(sizes[2]),
        rng.normal(size=(opts.batch, sizes[0])),
        np.eye(10)[rng.integers(0, 10, opts.batch)],
    )
    generated = ad.value_and_grad(mlp, wrt=("W1", "b1", "W2", "b2"))
    gen, hand = compare(generated, mlp_by_hand, args, opts.repeat)
    print(
        f"MLP 784-128-10, batch {opts.batch}: generated {gen * 1e6:.1f} us, "
        f"hand-written {hand * 1e6:.1f} us, ratio {gen / hand:.2f}"
    )


if __name__ == "__main__":
    main()
