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
        up = float(np.reshape(f(*args), ()))  # (a loss of shape (1,) too)
        flat[i] = orig - eps
        args[index] = x.copy() if x.ndim else float(x)
        down = float(np.reshape(f(*args), ()))
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
    import functools
    import inspect

    from adcompiler import pytree
    from adcompiler.api import grad

    if isinstance(f, functools.partial) or inspect.ismethod(f):  # all arguments passed
        f, args, wrt = pytree.unbound_call(f, args, wrt)
    names = list(inspect.signature(f).parameters)
    single = not isinstance(wrt, (tuple, list))
    items = [0 if wrt is None else wrt] if single else list(wrt)
    indices = [names.index(w) if isinstance(w, str) else w for w in items]
    packed = pytree.packed_at(f)  # `def f(x, *ws)`: the gradient for ws is a tuple
    same_draws = _same_draws(f, args)  # every evaluation draws what the first one does
    got = same_draws(grad(f, wrt=wrt), *args)
    f = functools.partial(same_draws, f)
    got = [got] if single else list(got)
    for i, g in zip(indices, got):
        if i == packed:
            for k, gk in enumerate(g):
                expected = numerical_grad(f, args, i + k, eps)
                _compare(gk, expected, f"{names[i]}[{k}]", rtol, atol)
            continue
        if not _is_leaf(args[i]):  # a dict, a list, a NamedTuple, a dataclass...
            _check_tree(f, args, i, g, names[i], eps, rtol, atol)
            continue
        _compare(g, numerical_grad(f, args, i, eps), names[i], rtol, atol)


def _compare(g, expected: np.ndarray, name: str, rtol: float, atol: float) -> None:
    g = np.asarray(g)
    if g.shape != expected.shape:
        raise AssertionError(
            f"gradient for {name!r} has shape {g.shape}, expected {expected.shape}"
        )
    if not np.allclose(g, expected, rtol=rtol, atol=atol):
        err = np.abs(g - expected)
        worst = np.unravel_index(np.argmax(err), err.shape) if err.ndim else ()
        raise AssertionError(
            f"gradient for {name!r} differs from finite differences at {worst}: "
            f"adcompiler {g[worst]!r}, finite differences {expected[worst]!r}"
        )


def _same_draws(f: Callable, args: Sequence) -> Callable:
    """`call(g, *a)`: `g(*a)` with the generators `f` draws from put back in the states
    they are in now (a function that draws is checked on one sample)."""
    from adcompiler.api import _same_draws, primal_ir

    try:
        primal = primal_ir(f)
    except Exception:  # noqa: BLE001 - not lowered here: every candidate generator
        primal = None
    return _same_draws(primal, list(args))


def _is_leaf(value) -> bool:
    from adcompiler import pytree

    return pytree.structure_of(value) is None


def _check_tree(f, args, index: int, got, name: str, eps, rtol, atol) -> None:
    """check_grad for a structured argument: each leaf against finite differences; the
    gradient must have the argument's structure and type."""
    from adcompiler import pytree

    tree = args[index]
    if type(got) is not type(tree) or pytree.structure_of(got) != pytree.structure_of(tree):
        raise AssertionError(
            f"gradient for {name!r} is a {type(got).__name__} shaped "
            f"{pytree.structure_of(got)}, expected the structure of the argument, "
            f"{pytree.structure_of(tree)}"
        )
    n = len(pytree.leaves(tree))
    for k, g in enumerate(pytree.leaves(got)):

        def with_leaf(leaf, k=k):
            def f_leaf(*a):
                counter = iter(range(n))
                new = pytree.map_leaves(tree, lambda x: leaf if next(counter) == k else x)
                return f(*a[:index], new, *a[index + 1 :])

            return f_leaf

        leaf = pytree.leaves(tree)[k]
        expected = numerical_grad(lambda x: with_leaf(x)(*args), [leaf], 0, eps)
        g = np.asarray(g)
        if g.shape != expected.shape or not np.allclose(g, expected, rtol=rtol, atol=atol):
            err = np.abs(g - expected) if g.shape == expected.shape else None
            raise AssertionError(
                f"gradient for {name!r}, leaf {k} (of {n}): adcompiler {g!r}, "
                f"finite differences {expected!r}"
                + ("" if err is None else f" (worst error {np.max(err):.3g})")
            )
