"""Loss functions written as plain, straight-line NumPy.

Every function here is ordinary differentiable NumPy code with no loops,
branches or helper objects, so a model's loss can call it and adcompiler
inlines and differentiates it::

    from adcompiler.train.losses import softmax_cross_entropy

    def loss(W, b, x, y):
        return softmax_cross_entropy(x @ W + b, y)

    value, (dW, db) = adcompiler.value_and_grad(loss, wrt=("W", "b"))(W, b, x, y)

All losses average over the leading (batch) axis, so the loss of a batch is
the mean of the per-example losses and batch losses can be averaged.
"""

import numpy as np

from adcompiler.custom import stop_gradient


def mean_squared_error(prediction, target):
    """Mean over all entries of ``(prediction - target) ** 2``."""
    residual = prediction - target
    return np.mean(residual * residual)


def binary_cross_entropy(logits, labels):
    """Binary cross-entropy of ``sigmoid(logits)`` against labels in {0, 1}.

    Takes logits, not probabilities: ``max(z, 0) - z * y + log(1 + exp(-|z|))``
    is the stable form of ``-y log(s) - (1 - y) log(1 - s)`` with
    ``s = sigmoid(z)``; it neither overflows nor takes the log of 0.
    """
    z = logits
    per_example = np.maximum(z, 0.0) - z * labels + np.log1p(np.exp(-np.abs(z)))
    return np.mean(per_example)


def log_softmax(logits):
    """``log(softmax(logits))`` over the last axis of a 2-D array, computed stably."""
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def softmax_cross_entropy(logits, labels):
    """Cross-entropy of ``softmax(logits)`` (shape ``(n, k)``) against integer labels ``(n,)``."""
    # The shift cancels in the value, so its gradient is zero: stop_gradient says so and
    # spares the adjoint of np.max.
    shifted = logits - stop_gradient(np.max(logits, axis=1, keepdims=True))
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    rows = np.arange(logits.shape[0])
    return -np.mean(log_probs[rows, labels])


def softmax_cross_entropy_onehot(logits, targets):
    """Cross-entropy of ``softmax(logits)`` against target distributions (e.g. one-hot)."""
    shifted = logits - stop_gradient(np.max(logits, axis=1, keepdims=True))
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    return -np.mean(np.sum(targets * log_probs, axis=1))


def l2_penalty(weights):
    """``0.5 * sum(weights ** 2)``; multiply by the regularization strength."""
    return 0.5 * np.sum(weights * weights)
