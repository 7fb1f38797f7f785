"""More of NumPy's main namespace: elementwise functions, statistics, products, shapes.

Declared like `adcompiler.ops.numpy_ops` (its `defop`/`defunary`/`defbinary`/
`deflinear`), with NumPy's own parameter names and defaults. Rules emit IR over
operators that have rules themselves (closure), so second derivatives work; the
few run-time helpers the rules need are defined here, each with its own rules.
"""

from __future__ import annotations

import numpy as np

from adcompiler import runtime
from adcompiler.ops.core import (
    NO_DEFAULT,
    REGISTRY,
    Param,
    adjoint,
    lookup,
    op_for,
    register_multi,
    tangent,
)
from adcompiler.ops.numpy_ops import (
    _call,
    _multilinear_tangent,
    _sum_parts,
    defbinary,
    deflinear,
    defnondiff,
    defop,
    defunary,
)
from adcompiler.runtime import unbroadcast

LN2 = float(np.log(2.0))
LN10 = float(np.log(10.0))


def _first(n):
    return [0]


def helper(fn, sig, **flags):
    """Register a run-time helper that rules emit (its source is copied into emitted files)."""
    runtime.HELPERS[fn.__name__] = fn
    return defop(fn.__name__, fn, sig, fn.__name__, **flags)


def required_attr(op, name):
    """Make the static parameter `name` of `op` required (NumPy gives it no default)."""
    op.params = tuple(Param(p.name, "attr", NO_DEFAULT) if p.name == name else p for p in op.params)
    return op


def _sqrt(x):
    return _call(np.sqrt, x)


def _expand(g, axis, keepdims):
    """Put a reduction's reduced axes back as size 1, so that `g` broadcasts against x."""
    if axis is not None and not keepdims:
        return _call(np.expand_dims, g, axis=axis)
    return g


# ---------------------------------------------------------------------------
# Elementwise functions (ufuncs: their inputs are positional-only in NumPy)
# ---------------------------------------------------------------------------

defunary("log2", np.log2, lambda g, ans, x: g / (x * LN2))
defunary("log10", np.log10, lambda g, ans, x: g / (x * LN10))
defunary("exp2", np.exp2, lambda g, ans, x: g * ans * LN2)
defunary("cbrt", np.cbrt, lambda g, ans, x: g / (3 * (ans * ans)))
defunary("arcsinh", np.arcsinh, lambda g, ans, x: g / _sqrt(x * x + 1))
defunary("arccosh", np.arccosh, lambda g, ans, x: g / _sqrt(x * x - 1))
defunary("arctanh", np.arctanh, lambda g, ans, x: g / (1 - x * x))
defunary("fabs", np.fabs, lambda g, ans, x: g * _call(np.sign, x))
defunary("deg2rad", np.deg2rad, lambda g, ans, x: g * (np.pi / 180), keys=[np.radians])
defunary("rad2deg", np.rad2deg, lambda g, ans, x: g * (180 / np.pi), keys=[np.degrees])


def sinc_derivative(x):
    """d/dx np.sinc(x) = (cos(pi x) - sinc(x)) / x, by its series near 0."""
    x = np.asarray(x, dtype=np.result_type(x, 0.0))
    small = np.abs(x) < 1e-3
    safe = np.where(small, 1.0, x)
    series = -(np.pi**2) * x / 3 + np.pi**4 * x**3 / 30
    return np.where(small, series, (np.cos(np.pi * safe) - np.sinc(safe)) / safe)


def sinc_second_derivative(x):
    """d²/dx² np.sinc(x) = -(pi sin(pi x) + 2 sinc'(x)) / x, by its series near 0."""
    x = np.asarray(x, dtype=np.result_type(x, 0.0))
    small = np.abs(x) < 1e-3
    safe = np.where(small, 1.0, x)
    first = (np.cos(np.pi * safe) - np.sinc(safe)) / safe
    series = -(np.pi**2) / 3 + np.pi**4 * x**2 / 10
    return np.where(small, series, -(np.pi * np.sin(np.pi * safe) + 2 * first) / safe)


defunary("sinc", np.sinc, lambda g, ans, x: g * _call(sinc_derivative, x))
helper(sinc_derivative, "x", same_shape=True)
helper(sinc_second_derivative, "x", same_shape=True)
adjoint(sinc_derivative)(lambda g, ans, x: (g * _call(sinc_second_derivative, x),))
tangent(sinc_derivative)(lambda ts, ans, x: ts[0] * _call(sinc_second_derivative, x))


def _no_third(*args, **kwargs):
    raise NotImplementedError("third derivatives of np.sinc are not implemented")


adjoint(sinc_second_derivative)(_no_third)
tangent(sinc_second_derivative)(_no_third)

