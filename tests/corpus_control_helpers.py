"""Helpers that `tests/corpus_control.py` calls across a module boundary (issue 3, calls).

They are imported two ways there, as a module (`helpers.softplus(x)`) and by name
(`from tests.corpus_control_helpers import dense`), and some call each other.
"""

import numpy as np


def softplus(z):
    """log(1 + exp(z)), stable for large |z|."""
    return np.logaddexp(0.0, z)


def dense(W, b, h, activation="tanh"):
    """One layer; `activation` is a static string chosen by the caller."""
    z = W @ h + b
    if activation == "tanh":
        return np.tanh(z)
    return softplus(z)


def squared_norm(v, scale=1.0):
    """scale * sum(v**2): a keyword argument with a default."""
    return scale * np.sum(v * v)


def moments(v):
    """Two results as a tuple: the mean and the mean square."""
    return np.mean(v), np.mean(v * v)


def repeat_tanh(v, n):
    """A loop inside a helper of another module."""
    for _ in range(n):
        v = np.tanh(v + 0.1)
    return v


def clipped_square(v, limit):
    """A branch inside a helper of another module (on a scalar)."""
    if v > limit:
        return limit * (2.0 * v - limit)
    return v * v
