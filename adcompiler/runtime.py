"""Run-time helpers that generated code calls.

Each helper is a small, self-contained NumPy function: the CLI copies the
source of the ones a gradient uses into the emitted file, so that file needs
only NumPy. Keep them free of imports other than ``numpy as np`` and of
references to each other unless the callee is listed in `DEPENDS`.
"""

import numpy as np

from adcompiler.errors import NonFiniteError


def unbroadcast(g, shape):
    """Sum `g` down to `shape`: the adjoint of broadcasting to g's shape."""
    if type(g) is float or getattr(g, "shape", None) == shape or np.shape(g) == shape:
        return g  # a Python float is the adjoint of a scalar: nothing was broadcast
    g = np.asarray(g)
    if shape == ():  # a NumPy scalar, as the sum the specialized code writes (np.sum(g))
        return np.sum(g)
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and g.shape[extra + i] != 1
    )
    g = np.sum(g, axis=axes, keepdims=True) if axes else g
    return g.reshape(shape)


def zero_like(x):
    """A zero adjoint to start summing into: 0.0 for a Python number, else zeros."""
    return 0.0 if type(x) in (float, int) else np.zeros_like(x)


def one_like(y, name="f"):
    """The cotangent a gradient of `name` starts from: 1 in the dtype of its output `y` (a
    float32 loss gets float32 adjoints), ones shaped like `y` for an output of one element
    (shape (1,) or (1, 1): a scalar loss, as autograd takes it). For a Python number and a
    float64 scalar, 1.0: what code seeded with the constant 1.0 computes. Any other shape,
    and a complex output, is refused."""
    if np.ndim(y) != 0 and np.size(y) != 1:
        raise TypeError(
            f"grad needs {name} to return a scalar, but it returned shape {np.shape(y)}; "
            f"reduce it (np.sum, np.mean), or use ad.vjp for a vector-Jacobian product"
        )
    dtype = np.result_type(y, 0.0)  # y's own float dtype; float64 for ints and bools
    if dtype.kind == "c":
        raise TypeError(
            f"cannot differentiate a complex output (dtype {dtype}): adcompiler differentiates "
            f"real functions; return a real loss (np.abs, np.real)"
        )
    if np.ndim(y) != 0:
        return np.ones(np.shape(y), dtype)
    return 1.0 if dtype == np.float64 else dtype.type(1.0)


def unindex(g, shape, index, out=None):
    """The adjoint of ``x[index]``: zeros of `shape` with `g` added at `index` (in `out`,
    if given: a row of a tape, in specialized code)."""
    if out is None:
        out = np.zeros(shape, dtype=np.result_type(g, 0.0))
    else:
        out[...] = 0
    if type(index) is int or type(index) is slice:  # a row or a range: no repeats
        out[index] = g
        return out
    parts = index if isinstance(index, tuple) else (index,)
    if any(isinstance(p, (list, np.ndarray)) and np.asarray(p).dtype != bool for p in parts):
        np.add.at(out, index, g)  # integer arrays may repeat an index
    else:
        out[index] = g
    return out


def matmul_lhs_adjoint(g, a, b):
    """Adjoint of ``a @ b`` with respect to `a`."""
    a_ndim, b_ndim = getattr(a, "ndim", 0), getattr(b, "ndim", 0)
    if a_ndim == 2 and b_ndim == 2:
        return g @ b.T
    if a_ndim == 2 and b_ndim == 1:  # matrix @ vector
        return np.multiply.outer(g, b)
    if a_ndim == 1 and b_ndim == 2:  # vector @ matrix
        return b @ g
    if b.ndim == 1:
        ga = np.multiply.outer(g, b)
    elif a.ndim == 1:
        ga = (b @ np.expand_dims(g, -1))[..., 0]
    else:
        ga = g @ np.swapaxes(b, -1, -2)
    return unbroadcast(ga, a.shape)