defbinary(
    "arctan2",
    np.arctan2,
    lambda g, ans, y, x: (g * x / (x * x + y * y), -g * y / (x * x + y * y)),
)
defbinary("hypot", np.hypot, lambda g, ans, x, y: (g * x / ans, g * y / ans))
defbinary(
    "logaddexp2",
    np.logaddexp2,
    lambda g, ans, x, y: (g * _call(np.exp2, x - ans), g * _call(np.exp2, y - ans)),
)


def _fmax_takes_x(x, y):
    return _call(np.logical_or, x >= y, _call(np.isnan, y))


def _fmin_takes_x(x, y):
    return _call(np.logical_or, x <= y, _call(np.isnan, y))


defbinary(
    "fmax",
    np.fmax,
    lambda g, ans, x, y: (
        g * _fmax_takes_x(x, y),
        g * _call(np.logical_not, _fmax_takes_x(x, y)),
    ),
)
defbinary(
    "fmin",
    np.fmin,
    lambda g, ans, x, y: (
        g * _fmin_takes_x(x, y),
        g * _call(np.logical_not, _fmin_takes_x(x, y)),
    ),
)
defbinary(
    "float_power",
    np.float_power,
    lambda g, ans, x, y: (g * y * _call(np.float_power, x, y - 1), g * ans * _call(np.log, x)),
)

defop("nan_to_num", np.nan_to_num, "x, copy=True, nan=0.0, posinf=None, neginf=None",
      same_shape=True)  # fmt: skip
adjoint(np.nan_to_num)(lambda g, ans, x, **attrs: (g * _call(np.isfinite, x),))
tangent(np.nan_to_num)(lambda ts, ans, x, **attrs: ts[0] * _call(np.isfinite, x))

defnondiff("trunc", np.trunc, "x", keys=[np.fix])
defnondiff("isinf", np.isinf, "x")
defnondiff("signbit", np.signbit, "x")
defnondiff("heaviside", np.heaviside, "x, y", broadcasts=True)


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def _spread(ans, a, axis, ddof):
    """x - mean(x) over the reduced axes, and N - ddof (N: the number of reduced elements)."""
    centered = a - _call(np.mean, a, axis=axis, keepdims=True)
    return centered, _call(np.size, a) / _call(np.size, ans) - ddof


def _var_adjoint(g, ans, a, axis, dtype, out, ddof, keepdims):
    centered, n = _spread(ans, a, axis, ddof)
    return (_expand(g, axis, keepdims) * centered * (2 / n),)


def _var_tangent(ts, ans, a, axis, dtype, out, ddof, keepdims):
    centered, n = _spread(ans, a, axis, ddof)
    return _call(np.sum, ts[0] * centered, axis=axis, keepdims=keepdims) * (2 / n)


def _std_adjoint(g, ans, a, axis, dtype, out, ddof, keepdims):
    centered, n = _spread(ans, a, axis, ddof)
    return (_expand(g / ans, axis, keepdims) * centered / n,)


def _std_tangent(ts, ans, a, axis, dtype, out, ddof, keepdims):
    centered, n = _spread(ans, a, axis, ddof)
    return _call(np.sum, ts[0] * centered, axis=axis, keepdims=keepdims) / (n * ans)


_STAT = "a, axis=None, dtype=None, out=None, ddof=0, keepdims=False"
defop("var", np.var, _STAT)
adjoint(np.var)(_var_adjoint)
tangent(np.var)(_var_tangent)
defop("std", np.std, _STAT)
adjoint(np.std)(_std_adjoint)
tangent(np.std)(_std_tangent)


# cumprod: ans_i = prod_{k <= i} x_k, so d ans_i / d x_j = ans_i / x_j for j <= i (x != 0)
defop("cumprod", np.cumprod, "a, axis=None, dtype=None, out=None")
adjoint(np.cumprod)(
    lambda g, ans, a, axis, dtype, out: (
        _call(runtime.cumsum_adjoint, g * ans, a.shape, axis=axis) / a,
    )
)
tangent(np.cumprod)(
    lambda ts, ans, a, axis, dtype, out: ans * _call(np.cumsum, ts[0] / a, axis=axis)
)


def diff_adjoint(g, n=1, axis=-1):
    """Adjoint of ``np.diff(x, n, axis)``: the transposed difference, n times."""
    for _ in range(n):
        widths = [(0, 0)] * np.ndim(g)
        widths[axis] = (1, 1)
        g = -np.diff(np.pad(g, widths), axis=axis)
    return g


deflinear("diff", np.diff, "a, n=1, axis=-1",
          lambda g, ans, a, n, axis: _call(diff_adjoint, g, n=n, axis=axis))  # fmt: skip
