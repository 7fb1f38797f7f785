"""Shared pieces of the training tests: small models with hand-written gradients.

The training machinery (loop, checkpoints, resume, data) is tested against
these exact gradients so that its tests do not depend on the compiler; the
tests that exercise adcompiler's generated gradients say so in their names.
"""

import importlib.util
import os

import numpy as np
import pytest

from adcompiler.train.losses import mean_squared_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "adcompiler", "samples")


def linear_loss(w, b, x, y):
    return mean_squared_error(x @ w + b, y)


def linear_value_and_grad(w, b, x, y):
    residual = x @ w + b - y
    n = residual.size
    return np.mean(residual * residual), (2.0 * x.T @ residual / n, 2.0 * residual.sum() / n)


def linear_problem(n=200, features=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = x @ np.arange(1.0, features + 1.0) + 0.5 + 0.01 * rng.normal(size=n)
    params = {"w": np.zeros(features), "b": np.zeros(())}
    return params, (x, y)


def compiler_available():
    try:
        import adcompiler
    except ImportError:
        return False
    return hasattr(adcompiler, "value_and_grad")


needs_compiler = pytest.mark.skipif(
    not compiler_available(), reason="adcompiler.value_and_grad is not available yet"
)


def load_sample(name):
    """Import adcompiler/samples/<name>.py as a module."""
    path = os.path.join(SAMPLES, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"sample_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def subprocess_env():
    """The environment for a child Python that imports adcompiler from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def test_hand_written_gradient_matches_finite_differences():
    params, (x, y) = linear_problem(n=20)
    w, b = np.array([0.3, -0.2, 0.1]), np.array(0.4)
    _, (dw, db) = linear_value_and_grad(w, b, x, y)
    eps = 1e-6
    for i in range(3):
        step = np.zeros(3)
        step[i] = eps
        numeric = (linear_loss(w + step, b, x, y) - linear_loss(w - step, b, x, y)) / (2 * eps)
        assert np.isclose(dw[i], numeric, rtol=1e-6)
    numeric = (linear_loss(w, b + eps, x, y) - linear_loss(w, b - eps, x, y)) / (2 * eps)
    assert np.isclose(db, numeric, rtol=1e-6)