def matmul_rhs_adjoint(g, a, b):
    """Adjoint of ``a @ b`` with respect to `b`."""
    a_ndim, b_ndim = getattr(a, "ndim", 0), getattr(b, "ndim", 0)
    if a_ndim == 2 and b_ndim == 2:
        return a.T @ g
    if a_ndim == 2 and b_ndim == 1:  # matrix @ vector
        return a.T @ g
    if a_ndim == 1 and b_ndim == 2:  # vector @ matrix
        return np.multiply.outer(a, g)
    if a.ndim == 1:
        gb = np.multiply.outer(a, g) if b.ndim > 1 else a * g
        if b.ndim > 2:
            gb = np.moveaxis(gb, 0, -2)
    elif b.ndim == 1:
        gb = (np.swapaxes(a, -1, -2) @ np.expand_dims(g, -1))[..., 0]
    else:
        gb = np.swapaxes(a, -1, -2) @ g
    return unbroadcast(gb, b.shape)


def dot_lhs_adjoint(g, a, b):
    """Adjoint of ``np.dot(a, b)`` with respect to `a`.

    dot(a, b)[i..., j..., k] = sum_m a[i..., m] b[j..., m, k]; a scalar operand scales.
    """
    if np.ndim(a) == 0:
        return np.sum(g * b)
    if np.ndim(b) == 0:
        return g * b
    g, a, b = np.asarray(g), np.asarray(a), np.asarray(b)  # g is a float for two vectors
    if a.ndim == 2 and b.ndim == 2:
        return g @ b.T
    other_axes_of_b = [k for k in range(b.ndim) if k != max(b.ndim - 2, 0)]
    return np.tensordot(g, b, axes=(list(range(a.ndim - 1, g.ndim)), other_axes_of_b))


def dot_rhs_adjoint(g, a, b):
    """Adjoint of ``np.dot(a, b)`` with respect to `b`."""
    if np.ndim(b) == 0:
        return np.sum(g * a)
    if np.ndim(a) == 0:
        return g * a
    g, a, b = np.asarray(g), np.asarray(a), np.asarray(b)
    if a.ndim == 2 and b.ndim == 2:
        return a.T @ g
    lead = list(range(a.ndim - 1))
    gb = np.tensordot(a, g, axes=(lead, lead))  # (m, j..., k)
    return np.moveaxis(gb, 0, max(b.ndim - 2, 0))


def max_adjoint(g, ans, x, axis=None, keepdims=False):
    """Adjoint of ``np.max``/``np.min``: `g` shared equally among the extremal entries."""
    if axis is not None and not keepdims:
        ans = np.expand_dims(ans, axis)
        g = np.expand_dims(g, axis)
    mask = x == ans
    count = np.sum(mask, axis=axis, keepdims=True, dtype=np.result_type(x, 0.0))  # not int64
    return mask * (g / count)


def prod_adjoint(g, x, axis=None, keepdims=False):
    """Adjoint of ``np.prod``: `g` times the product of the other factors, exact at zeros."""
    x = np.asarray(x)
    axes = range(x.ndim) if axis is None else [int(a) % x.ndim for a in np.atleast_1d(axis)]
    kept = [k for k in range(x.ndim) if k not in axes]
    order = kept + sorted(axes)
    g = np.reshape(g, [1 if k in axes else n for k, n in enumerate(x.shape)])
    rows = np.transpose(x, order).reshape([x.shape[k] for k in kept] + [-1])
    ones = np.ones_like(rows[..., :1])
    before = np.cumprod(np.concatenate([ones, rows[..., :-1]], -1), -1)
    after = np.cumprod(np.concatenate([ones, rows[..., :0:-1]], -1), -1)[..., ::-1]
    others = (before * after).reshape([x.shape[k] for k in order])
    return g * np.transpose(others, np.argsort(order))


def prod_adjoint_tangent(g, x, x_dot, axis=None, keepdims=False):
    """Tangent of ``prod_adjoint(g, x)`` along `x_dot` (and, the Hessian of a product being
    symmetric, its adjoint in x). The product of the other factors is a polynomial in x,
    so a complex step gives its directional derivative exactly, up to rounding."""
    step = 1e-20
    moved = np.asarray(x, dtype=np.result_type(x, 1j)) + 1j * step * np.asarray(x_dot)
    return prod_adjoint(g, moved, axis, keepdims).imag / step