helper(diff_adjoint, "g, n=1, axis=-1")
tangent(diff_adjoint)(_multilinear_tangent(diff_adjoint, _first))
adjoint(diff_adjoint)(lambda G, ans, g, n, axis: (_call(np.diff, G, n=n, axis=axis),))


# ---------------------------------------------------------------------------
# Triangles, rolls, padding, sorting: linear maps that move or mask entries
# ---------------------------------------------------------------------------

deflinear("tril", np.tril, "m, k=0", lambda g, ans, m, k: _call(np.tril, g, k=k))
deflinear("triu", np.triu, "m, k=0", lambda g, ans, m, k: _call(np.triu, g, k=k))


def _negated(shift):
    return tuple(-s for s in shift) if isinstance(shift, tuple) else -shift


required_attr(
    deflinear("roll", np.roll, "a, shift=0, axis=None",
              lambda g, ans, a, shift, axis: _call(np.roll, g, shift=_negated(shift), axis=axis)),
    "shift",
)  # fmt: skip

PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def unpad(g, shape, pad_width, mode="constant"):
    """Adjoint of ``np.pad(x, pad_width, mode)`` for the modes that copy entries of x: every
    entry of g goes back to the entry of x it is a copy of (padding a constant: nowhere)."""
    size = int(np.prod(shape))
    fill = {"constant_values": -1} if mode == "constant" else {}
    source = np.pad(np.arange(size).reshape(shape), pad_width, mode=mode, **fill)
    keep = source >= 0
    out = np.bincount(source[keep], weights=np.asarray(g)[keep], minlength=size).reshape(shape)
    return out.astype(np.result_type(g, 0.0), copy=False)  # (bincount sums in float64)


def _pad_mode(mode):
    if mode not in PAD_MODES:
        raise NotImplementedError(
            f"np.pad with mode={mode!r} has no derivative rule; the modes that have one: "
            f"{', '.join(PAD_MODES)}"
        )


PAD = required_attr(defop("pad", np.pad, "array, pad_width=0, mode='constant', constant_values=0"),
                    "pad_width")  # fmt: skip


@adjoint(np.pad)
def _(g, ans, array, pad_width, mode, constant_values):
    _pad_mode(mode)
    return (_call(unpad, g, array.shape, pad_width=pad_width, mode=mode),)


@tangent(np.pad)
def _(ts, ans, array, pad_width, mode, constant_values):
    _pad_mode(mode)  # the padding constant does not vary: its tangent pads with zeros
    return ts[0].builder.emit_sym(PAD, [ts[0]], {"pad_width": pad_width, "mode": mode})


required_attr(helper(unpad, "g, shape, pad_width=0, mode='constant'"), "pad_width")
tangent(unpad)(_multilinear_tangent(unpad, _first))
adjoint(unpad)(
    lambda G, ans, g, shape, pad_width, mode: (
        G.builder.emit_sym(PAD, [G], {"pad_width": pad_width, "mode": mode}),
        None,
    )
)


def sort_adjoint(g, a, axis=-1):
    """Adjoint of ``np.sort(a, axis)``: each entry of g goes back to where it was sorted from."""
    out = np.zeros(np.shape(a), dtype=np.result_type(g, 0.0))
    if axis is None:
        out.reshape(-1)[np.argsort(a, axis=None, kind="stable")] = np.ravel(g)
        return out
    np.put_along_axis(out, np.argsort(a, axis=axis, kind="stable"), g, axis=axis)
    return out


def sort_tangent(t, a, axis=-1):
    """Tangent of ``np.sort(a, axis)``: t, sorted the way a sorts."""
    if axis is None:
        return np.ravel(t)[np.argsort(a, axis=None, kind="stable")]
    return np.take_along_axis(t, np.argsort(a, axis=axis, kind="stable"), axis=axis)


defop("sort", np.sort, "a, axis=-1, kind=None, order=None, stable=None")
adjoint(np.sort)(lambda g, ans, a, axis, **_: (_call(sort_adjoint, g, a, axis=axis),))
tangent(np.sort)(lambda ts, ans, a, axis, **_: _call(sort_tangent, ts[0], a, axis=axis))
helper(sort_adjoint, "g, a, axis=-1")
helper(sort_tangent, "t, a, axis=-1")
tangent(sort_adjoint)(_multilinear_tangent(sort_adjoint, _first))
tangent(sort_tangent)(_multilinear_tangent(sort_tangent, _first))
adjoint(sort_adjoint)(lambda G, ans, g, a, axis: (_call(sort_tangent, G, a, axis=axis), None))
adjoint(sort_tangent)(lambda G, ans, t, a, axis: (_call(sort_adjoint, G, a, axis=axis), None))


