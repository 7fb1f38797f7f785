"""Losses against their textbook definitions, and their generated gradients against
central finite differences."""

import numpy as np
import pytest

from adcompiler.train import losses, metrics

try:
    from test_train_helpers import needs_compiler
except ImportError:  # collected as part of a package
    from tests.test_train_helpers import needs_compiler

rng = np.random.default_rng(0)
LOGITS = rng.normal(size=(5, 4))
LABELS = np.array([0, 3, 1, 1, 2])
ONEHOT = np.eye(4)[LABELS]
Z = rng.normal(size=6)
Y01 = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])


def naive_softmax_cross_entropy(logits, labels):
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return -np.mean(np.log(p[np.arange(len(labels)), labels]))


def test_mean_squared_error():
    a, b = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    assert losses.mean_squared_error(a, b) == pytest.approx(((a - b) ** 2).sum() / 6)


def test_binary_cross_entropy_matches_definition():
    s = 1 / (1 + np.exp(-Z))
    expected = -np.mean(Y01 * np.log(s) + (1 - Y01) * np.log(1 - s))
    assert losses.binary_cross_entropy(Z, Y01) == pytest.approx(expected, rel=1e-12)


def test_binary_cross_entropy_is_stable_for_large_logits():
    z = np.array([800.0, -800.0, 800.0])
    y = np.array([1.0, 0.0, 0.0])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        value = losses.binary_cross_entropy(z, y)
    assert value == pytest.approx(800.0 / 3)


def test_softmax_cross_entropy_matches_definition():
    expected = naive_softmax_cross_entropy(LOGITS, LABELS)
    assert losses.softmax_cross_entropy(LOGITS, LABELS) == pytest.approx(expected, rel=1e-12)
    assert losses.softmax_cross_entropy_onehot(LOGITS, ONEHOT) == pytest.approx(expected, rel=1e-12)
    log_p = losses.log_softmax(LOGITS)
    np.testing.assert_allclose(np.exp(log_p).sum(axis=1), 1.0)


def test_softmax_cross_entropy_is_stable_for_large_logits():
    big = LOGITS * 1e4
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        value = losses.softmax_cross_entropy(big, LABELS)
    assert np.isfinite(value)
    # At this scale log-sum-exp equals the largest logit, so the loss is max - logit[label].
    expected = np.mean(big.max(axis=1) - big[np.arange(5), LABELS])
    assert value == pytest.approx(expected, rel=1e-9)


def test_l2_penalty_and_metrics():
    w = np.array([[1.0, -2.0], [3.0, 0.0]])
    assert losses.l2_penalty(w) == pytest.approx(7.0)
    assert metrics.accuracy(np.array([[1.0, 2.0], [3.0, 0.0]]), np.array([1, 1])) == 0.5
    assert metrics.binary_accuracy(np.array([1.0, -1.0]), np.array([1.0, 1.0])) == 0.5
    assert metrics.r2_score(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 1.0


# ------------------------------------------------------- generated gradients


def mse_model(w, x, y):
    return losses.mean_squared_error(x @ w, y)


def bce_model(w, x, y):
    return losses.binary_cross_entropy(x @ w, y)


def softmax_model(W, x, y):
    return losses.softmax_cross_entropy(x @ W, y)


def softmax_onehot_model(W, x, t):
    return losses.softmax_cross_entropy_onehot(x @ W, t)


def l2_model(W, x, t):
    return losses.l2_penalty(W)


X = rng.normal(size=(5, 3))
CASES = {
    "mean_squared_error": (mse_model, rng.normal(size=3), X, rng.normal(size=5)),
    "binary_cross_entropy": (bce_model, rng.normal(size=3), X, Y01[:5]),
    "softmax_cross_entropy": (softmax_model, rng.normal(size=(3, 4)), X, LABELS),
    "softmax_cross_entropy_onehot": (softmax_onehot_model, rng.normal(size=(3, 4)), X, ONEHOT),
    "l2_penalty": (l2_model, rng.normal(size=(3, 4)), X, ONEHOT),
}


def finite_difference(f, w, *args, eps=1e-6):
    grad = np.zeros_like(w)
    for index in np.ndindex(w.shape):
        step = np.zeros_like(w)
        step[index] = eps
        grad[index] = (f(w + step, *args) - f(w - step, *args)) / (2 * eps)
    return grad


@needs_compiler
@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_gradient_matches_finite_differences(name):
    import adcompiler

    model, w, x, y = CASES[name]
    value, grad = adcompiler.value_and_grad(model, wrt="w" if w.ndim == 1 else "W")(w, x, y)
    assert value == pytest.approx(model(w, x, y), rel=1e-12)
    np.testing.assert_allclose(grad, finite_difference(model, w, x, y), rtol=1e-5, atol=1e-8)