def cumsum_adjoint(g, shape, axis=None):
    """Adjoint of ``np.cumsum(x, axis)``: a cumulative sum from the end."""
    if axis is None:
        return np.cumsum(g[::-1])[::-1].reshape(shape)
    return np.flip(np.cumsum(np.flip(g, axis), axis), axis)


def trace_adjoint(g, shape, offset=0, axis1=0, axis2=1):
    """Adjoint of ``np.trace(x, offset, axis1, axis2)``: `g` on the chosen diagonal."""
    diagonal = np.eye(shape[axis1], shape[axis2], k=offset, dtype=np.result_type(g, 0.0))
    out = np.expand_dims(g, (-2, -1)) * diagonal
    return np.moveaxis(out, (-2, -1), (axis1, axis2))


def einsum_adjoint(g, *operands, subscripts="", i=0):
    """Adjoint of ``np.einsum(subscripts, *operands)`` with respect to operand `i`.

    The contraction of `g` with the other operands gives the adjoint over the
    distinct indices of operand i; a repeated index (a diagonal, ``"ii->"``) puts
    it on the diagonal and an index that no other term has (summed out of
    operand i alone) spreads it along that axis. Ellipses are spelled out with
    fresh letters first, and size-1 axes that broadcast are summed back.
    """
    inputs, arrow, output = subscripts.replace(" ", "").partition("->")
    terms = inputs.split(",")
    free = [
        c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in subscripts
    ]
    widths = [np.ndim(x) - len(t.replace("...", "")) for t, x in zip(terms, operands)]
    width = max([w for t, w in zip(terms, widths) if "..." in t], default=0)
    batch = "".join(free[:width])
    free = free[width:]
    terms = [t.replace("...", batch[width - w :]) for t, w in zip(terms, widths)]
    if arrow:
        output = output.replace("...", batch)
    else:  # implicit output: the broadcast axes, then the indices seen once, sorted
        letters = "".join(terms).replace(",", "")
        output = batch + "".join(
            sorted(c for c in set(letters) - set(batch) if letters.count(c) == 1)
        )
    target, shape = terms[i], np.shape(operands[i])
    others = [t for j, t in enumerate(terms) if j != i]
    known = set(output).union(*others)
    distinct = "".join(dict.fromkeys(c for c in target if c in known))
    spec = ",".join([output, *others]) + "->" + distinct
    part = np.einsum(spec, g, *(x for j, x in enumerate(operands) if j != i))
    dtype = np.result_type(part, 0.0)  # the 0/1 factors below add no precision
    if distinct != target:  # place it on diagonals and spread it along target-only axes
        first, spelled, factors, specs = {}, "", [part], [distinct]
        for k, c in enumerate(target):
            if c in first:  # a repeated index: on the diagonal with its first occurrence
                spelled += free.pop()
                factors.append(np.eye(shape[target.index(c)], shape[k], dtype=dtype))
                specs.append(first[c] + spelled[-1])
            elif c not in known:  # summed out of operand i alone: constant along it
                spelled += free.pop()
                factors.append(np.ones(shape[k], dtype))
                specs.append(spelled[-1])
            else:
                spelled += c
            first.setdefault(c, spelled[-1])
        part = np.einsum(",".join(specs) + "->" + spelled, *factors)
    return unbroadcast(part, shape)


def untile(g, shape, reps=1):
    """Adjoint of ``np.tile(x, reps)``: sum the tiles."""
    reps = (reps,) if np.isscalar(reps) else tuple(reps)
    ndim = max(len(shape), len(reps))
    base = (1,) * (ndim - len(shape)) + tuple(shape)
    reps = (1,) * (ndim - len(reps)) + reps
    split = [n for pair in zip(reps, base) for n in pair]
    summed = np.sum(np.reshape(g, split), axis=tuple(range(0, 2 * ndim, 2)))
    return summed.reshape(shape)