# ---------------------------------------------------------------------------
# Bilinear products: tensordot, inner, kron, cross
# ---------------------------------------------------------------------------
# For ans = P(a, b), linear in each operand, a helper H(g, a, b, i) gives the adjoint
# of operand i; H is linear in g and in the other operand, and reads operand i only
# for its shape. <G, H(g, a, b, i)> = <g, P(a, b with operand i := G)>, so H's adjoint
# is P (for g) and H itself (for the other operand), with operand i replaced by G.


def tensordot_adjoint(g, a, b, axes=2, i=0):
    """Adjoint of ``np.tensordot(a, b, axes)`` (or, for axes "inner", ``np.inner(a, b)``)
    with respect to operand i."""
    a_ndim, b_ndim = np.ndim(a), np.ndim(b)
    if isinstance(axes, str):  # "inner": the last axis of each, or a product with a scalar
        axes = ([a_ndim - 1], [b_ndim - 1]) if a_ndim and b_ndim else 0
    if isinstance(axes, int):
        ax_a, ax_b = list(range(a_ndim - axes, a_ndim)), list(range(axes))
    else:
        ax_a, ax_b = ([x] if isinstance(x, int) else list(x) for x in axes)
        ax_a, ax_b = [k % a_ndim for k in ax_a], [k % b_ndim for k in ax_b]
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    sa, sb = letters[:a_ndim], list(letters[a_ndim : a_ndim + b_ndim])
    for ka, kb in zip(ax_a, ax_b):
        sb[kb] = sa[ka]
    sb = "".join(sb)
    sg = "".join(sa[k] for k in range(a_ndim) if k not in ax_a)
    sg += "".join(sb[k] for k in range(b_ndim) if k not in ax_b)
    if i == 0:
        return np.einsum(f"{sg},{sb}->{sa}", g, b)
    return np.einsum(f"{sg},{sa}->{sb}", g, a)


def kron_adjoint(g, a, b, i=0):
    """Adjoint of ``np.kron(a, b)`` with respect to operand i."""
    nd = max(np.ndim(a), np.ndim(b))
    sa = (1,) * (nd - np.ndim(a)) + np.shape(a)
    sb = (1,) * (nd - np.ndim(b)) + np.shape(b)
    blocks = np.reshape(g, [d for pair in zip(sa, sb) for d in pair])
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    la, lb = letters[:nd], letters[nd : 2 * nd]
    sg = "".join(x + y for x, y in zip(la, lb))
    if i == 0:
        return np.einsum(f"{sg},{lb}->{la}", blocks, np.reshape(b, sb)).reshape(np.shape(a))
    return np.einsum(f"{sg},{la}->{lb}", blocks, np.reshape(a, sa)).reshape(np.shape(b))


def cross_adjoint(g, a, b, i=0):
    """Adjoint of ``np.cross(a, b)`` (vectors on the last axis) with respect to operand i."""
    if np.shape(a)[-1] == 3 and np.shape(b)[-1] == 3:  # <g, a x b> = <a, b x g> = <b, g x a>
        out = np.cross(b, g) if i == 0 else np.cross(g, a)
    elif np.shape(a)[-1] == 2 and np.shape(b)[-1] == 2:  # ans = a0 b1 - a1 b0
        other, sign = (b, 1.0) if i == 0 else (a, -1.0)
        out = sign * np.stack([g * other[..., 1], -g * other[..., 0]], axis=-1)
    else:
        raise ValueError("no derivative of np.cross of a 2-vector and a 3-vector")
    return unbroadcast(out, np.shape(b if i else a))  # the other axes broadcast


def defbilinear(name, fn, sig, helper_fn, helper_sig, primal_of=None, **flags):
    """A product linear in each of its two operands; `helper_fn(g, a, b, **attrs, i)` gives
    the adjoint of operand i. `primal_of(attrs)` gives the product a helper's attributes
    stand for (default: `fn` with the same attributes)."""
    op = defop(name, fn, sig, **flags)
    primal_of = primal_of or (lambda attrs: (fn, attrs))

    @adjoint(fn)
    def _(g, ans, a, b, **attrs):
        return tuple(_call(helper_fn, g, a, b, **attrs, i=i) for i in (0, 1))

    @tangent(fn)
    def _(ts, ans, a, b, **attrs):
        return _sum_parts(
            _call(fn, *(t if k == j else x for k, x in enumerate((a, b))), **attrs)
            for j, t in enumerate(ts)
            if t is not None
        )

    if lookup(helper_fn) is None:
        helper(helper_fn, helper_sig, **flags)

        @tangent(helper_fn)
        def _(ts, ans, g, a, b, i, **attrs):
            other = 2 - i  # the position of the other operand among (g, a, b)
            parts = [
                _call(helper_fn, *(t if k == j else x for k, x in enumerate((g, a, b))),
                      **attrs, i=i)
                for j, t in enumerate(ts)
                if t is not None and j in (0, other)
            ]  # fmt: skip
            return _sum_parts(parts) if parts else None

        @adjoint(helper_fn)
        def _(G, ans, g, a, b, i, **attrs):
            ops = [G if k == i else x for k, x in enumerate((a, b))]
            product, product_attrs = primal_of(attrs)
            parts = [_call(product, *ops, **product_attrs), None, None]
            parts[2 - i] = _call(helper_fn, g, *ops, **attrs, i=1 - i)
            return tuple(parts)

    return op


