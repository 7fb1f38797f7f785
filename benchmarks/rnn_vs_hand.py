"""Generated vs hand-written value-and-gradient of the RNN in tests/corpus_models.py.

    python benchmarks/rnn_vs_hand.py [--steps 50] [--hidden 32] [--inputs 16]

The RNN fills a preallocated state array in a loop (`H[t + 1] = tanh(...)`); the
hand-written backward pass is the one a person writes with NumPy. Medians of
interleaved rounds in one process, BLAS pinned to one thread.
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
from tests.corpus_models import rnn  # noqa: E402


def rnn_by_hand(Wh, Wx, b, xs, h0):
    T = xs.shape[0]
    H = np.zeros((T + 1, h0.shape[0]))
    H[0] = h0
    for t in range(T):
        H[t + 1] = np.tanh(Wh @ H[t] + Wx @ xs[t] + b)
    value = np.sum(H[1:] ** 2) / T
    dH = 2.0 * H / T
    dH[0] = 0.0
    dWh, dWx, db = np.zeros_like(Wh), np.zeros_like(Wx), np.zeros_like(b)
    for t in reversed(range(T)):
        da = dH[t + 1] * (1.0 - H[t + 1] * H[t + 1])
        dWh += np.outer(da, H[t])
        dWx += np.outer(da, xs[t])
        db += da
        dH[t] += Wh.T @ da
    return value, (dWh, dWx, db)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--inputs", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=500)
    opts = parser.parse_args()
    rng = np.random.default_rng(0)
    h, d = opts.hidden, opts.inputs
    args = (
        rng.normal(size=(h, h)) / np.sqrt(h),
        rng.normal(size=(h, d)) / np.sqrt(d),
        rng.normal(size=h) * 0.1,
        rng.normal(size=(opts.steps, d)),
        rng.normal(size=h),
    )
    generated = ad.value_and_grad(rnn, wrt=("Wh", "Wx", "b"))
    gen, hand = compare(generated, rnn_by_hand, args, opts.repeat)
    print(
        f"RNN T={opts.steps}, H={h}, D={d}: generated {gen * 1e6:.0f} us, "
        f"hand-written {hand * 1e6:.0f} us, ratio {gen / hand:.2f}"
    )


if __name__ == "__main__":
    main()
