"""Run-time helpers that generated code calls.

Each helper is a small, self-contained NumPy function: the CLI copies the
source of the ones a gradient uses into the emitted file, so that file needs
only NumPy. Keep them free of imports other than ``numpy as np`` and of
references to each other unless the callee is listed in `DEPENDS`.
"""

import numpy as np


def unbroadcast(g, shape):
    """Sum `g` down to `shape`: the adjoint of broadcasting to g's shape."""
    if np.shape(g) == shape:
        return g
    g = np.asarray(g)
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and g.shape[extra + i] != 1
    )
    g = np.sum(g, axis=axes, keepdims=True) if axes else g
    return g.reshape(shape)


def unindex(g, shape, index):
    """The adjoint of ``x[index]``: zeros of `shape` with `g` added at `index`."""
    out = np.zeros(shape, dtype=np.result_type(g, np.float64))
    parts = index if isinstance(index, tuple) else (index,)
    if any(isinstance(p, (list, np.ndarray)) and np.asarray(p).dtype != bool for p in parts):
        np.add.at(out, index, g)  # integer arrays may repeat an index
    else:
        out[index] = g
    return out


def matmul_lhs_adjoint(g, a, b):
    """Adjoint of ``a @ b`` with respect to `a`."""
    if a.ndim == 2 and b.ndim == 2:
        return g @ b.T
    if b.ndim == 1:
        ga = np.multiply.outer(g, b)
    elif a.ndim == 1:
        ga = (b @ np.expand_dims(g, -1))[..., 0]
    else:
        ga = g @ np.swapaxes(b, -1, -2)
    return unbroadcast(ga, a.shape)


def matmul_rhs_adjoint(g, a, b):
    """Adjoint of ``a @ b`` with respect to `b`."""
    if a.ndim == 2 and b.ndim == 2:
        return a.T @ g
    if a.ndim == 1:
        gb = np.multiply.outer(a, g) if b.ndim > 1 else a * g
        if b.ndim > 2:
            gb = np.moveaxis(gb, 0, -2)
    elif b.ndim == 1:
        gb = (np.swapaxes(a, -1, -2) @ np.expand_dims(g, -1))[..., 0]
    else:
        gb = np.swapaxes(a, -1, -2) @ g
    return unbroadcast(gb, b.shape)


def max_adjoint(g, ans, x, axis, keepdims):
    """Adjoint of ``np.max``/``np.min``: `g` shared equally among the extremal entries."""
    if axis is not None and not keepdims:
        ans = np.expand_dims(ans, axis)
        g = np.expand_dims(g, axis)
    mask = x == ans
    return mask * (g / np.sum(mask, axis=axis, keepdims=True))


def sum_adjoint(g, shape, axis, keepdims):
    """Adjoint of ``np.sum(x, axis, keepdims)``: broadcast `g` back to x's shape."""
    if axis is not None and not keepdims:
        g = np.expand_dims(g, axis)
    return np.broadcast_to(g, shape)


def cumsum_adjoint(g, shape, axis=None):
    """Adjoint of ``np.cumsum(x, axis)``: a cumulative sum from the end."""
    if axis is None:
        return np.cumsum(g[::-1])[::-1].reshape(shape)
    return np.flip(np.cumsum(np.flip(g, axis), axis), axis)


def trace_adjoint(g, shape):
    """Adjoint of ``np.trace(x)`` for a matrix `x`."""
    return g * np.eye(shape[0], shape[1])


def einsum_adjoint(g, *operands, subscripts, i):
    """Adjoint of ``np.einsum(subscripts, *operands)`` with respect to operand `i`."""
    inputs, _, output = subscripts.replace(" ", "").partition("->")
    terms = inputs.split(",")
    if not _ and "." not in subscripts:  # implicit output: sorted indices seen once
        output = "".join(sorted(c for c in set(inputs) - {","} if inputs.count(c) == 1))
    others = [t for j, t in enumerate(terms) if j != i]
    target = terms[i]
    known = set(output).union(*others)
    reduced = "".join(c for c in target if c in known)
    spec = ",".join([output, *others]) + "->" + reduced
    part = np.einsum(spec, g, *(x for j, x in enumerate(operands) if j != i))
    if reduced != target:  # indices only in operand i: the adjoint is constant along them
        part = np.expand_dims(part, tuple(k for k, c in enumerate(target) if c not in known))
        part = np.broadcast_to(part, operands[i].shape)
    return part