defbilinear("tensordot", np.tensordot, "a, b, axes=2", tensordot_adjoint,
            "g, a, b, axes=2, i=0",
            primal_of=lambda attrs: (np.inner, {}) if attrs["axes"] == "inner"
            else (np.tensordot, attrs))  # fmt: skip
defop("inner", np.inner, "a, b")
adjoint(np.inner)(
    lambda g, ans, a, b: tuple(_call(tensordot_adjoint, g, a, b, axes="inner", i=i) for i in (0, 1))
)
tangent(np.inner)(
    lambda ts, ans, a, b: _sum_parts(
        _call(np.inner, *(t if k == j else x for k, x in enumerate((a, b))))
        for j, t in enumerate(ts)
        if t is not None
    )
)
defbilinear("kron", np.kron, "a, b", kron_adjoint, "g, a, b, i=0")
defbilinear("cross", np.cross, "a, b", cross_adjoint, "g, a, b, i=0")
runtime.DEPENDS["cross_adjoint"] = ("unbroadcast",)


# ---------------------------------------------------------------------------
# Joining: column_stack, row_stack, append
# ---------------------------------------------------------------------------


def uncolumn_stack(g, *xs, i=0):
    """Adjoint of ``np.column_stack(xs)`` with respect to xs[i]: its columns of g."""
    widths = [1 if np.ndim(x) < 2 else np.shape(x)[1] for x in xs]
    start = sum(widths[:i])
    return np.reshape(g[:, start : start + widths[i]], np.shape(xs[i]))


def _defjoin(name, fn, unjoin):
    """A join of a sequence of arrays (`np.column_stack`, `np.dstack`): the adjoint of
    input i is `unjoin(g, *xs, i=i)`, the part of `g` that came from it; the tangent joins
    the tangents (zeros for a constant input)."""
    defop(name, fn, "[tup]")
    adjoint(fn)(lambda g, ans, *xs: tuple(_call(unjoin, g, *xs, i=i) for i in range(len(xs))))

    @tangent(fn)
    def _(ts, ans, *xs):
        b = ans.builder
        return b.call(fn, *(t if t is not None else b.call(np.zeros_like, x)
                            for t, x in zip(ts, xs)))  # fmt: skip

    helper(unjoin, "g, *xs, i=0")
    tangent(unjoin)(_multilinear_tangent(unjoin, _first))

    @adjoint(unjoin)
    def _(G, ans, g, *xs, i):
        parts = [G if j == i else _call(np.zeros_like, x) for j, x in enumerate(xs)]
        return (_call(fn, *parts), *(None for _ in xs))


_defjoin("column_stack", np.column_stack, uncolumn_stack)


if hasattr(np, "row_stack") and np.row_stack is not np.vstack:  # NumPy's old name of vstack
    _vstack = op_for(np.vstack)
    REGISTRY[np.row_stack] = _vstack
    _vstack.aliases.append(np.row_stack)


def unappend(g, arr, values, axis=None, i=0):
    """Adjoint of ``np.append(arr, values, axis)`` with respect to arr (i=0) or values."""
    if axis is None:
        n = np.size(arr)
        flat = np.ravel(g)
        return np.reshape(flat[:n] if i == 0 else flat[n:], np.shape(values if i else arr))
    index = [slice(None)] * np.ndim(g)
    n = np.shape(arr)[axis]
    index[axis] = slice(None, n) if i == 0 else slice(n, None)
    return g[tuple(index)]


defop("append", np.append, "arr, values, axis=None")
adjoint(np.append)(
    lambda g, ans, arr, values, axis: tuple(
        _call(unappend, g, arr, values, axis=axis, i=i) for i in (0, 1)
    )
)


@tangent(np.append)
def _(ts, ans, arr, values, axis):
    b = ans.builder
    filled = [t if t is not None else b.call(np.zeros_like, x) for t, x in zip(ts, (arr, values))]
    return b.call(np.append, *filled, axis=axis)