def unrepeat(g, shape, repeats=1, axis=None):
    """Adjoint of ``np.repeat(x, repeats, axis)``: sum each run of repeats (runs may be empty)."""
    flat = axis is None
    g = np.ravel(g) if flat else np.moveaxis(g, axis, 0)
    n = int(np.prod(shape)) if flat else shape[axis]
    if np.ndim(repeats) == 0:
        out = np.sum(np.reshape(g, (n, int(repeats)) + g.shape[1:]), axis=1)
    else:
        out = np.zeros((n,) + g.shape[1:], dtype=np.result_type(g, 0.0))
        np.add.at(out, np.repeat(np.arange(n), repeats), g)
    return np.reshape(out, shape) if flat else np.moveaxis(out, 0, axis)


def astype(x, dtype):
    return x.astype(dtype)


def r_(arrays):
    """``np.r_[a, b]`` (the operator the frontend makes of it), given ``[a, b]``."""
    return np.r_[tuple(arrays)]


def c_(arrays):
    """``np.c_[a, b]``, given ``[a, b]``."""
    return np.c_[tuple(arrays)]


def unjoin(g, *xs, kind="", axis=0, i=0):
    """Adjoint of np.concatenate/stack/hstack/vstack with respect to input `i`."""
    if kind == "stack":
        return np.take(g, i, axis=axis)
    if kind == "vstack":
        pieces, axis = [np.atleast_2d(x) for x in xs], 0
    elif kind == "r_":
        pieces, axis = [np.atleast_1d(x) for x in xs], 0
    elif kind == "c_":  # below 2-d, an input gets axes of length 1 appended
        pieces = [np.reshape(x, np.shape(x) + (1,) * (2 - np.ndim(x))) for x in xs]
        axis = -1
    elif kind == "hstack":
        pieces = [np.atleast_1d(x) for x in xs]
        axis = 0 if pieces[0].ndim == 1 else 1
    elif axis is None:  # np.concatenate(..., axis=None) joins the flattened inputs
        pieces, axis = [np.ravel(x) for x in xs], 0
    else:
        pieces = xs
    start = sum(np.shape(x)[axis] for x in pieces[:i])
    part = np.take(g, np.arange(start, start + np.shape(pieces[i])[axis]), axis=axis)
    return part.reshape(np.shape(xs[i]))


def norm_adjoint(g, ans, x, ord=None, axis=None, keepdims=False):
    """Adjoint of ``np.linalg.norm(x, ord, axis, keepdims)``.

    Vector norms: 2 (the default) and any p, 1, inf, -inf, 0 (piecewise constant);
    matrix norms (2-D `x` with axis None, or a pair of axes): 'fro' (the default),
    'nuc', 2, -2, 1, -1, inf, -inf. At a kink (x = 0, ties of |x|) it picks one
    subgradient: zero at x = 0, the average over ties.
    """
    x = np.asarray(x)
    matrix = (axis is None and x.ndim == 2 and ord is not None) or np.ndim(axis) == 1
    if axis is not None and not keepdims:
        g, ans = np.expand_dims(g, axis), np.expand_dims(ans, axis)
    safe = np.where(ans == 0, 1.0, ans)
    if ord in (None, "fro", 2) and not (matrix and ord == 2):
        return x * (g / safe)
    if matrix:
        return g * matrix_norm_adjoint(x, ord, axis)
    if ord == 1:
        return g * np.sign(x)
    if ord in (np.inf, -np.inf):
        extreme = np.abs(x) == ans
        count = np.sum(extreme, axis=axis, keepdims=True, dtype=np.result_type(x, 0.0))
        return g * np.sign(x) * extreme / count
    if ord == 0:
        return np.zeros_like(x) * g
    return g * np.sign(x) * (np.abs(x) / safe) ** (ord - 1)


