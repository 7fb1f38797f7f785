"""Logistic-regression loss with an L2 penalty.

``mean(log(1 + exp(-y * (X @ w + b)))) + lam / 2 * |w|^2`` with labels in {-1, +1}.
"""

import numpy as np

NAME = "logistic"
WRT = ("w", "b")
STATIC = ()
SIZES = {"small": {"n": 64, "d": 10}, "large": {"n": 10_000, "d": 100}}
SIZE_LABELS = {"small": "64x10", "large": "10,000x100"}


def primal(w, b, X, y, lam):
    margin = y * (X @ w + b)
    return np.mean(np.log1p(np.exp(-margin))) + 0.5 * lam * np.sum(w * w)


def make_inputs(size, seed=0):
    n, d = SIZES[size]["n"], SIZES[size]["d"]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    true_w = rng.standard_normal(d)
    y = np.where(X @ true_w + 0.5 * rng.standard_normal(n) > 0, 1.0, -1.0)
    return {
        "w": 0.1 * rng.standard_normal(d),
        "b": 0.05,
        "X": X,
        "y": y,
        "lam": 1e-2,
    }


def value_and_grad(w, b, X, y, lam):
    """One pass over X forward, one back; the exponentials are reused in place."""
    n = X.shape[0]
    t = X @ w
    t += b
    t *= y
    np.negative(t, out=t)
    np.exp(t, out=t)  # t = exp(-margin)
    value = np.log1p(t).sum() / n + 0.5 * lam * (w @ w)
    # d/d margin of log(1 + exp(-margin)) is -exp(-margin) / (1 + exp(-margin))
    t /= 1.0 + t
    t *= y
    t *= -1.0 / n
    grad_w = X.T @ t
    grad_w += lam * w
    return value, (grad_w, t.sum())


def torch_primal(torch):
    def loss(w, b, X, y, lam):
        margin = y * (X @ w + b)
        return torch.mean(torch.log1p(torch.exp(-margin))) + 0.5 * lam * torch.sum(w * w)

    return loss