helper(unappend, "g, arr, values, axis=None, i=0")
tangent(unappend)(_multilinear_tangent(unappend, _first))


@adjoint(unappend)
def _(G, ans, g, arr, values, axis, i):
    parts = [G if j == i else _call(np.zeros_like, x) for j, x in enumerate((arr, values))]
    return _call(np.append, *parts, axis=axis), None, None


# ---------------------------------------------------------------------------
# More ufuncs: copysign, fmod, ldexp, vecdot, matvec, vecmat; divmod and modf (tuples)
# ---------------------------------------------------------------------------

defbinary(
    "copysign",
    np.copysign,
    lambda g, ans, x, y: (
        g * _call(np.sign, x) * y.builder.call(np.copysign, 1.0, y),
        None,
    ),
)
defbinary(
    "fmod",
    np.fmod,
    lambda g, ans, x, y: (g, -g * _call(np.trunc, x / y)),
)
defbinary("ldexp", np.ldexp, lambda g, ans, x, y: (g * _call(np.exp2, y), None))
defbinary("nextafter", np.nextafter, lambda g, ans, x, y: (g, None))  # x, one ulp away
defnondiff("spacing", np.spacing, "x")


def _tangent_skipping_none(fn, rule):
    """The tangent of a binary function whose `rule` gives None for an input it is flat in."""

    def tangent_rule(ts, ans, x, y):
        parts = [rule(t, ans, x, y)[i] for i, t in enumerate(ts) if t is not None]
        parts = [p for p in parts if p is not None]
        return _sum_parts(parts) if parts else None

    tangent(fn)(tangent_rule)


for _fn in (np.copysign, np.ldexp, np.nextafter):
    _tangent_skipping_none(_fn, op_for(_fn).adjoint)


def _unbroadcast(c, x):
    return _call(runtime.unbroadcast, c, x.shape)


def _col(x):  # (..., n) -> (..., n, 1)
    return _call(np.expand_dims, x, axis=-1)


def _row(x):  # (..., n) -> (..., 1, n)
    return _call(np.expand_dims, x, axis=-2)


# vecdot(x, y, axis=-1) = sum(x * y, axis) (real arrays), broadcasting the other axes
defop("vecdot", np.vecdot, "x1, x2, axis=-1")
adjoint(np.vecdot)(
    lambda g, ans, x, y, axis: (
        _unbroadcast(_call(np.expand_dims, g, axis=axis) * y, x),
        _unbroadcast(_call(np.expand_dims, g, axis=axis) * x, y),
    )
)
tangent(np.vecdot)(
    lambda ts, ans, x, y, axis: _sum_parts(
        _call(np.vecdot, *(t if k == j else v for k, v in enumerate((x, y))), axis=axis)
        for j, t in enumerate(ts)
        if t is not None
    )
)
# matvec(A, x) = A @ x[..., None] without the last axis; vecmat(x, A) = x[..., None, :] @ A
defop("matvec", np.matvec, "x1, x2")
defop("vecmat", np.vecmat, "x1, x2")
adjoint(np.matvec)(
    lambda g, ans, a, x: (
        _unbroadcast(_col(g) * _row(x), a),
        _unbroadcast(_call(np.vecmat, g, a), x),
    )
)
adjoint(np.vecmat)(
    lambda g, ans, x, a: (
        _unbroadcast(_call(np.matvec, a, g), x),
        _unbroadcast(_col(x) * _row(g), a),
    )
)
for _fn in (np.matvec, np.vecmat):
    tangent(_fn)(
        lambda ts, ans, a, b, _fn=_fn: _sum_parts(
            _call(_fn, *(t if k == j else v for k, v in enumerate((a, b))))
            for j, t in enumerate(ts)
            if t is not None
        )
    )


def modf_fraction(x):
    return np.modf(x)[0]


def modf_integral(x):
    return np.modf(x)[1]


def _modf_spelling(index):
    import ast

    def spelling(node, args):
        call = ast.Call(ast.parse("np.modf", mode="eval").body, list(args), [])
        return ast.Subscript(call, ast.Constant(index), ast.Load())

    return spelling


defunary("modf_fraction", modf_fraction, lambda g, ans, x: g, _modf_spelling(0))
defnondiff("modf_integral", modf_integral, "x", _modf_spelling(1))
register_multi(np.modf, op_for(modf_fraction), op_for(modf_integral))
for _fn in (np.divmod, divmod):  # builtin divmod of arrays is np.divmod
    register_multi(_fn, op_for(np.floor_divide), op_for(np.mod))


# ---------------------------------------------------------------------------
# ptp, nansum
# ---------------------------------------------------------------------------