def matrix_norm_adjoint(x, ord, axis):
    """d norm(x, ord) / dx for the matrix norms, over the axes `axis` (default the last two)."""
    rows, cols = (-2, -1) if axis is None else axis
    x = np.moveaxis(x, (rows, cols), (-2, -1))
    if ord in ("nuc", 2, -2):
        u, _, vt = np.linalg.svd(x, full_matrices=False)
        if ord == "nuc":
            d = u @ vt
        else:
            k = 0 if ord == 2 else -1
            d = u[..., :, k : k + 1 or None] @ vt[..., k : k + 1 or None, :]
    else:  # 1, -1: the largest / smallest column sum of |x|; inf, -inf: row sum
        summed, across = (-2, -1) if ord in (1, -1) else (-1, -2)
        sums = np.sum(np.abs(x), axis=summed, keepdims=True)
        best = (np.max if ord > 0 else np.min)(sums, axis=across, keepdims=True)
        extreme = sums == best
        count = np.sum(extreme, axis=across, keepdims=True, dtype=np.result_type(x, 0.0))
        d = np.sign(x) * extreme / count
    return np.moveaxis(d, (-2, -1), (rows, cols))


def det_adjoint(g, ans, a):
    """Adjoint of ``np.linalg.det(a)``: g * det(a) * inv(a)^T."""
    scale = np.expand_dims(g * ans, (-1, -2))
    return scale * np.swapaxes(np.linalg.inv(a), -1, -2)


def solve_lhs_adjoint(gb, x):
    """Adjoint of ``np.linalg.solve(a, b)`` with respect to `a`, given gb = solve(a^T, g)."""
    if gb.ndim == 1:
        return -np.outer(gb, x)
    return -(gb @ np.swapaxes(x, -1, -2))


