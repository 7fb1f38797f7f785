"""Small models whose gradients are tested and whose generated source is golden."""

import numpy
import numpy as np
from numpy import exp, tanh


def logistic_regression(w, b, x, y):
    """Mean logistic loss of a linear classifier, with an L2 penalty."""
    logits = x @ w + b
    loss = np.mean(np.logaddexp(0.0, logits) - y * logits)
    return loss + 0.01 * np.sum(w * w)


def mlp(W1, b1, W2, b2, x, y):
    """Two-layer tanh MLP with a softmax cross-entropy loss (y one-hot)."""
    h = np.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    return -np.sum(y * log_probs) / x.shape[0]


def broadcast_reduce(a, b, c):
    """Broadcasting between shapes (3, 4), (4,) and (3, 1), mixed with reductions."""
    s = a * b + c
    m = s.mean(axis=0)
    t = np.sqrt(np.sum(s**2, axis=1, keepdims=True) + 1.0)
    return np.sum(m * b) + np.max(t) - c.sum() / 2


def import_styles(x):
    """NumPy reached three ways: `np.`, `numpy.` and names imported from numpy."""
    return numpy.sum(exp(x) * tanh(x)) + np.sum(x)


SCALE = 3.0


def reads_global(x):
    return np.sum(x * SCALE)


WEIGHTS = np.array([1.0, -2.0, 0.5])


def reads_global_array(x):
    return np.sum(x * WEIGHTS)


def helper(z, power=2):
    return z**power


def calls_helper(x, y):
    return np.sum(helper(x) + helper(y, power=3))


def with_default(x, scale=2.0):
    return np.sum(x * scale)


def indexing(x, idx):
    first = x[0]
    tail = x[1:, ::2]
    picked = x[idx]
    return np.sum(first) + np.sum(tail**2) + np.sum(picked * x[-1, None])


def tuple_output(x, y):
    return np.sum(x * y), x * 2.0


def vector_output(x):
    return np.sin(x)


def integer_wrt(n, x):
    return np.sum(x * n)


def rnn(Wh, Wx, b, xs, h0):
    """An RNN filling a preallocated state array, with a squared-state loss."""
    T = xs.shape[0]
    H = np.zeros((T + 1, h0.shape[0]))
    H[0] = h0
    for t in range(T):
        H[t + 1] = np.tanh(Wh @ H[t] + Wx @ xs[t] + b)
    return np.sum(H[1:] ** 2) / T


def damped_until_small(x, rate):
    """A `while` loop with a data-dependent trip count and a `break`."""
    energy = np.sum(x * x)
    steps = 0
    while energy > 1e-3:
        x = x * rate - 0.1 * np.sin(x)
        energy = np.sum(x * x)
        steps = steps + 1
        if steps >= 50:
            break
    return energy + np.sum(x)


def mlp_params(params, x, y):
    """A two-layer MLP whose parameters are a dict, with a squared error."""
    h = np.tanh(x @ params["W1"] + params["b1"])
    out = h @ params["W2"] + params["b2"]
    return np.mean((out - y) ** 2)
