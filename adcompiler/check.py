"""`check_grad`: compare a generated gradient with central finite differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def numerical_grad(f: Callable, args: Sequence, index: int, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of scalar `f(*args)` with respect to `args[index]`."""
    args = list(args)
    x = np.array(args[index], dtype=np.float64)
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    out = grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        args[index] = x.copy() if x.ndim else float(x)
        up = float(f(*args))
        flat[i] = orig - eps
        args[index] = x.copy() if x.ndim else float(x)
        down = float(f(*args))
        flat[i] = orig
        out[i] = (up - down) / (2 * eps)
    return grad


def check_grad(
    f: Callable,
    args: Sequence,
    wrt=None,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Assert that ``adcompiler.grad(f, wrt)`` matches central finite differences.

    Args:
        f: scalar-valued function of `args`.
        args: the point to check at (float64 arrays or floats).
        wrt: as for `adcompiler.grad`; default: the first argument.
    Raises:
        AssertionError naming the argument and the worst element.
    """
    import inspect

    from adcompiler.api import grad

    names = list(inspect.signature(f).parameters)
    single = not isinstance(wrt, (tuple, list))
    items = [0 if wrt is None else wrt] if single else list(wrt)
    indices = [names.index(w) if isinstance(w, str) else w for w in items]
    got = grad(f, wrt=wrt)(*args)
    got = [got] if single else list(got)
    for i, g in zip(indices, got):
        expected = numerical_grad(f, args, i, eps)
        g = np.asarray(g)
        if g.shape != expected.shape:
            raise AssertionError(
                f"gradient for {names[i]!r} has shape {g.shape}, expected {expected.shape}"
            )
        if not np.allclose(g, expected, rtol=rtol, atol=atol):
            err = np.abs(g - expected)
            worst = np.unravel_index(np.argmax(err), err.shape) if err.ndim else ()
            raise AssertionError(
                f"gradient for {names[i]!r} differs from finite differences at {worst}: "
                f"adcompiler {np.asarray(g)[worst]!r}, finite differences {expected[worst]!r}"
            )