def reshape_back(new, x):
    """`x` after a write changed a view of it made by adding or removing axes of length 1
    (``np.expand_dims``, ``np.squeeze``, ``np.atleast_2d``) to `new`. A number `x` (not
    an array: ``x[0]`` of a vector, ``2.0 * x[0]``) gives NumPy a new array, not a view:
    the write does not reach `x`, so the compiled code must not follow it."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            "a write into an array made from a number (np.expand_dims, np.squeeze or "
            "np.atleast_*d of a number makes a new array, not a view): adcompiler followed "
            "it into the number; take a copy where you make the array (`.copy()`)"
        )
    return np.reshape(new, np.shape(x))


def stop_gradient(x):
    """The identity, through which no derivative flows (`adcompiler.stop_gradient`)."""
    return x


def check_float(**args):
    """Refuse integer inputs to differentiate with respect to, naming the argument."""
    for name, x in args.items():
        if isinstance(x, (dict, list, tuple)):
            raise TypeError(
                f"{name!r} is a {type(x).__name__}, but this code was generated for an array "
                f"{name!r}; call the function adcompiler returned, which generates code for "
                f"containers, or pass np.asarray({name})"
            )
        kind = np.asarray(x).dtype.kind if not isinstance(x, float) else "f"
        if kind == "c":
            raise TypeError(
                f"cannot differentiate with respect to {name!r}: it is complex (dtype "
                f"{np.asarray(x).dtype}); adcompiler differentiates real functions of real "
                f"arrays (docs/subset.md): pass its real and imaginary parts as two arrays"
            )
        if kind != "f":
            raise TypeError(
                f"cannot differentiate with respect to {name!r}: it holds integers or booleans "
                f"(dtype {np.asarray(x).dtype}); pass floats, e.g. {name}.astype(float)"
            )


def check_result_finite(value, what, op, where, line, /, **inputs):
    """Raise NonFiniteError if `value` (`what`: "forward value of h", "adjoint of x", made by
    operator `op` at the user's `where`, file.py:LINE, whose text is `line`) holds a NaN
    or an infinity, with a summary of each input. Integers, booleans and containers pass."""
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if kind is None and isinstance(value, (float, complex)):
        kind = "f"
    if kind not in ("f", "c") or np.isfinite(value).all():
        return
    parts = [f"{name}: {finite_summary(x)}" for name, x in inputs.items()]
    message = (
        f"the {what} is not finite at {where} (operator {op}):\n    {line}\n"
        f"  result: {finite_summary(value)}"
    )
    if parts:
        message += "\n  inputs:\n    " + "\n    ".join(parts)
    raise NonFiniteError(message)


def check_input_finite(value, name, op, where, line, /):
    """Raise NonFiniteError if `value`, an argument or a global the user's code reads first
    at `where` (by operator `op`), already holds a NaN or an infinity."""
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if kind is None and isinstance(value, (float, complex)):
        kind = "f"
    if kind not in ("f", "c") or np.isfinite(value).all():
        return
    raise NonFiniteError(
        f"the input {name} is already not finite where it is first read, at {where} "
        f"(operator {op}):\n    {line}\n  {name}: {finite_summary(value)}"
    )


def finite_summary(x):
    """``shape (3,), min 0, max 2.5, 1 not finite (1 nan)``: what the checks report."""
    if isinstance(x, (list, tuple, dict)) or x is None:
        return type(x).__name__
    a = np.asarray(x)
    text = f"shape {a.shape}, {a.dtype}"
    if a.dtype.kind not in "biufc" or a.size == 0:
        return text
    if a.dtype.kind == "c":
        a = np.concatenate([a.real.ravel(), a.imag.ravel()])
    ok = np.isfinite(a)
    if ok.any():
        text += f", min {float(a[ok].min()):.6g}, max {float(a[ok].max()):.6g}"
    bad = int(a.size - np.count_nonzero(ok))
    text += f", {bad} not finite"
    if bad:
        nan = int(np.count_nonzero(np.isnan(a)))
        pos = int(np.count_nonzero(a == np.inf))
        counts = [f"{n} {w}" for n, w in ((nan, "nan"), (pos, "inf"), (bad - nan - pos, "-inf"))]
        text += f" ({', '.join(c for c in counts if not c.startswith('0 '))})"
    return text


def check_real(**args):
    """Refuse complex arguments (not differentiated, but their values reach the result):
    the rules are written for real numbers, and would give a silently wrong gradient."""
    for name, x in args.items():
        if isinstance(x, complex) or getattr(getattr(x, "dtype", None), "kind", "") == "c":
            raise TypeError(
                f"{name!r} is complex (dtype {np.asarray(x).dtype}): adcompiler differentiates "
                f"real functions of real arrays (docs/subset.md); pass its real and imaginary "
                f"parts as two arrays"
            )


HELPERS = {
    f.__name__: f
    for f in (
        unbroadcast,
        zero_like,
        one_like,
        unindex,
        matmul_lhs_adjoint,
        matmul_rhs_adjoint,
        max_adjoint,
        cumsum_adjoint,
        trace_adjoint,
        einsum_adjoint,
        dot_lhs_adjoint,
        dot_rhs_adjoint,
        prod_adjoint,
        prod_adjoint_tangent,
        matrix_norm_adjoint,
        untile,
        unrepeat,
        astype,
        unjoin,
        norm_adjoint,
        det_adjoint,
        solve_lhs_adjoint,
        stop_gradient,
        check_float,
        check_real,
        reshape_back,
        check_result_finite,
        check_input_finite,
        finite_summary,
    )
}
HELPERS["NonFiniteError"] = NonFiniteError  # raised by the checks (a class: its source)
# What code generated with check_finite=True calls: names reserved in that code only (code
# generated without it is as before, a user's variable named so keeps its name there).
CHECKS = ("check_result_finite", "check_input_finite", "finite_summary", "NonFiniteError")
DEPENDS: dict[str, tuple[str, ...]] = {
    "matmul_lhs_adjoint": ("unbroadcast",),
    "matmul_rhs_adjoint": ("unbroadcast",),
    "einsum_adjoint": ("unbroadcast",),
    "norm_adjoint": ("matrix_norm_adjoint",),
    "prod_adjoint_tangent": ("prod_adjoint",),
    "check_result_finite": ("finite_summary", "NonFiniteError"),
    "check_input_finite": ("finite_summary", "NonFiniteError"),
}
# Functions from outside adcompiler that generated code calls by name: those given
# their own rules with `adcompiler.custom` (``expit`` → scipy.special.expit).
EXTERNAL: dict[str, object] = {}