defop("ptp", np.ptp, "a, axis=None, out=None, keepdims=False")


def _ptp_parts(g, a, axis, keepdims):
    attrs = {"axis": axis, "keepdims": keepdims}
    top = _call(runtime.max_adjoint, g, _call(np.max, a, **attrs), a, **attrs)
    bottom = _call(runtime.max_adjoint, g, _call(np.min, a, **attrs), a, **attrs)
    return top - bottom


adjoint(np.ptp)(lambda g, ans, a, axis, out, keepdims: (_ptp_parts(g, a, axis, keepdims),))
tangent(np.ptp)(
    lambda ts, ans, a, axis, out, keepdims: _call(
        np.sum,
        ts[0] * _ptp_parts(_call(np.ones_like, ans), a, axis, keepdims),
        axis=axis,
        keepdims=keepdims,
    )
)

defop("nansum", np.nansum, "a, axis=None, dtype=None, out=None, keepdims=False")
adjoint(np.nansum)(
    lambda g, ans, a, axis, dtype, out, keepdims: (
        _call(np.where, _call(np.isnan, a), 0.0, _expand(g, axis, keepdims)),
    )
)
tangent(np.nansum)(
    lambda ts, ans, a, axis, dtype, out, keepdims: _call(
        np.nansum,
        _call(np.where, _call(np.isnan, a), 0.0, ts[0]),
        axis=axis,
        keepdims=keepdims,
    )
)

# Other names of the same functions
for _alias, _target in [
    ("concat", np.concatenate),
]:
    if hasattr(np, _alias):
        REGISTRY[getattr(np, _alias)] = op_for(_target)
        op_for(_target).aliases.append(getattr(np, _alias))
for _alias, _target in [("matmul", np.matmul), ("tensordot", np.tensordot)]:
    REGISTRY[getattr(np.linalg, _alias)] = op_for(_target)
    op_for(_target).aliases.append(getattr(np.linalg, _alias))
REGISTRY[np.linalg.vecdot] = op_for(np.vecdot)
op_for(np.vecdot).aliases.append(np.linalg.vecdot)


# ---------------------------------------------------------------------------
# take, take_along_axis (integer indices: no adjoint), nanmax, nanmin, nanmean
# ---------------------------------------------------------------------------


def take_adjoint(g, shape, indices, axis=None):
    """Adjoint of ``np.take(a, indices, axis)``: g added where it was taken (repeats add up)."""
    out = np.zeros(shape, dtype=np.result_type(g, 0.0))
    if axis is None:
        np.add.at(out.reshape(-1), indices, g)
    else:
        np.add.at(out, (slice(None),) * (axis % len(shape)) + (indices,), g)
    return out


def take_along_axis_adjoint(g, shape, indices, axis=-1):
    """Adjoint of ``np.take_along_axis(arr, indices, axis)``: g added where it was taken."""
    dtype = np.result_type(g, 0.0)
    if axis is None:
        out = np.zeros(int(np.prod(shape)), dtype=dtype)
        np.add.at(out, indices, g)
        return out.reshape(shape)
    axis = axis % len(shape)
    others = [tuple(1 if k == axis else n for k, n in enumerate(s)) for s in (shape, indices.shape)]
    full = list(np.broadcast_shapes(*others))  # arr and indices broadcast off the axis
    taken = np.broadcast_to(indices, full[:axis] + [indices.shape[axis]] + full[axis + 1 :])
    full[axis] = shape[axis]
    out = np.zeros(full, dtype=dtype)
    where = list(np.ogrid[tuple(slice(n) for n in taken.shape)])
    where[axis] = taken
    np.add.at(out, tuple(where), np.broadcast_to(g, taken.shape))
    return unbroadcast(out, tuple(shape))


def _raise_mode(mode):
    if mode != "raise":
        raise NotImplementedError(f"np.take with mode={mode!r} has no derivative rule")


defop("take", np.take, "a, indices, axis=None, out=None, mode='raise'")


@adjoint(np.take)
def _(g, ans, a, indices, axis, out, mode):
    _raise_mode(mode)
    return _call(take_adjoint, g, a.shape, indices, axis=axis), None


@tangent(np.take)
def _(ts, ans, a, indices, axis, out, mode):
    return None if ts[0] is None else _call(np.take, ts[0], indices, axis=axis, mode=mode)


helper(take_adjoint, "g, shape, indices, axis=None")
tangent(take_adjoint)(_multilinear_tangent(take_adjoint, _first))
adjoint(take_adjoint)(
    lambda G, ans, g, shape, indices, axis: (_call(np.take, G, indices, axis=axis), None, None)
)