def untile(g, shape, reps):
    """Adjoint of ``np.tile(x, reps)``: sum the tiles."""
    reps = (reps,) if np.isscalar(reps) else tuple(reps)
    ndim = max(len(shape), len(reps))
    base = (1,) * (ndim - len(shape)) + tuple(shape)
    reps = (1,) * (ndim - len(reps)) + reps
    split = [n for pair in zip(reps, base) for n in pair]
    summed = np.sum(g.reshape(split), axis=tuple(range(0, 2 * ndim, 2)))
    return summed.reshape(shape)


def unrepeat(g, shape, repeats, axis=None):
    """Adjoint of ``np.repeat(x, repeats, axis)``: sum each run of repeats."""
    if axis is None:
        n = int(np.prod(shape))
        starts = np.concatenate(([0], np.cumsum(np.broadcast_to(repeats, (n,)))[:-1]))
        return np.add.reduceat(g.ravel(), starts).reshape(shape) if n else np.zeros(shape)
    n = shape[axis]
    starts = np.concatenate(([0], np.cumsum(np.broadcast_to(repeats, (n,)))[:-1]))
    return np.add.reduceat(g, starts, axis=axis)


def astype(x, dtype):
    return x.astype(dtype)


def unjoin(g, *xs, kind, axis, i):
    """Adjoint of np.concatenate/stack/hstack/vstack with respect to input `i`."""
    if kind == "stack":
        return np.take(g, i, axis=axis)
    if kind == "vstack":
        pieces, axis = [np.atleast_2d(x) for x in xs], 0
    elif kind == "hstack":
        pieces = [np.atleast_1d(x) for x in xs]
        axis = 0 if pieces[0].ndim == 1 else 1
    else:
        pieces = xs
    start = sum(np.shape(x)[axis] for x in pieces[:i])
    part = np.take(g, np.arange(start, start + np.shape(pieces[i])[axis]), axis=axis)
    return part.reshape(np.shape(xs[i]))


def norm_adjoint(g, ans, x, axis=None, keepdims=False):
    """Adjoint of the 2-norm (Frobenius for matrices) ``np.linalg.norm(x, axis=axis)``."""
    if axis is not None and not keepdims:
        g, ans = np.expand_dims(g, axis), np.expand_dims(ans, axis)
    return x * (g / ans)


def det_adjoint(g, ans, a):
    """Adjoint of ``np.linalg.det(a)``: g * det(a) * inv(a)^T."""
    scale = np.expand_dims(g * ans, (-1, -2))
    return scale * np.swapaxes(np.linalg.inv(a), -1, -2)


def solve_lhs_adjoint(gb, x):
    """Adjoint of ``np.linalg.solve(a, b)`` with respect to `a`, given gb = solve(a^T, g)."""
    if gb.ndim == 1:
        return -np.outer(gb, x)
    return -(gb @ np.swapaxes(x, -1, -2))


def check_float(**args):
    """Refuse integer inputs to differentiate with respect to, naming the argument."""
    for name, x in args.items():
        kind = np.asarray(x).dtype.kind if not isinstance(x, float) else "f"
        if kind not in "fc":
            raise TypeError(
                f"cannot differentiate with respect to {name!r}: it holds integers or booleans "
                f"(dtype {np.asarray(x).dtype}); pass floats, e.g. {name}.astype(float)"
            )


HELPERS = {
    f.__name__: f
    for f in (
        unbroadcast,
        unindex,
        matmul_lhs_adjoint,
        matmul_rhs_adjoint,
        max_adjoint,
        sum_adjoint,
        cumsum_adjoint,
        trace_adjoint,
        einsum_adjoint,
        untile,
        unrepeat,
        astype,
        unjoin,
        norm_adjoint,
        det_adjoint,
        solve_lhs_adjoint,
        check_float,
    )
}
DEPENDS: dict[str, tuple[str, ...]] = {
    "matmul_lhs_adjoint": ("unbroadcast",),
    "matmul_rhs_adjoint": ("unbroadcast",),
}
