"""Evaluation metrics (not differentiated; plain NumPy)."""

import numpy as np


def accuracy(logits, labels):
    """Share of rows whose largest logit is at the label (multi-class), in [0, 1]."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def binary_accuracy(logits, labels):
    """Share of examples with ``(logits > 0) == labels`` (binary), in [0, 1]."""
    return float(np.mean((np.asarray(logits) > 0) == (np.asarray(labels) > 0.5)))


def r2_score(prediction, target):
    """Coefficient of determination ``1 - SS_res / SS_tot``."""
    residual = np.sum((target - prediction) ** 2)
    total = np.sum((target - np.mean(target)) ** 2)
    return float(1.0 - residual / total)