defop("take_along_axis", np.take_along_axis, "arr, indices, axis=-1")
adjoint(np.take_along_axis)(
    lambda g, ans, arr, indices, axis: (
        _call(take_along_axis_adjoint, g, arr.shape, indices, axis=axis),
        None,
    )
)
tangent(np.take_along_axis)(
    lambda ts, ans, arr, indices, axis: (
        None if ts[0] is None else _call(np.take_along_axis, ts[0], indices, axis=axis)
    )
)
helper(take_along_axis_adjoint, "g, shape, indices, axis=-1")
runtime.DEPENDS["take_along_axis_adjoint"] = ("unbroadcast",)
tangent(take_along_axis_adjoint)(_multilinear_tangent(take_along_axis_adjoint, _first))
adjoint(take_along_axis_adjoint)(
    lambda G, ans, g, shape, indices, axis: (
        _call(np.take_along_axis, G, indices, axis=axis),
        None,
        None,
    )
)

# nanmax, nanmin: as max and min (a NaN never equals the result, so it gets nothing)
for _name, _fn in [("nanmax", np.nanmax), ("nanmin", np.nanmin)]:
    defop(_name, _fn, "a, axis=None, out=None, keepdims=False")
    adjoint(_fn)(
        lambda g, ans, a, axis, out, keepdims: (
            _call(runtime.max_adjoint, g, ans, a, axis=axis, keepdims=keepdims),
        )
    )
    tangent(_fn)(
        lambda ts, ans, a, axis, out, keepdims: _call(
            np.sum,
            ts[0]
            * _call(
                runtime.max_adjoint, _call(np.ones_like, ans), ans, a, axis=axis, keepdims=keepdims
            ),
            axis=axis,
            keepdims=keepdims,
        )  # fmt: skip
    )


def _not_nan(a):
    return _call(np.logical_not, _call(np.isnan, a))


def nan_count(a, axis=None):
    """How many entries of `a` along `axis` are not NaN (keepdims), in a's float dtype (a
    count of booleans is an int64, which would make a float32 quotient float64)."""
    return np.sum(~np.isnan(a), axis=axis, keepdims=True, dtype=np.result_type(a, 0.0))


helper(nan_count, "a, axis=None", nondiff=True)


def _nan_count(a, axis):
    return _call(nan_count, a, axis=axis)


defop("nanmean", np.nanmean, "a, axis=None, dtype=None, out=None, keepdims=False")
adjoint(np.nanmean)(
    lambda g, ans, a, axis, dtype, out, keepdims: (
        _call(np.where, _not_nan(a), _expand(g, axis, keepdims) / _nan_count(a, axis), 0.0),
    )
)
tangent(np.nanmean)(
    lambda ts, ans, a, axis, dtype, out, keepdims: _call(
        np.sum,
        _call(np.where, _not_nan(a), ts[0] / _nan_count(a, axis), 0.0),
        axis=axis,
        keepdims=keepdims,
    )
)


# ---------------------------------------------------------------------------
# dstack, cumulative_sum, cumulative_prod
# ---------------------------------------------------------------------------


def undstack(g, *xs, i=0):
    """Adjoint of ``np.dstack(xs)`` with respect to xs[i]: its slices of g along axis 2."""
    depths = [np.shape(x)[2] if np.ndim(x) == 3 else 1 for x in xs]
    start = sum(depths[:i])
    return np.reshape(g[:, :, start : start + depths[i]], np.shape(xs[i]))


_defjoin("dstack", np.dstack, undstack)


def _no_initial(include_initial):
    if include_initial:
        raise NotImplementedError("no derivative rule for include_initial=True")


_CUMULATIVE = "x, axis=None, dtype=None, out=None, include_initial=False"
CUMULATIVE_SUM = defop("cumulative_sum", np.cumulative_sum, _CUMULATIVE)
defop("cumulative_prod", np.cumulative_prod, _CUMULATIVE)


@adjoint(np.cumulative_sum)
def _(g, ans, x, axis, dtype, out, include_initial):
    _no_initial(include_initial)
    return (_call(runtime.cumsum_adjoint, g, x.shape, axis=axis),)


@tangent(np.cumulative_sum)
def _(ts, ans, x, axis, dtype, out, include_initial):
    _no_initial(include_initial)
    return _call(np.cumulative_sum, ts[0], axis=axis)


@adjoint(np.cumulative_prod)
def _(g, ans, x, axis, dtype, out, include_initial):
    _no_initial(include_initial)
    return (_call(runtime.cumsum_adjoint, g * ans, x.shape, axis=axis) / x,)


@tangent(np.cumulative_prod)
def _(ts, ans, x, axis, dtype, out, include_initial):
    _no_initial(include_initial)
    return ans * _call(np.cumulative_sum, ts[0] / x, axis=axis)
