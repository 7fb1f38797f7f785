"""NumPy operators and their derivative rules, one rule per operator.

Each operator is declared with `defop(name, fn, signature, spelling)`; its
adjoint and tangent sit next to it. Rules receive `Sym`s: ``g`` is the
adjoint of the output (or, in a tangent rule, ``ts`` the input tangents),
``ans`` the output, then the inputs, then static attributes as keywords.

Families have shortcuts: `defunary` takes the adjoint of an elementwise
function, ``g * f'(x)``, and derives the tangent from it (the same linear map
applied to the input tangent); `defbinary` does the same for each input of a
broadcasting elementwise function. Broadcasting itself is undone by the
reverse transform through one `unbroadcast` node, never inside a rule.
"""

from __future__ import annotations

import ast
import builtins
import math
import operator

import numpy as np

from adcompiler import runtime
from adcompiler.ops.core import NO_DEFAULT, Op, Param, View, adjoint, op_for, register, tangent


def _signature(text: str) -> tuple[Param, ...]:
    """Parse ``"x, *dyn, [seq], (shape), axis=None"``: inputs, varargs, a sequence, an
    input that is a shape (a tuple stays a tuple), attributes."""
    params = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        if item.startswith("*"):
            params.append(Param(item[1:], "varargs"))
        elif item.startswith("["):
            params.append(Param(item[1:-1], "seq"))
        elif item.startswith("("):
            params.append(Param(item[1:-1], "in", NO_DEFAULT, tuples="shape"))
        elif "=" in item:
            name, default = item.split("=", 1)
            params.append(Param(name.strip(), "attr", ast.literal_eval(default.strip())))
        else:
            params.append(Param(item, "in", NO_DEFAULT))
    return tuple(params)


def defop(name, fn, sig, spelling=None, keys=(), **flags) -> Op:
    spelling = spelling or f"np.{name}"
    return register(Op(name, fn, _signature(sig), spelling, **flags), *keys)


def defunary(name, fn, rule, spelling=None, keys=(), **flags) -> Op:
    """An elementwise function given by its adjoint ``rule(g, ans, x) = g * f'(x)``."""
    op = defop(name, fn, "x", spelling, keys=keys, same_shape=True, **flags)
    adjoint(fn)(lambda g, ans, x: (rule(g, ans, x),))
    tangent(fn)(lambda ts, ans, x: rule(ts[0], ans, x))
    return op


def defbinary(name, fn, rule, spelling=None, keys=(), **flags) -> Op:
    """A broadcasting elementwise function given by ``rule(g, ans, x, y) = (g*df/dx, g*df/dy)``."""
    op = defop(name, fn, "x, y", spelling, keys=keys, broadcasts=True, **flags)
    adjoint(fn)(rule)

    def tangent_rule(ts, ans, x, y):
        parts = [rule(t, ans, x, y)[i] for i, t in enumerate(ts) if t is not None]
        parts = [p for p in parts if p is not None]  # None: no derivative in that input
        return _sum_parts(parts) if parts else None

    tangent(fn)(tangent_rule)
    return op


def defnondiff(name, fn, sig, spelling=None, keys=(), **flags):
    return defop(name, fn, sig, spelling, keys=keys, nondiff=True, **flags)


def deflinear(name, fn, sig, rule, spelling=None, keys=(), **flags):
    """An operator linear in its array inputs: the tangent is the operator applied to tangents.

    Only for single-input operators; `rule(g, ans, x, **attrs)` gives the adjoint.
    """
    op = defop(name, fn, sig, spelling, keys=keys, **flags)
    adjoint(fn)(lambda g, ans, x, *rest, **attrs: (rule(g, ans, x, *rest, **attrs),))
    tangent(fn)(
        lambda ts, ans, x, *rest, **attrs: ts[0].builder.emit_sym(op, [ts[0], *rest], attrs)
    )
    return op


def _mT(x):  # noqa: N802 - the matrix transpose of the last two axes
    return x.builder.call(np.swapaxes, x, axis1=-1, axis2=-2)


# ---------------------------------------------------------------------------
# Arithmetic operators
# ---------------------------------------------------------------------------

defbinary(
    "add",
    np.add,
    lambda g, ans, x, y: (g, g),
    "_0 + _1",
    keys=[operator.add],
    augmented="+",
    integer=True,
    foldable=True,
)
defbinary(
    "subtract",
    np.subtract,
    lambda g, ans, x, y: (g, -g),
    "_0 - _1",
    keys=[operator.sub],
    augmented="-",
    integer=True,
    foldable=True,
)
tangent(np.subtract)(
    lambda ts, ans, x, y: ts[0] if ts[1] is None else -ts[1] if ts[0] is None else ts[0] - ts[1]
)


def _multiply_adjoint(g, ans, x, y):
    if x.value is y.value:  # x * x: one contribution, 2 g x
        return 2 * (g * x), None
    return g * y, g * x


def _multiply_tangent(ts, ans, x, y):
    if x.value is y.value:  # x * x
        return 2 * (ts[0] * x)
    parts = [t * other for t, other in zip(ts, (y, x)) if t is not None]
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]


defbinary(
    "multiply",
    np.multiply,
    _multiply_adjoint,
    "_0 * _1",
    keys=[operator.mul],
    augmented="*",
    integer=True,
    foldable=True,
)
tangent(np.multiply)(_multiply_tangent)


def _divide_adjoint(g, ans, x, y):
    # d(x/y)/dy = -ans / y; for a constant numerator c != 0 that is -ans * ans / c, which
    # needs only the result: `1.0 / (1.0 + np.exp(-z))` then saves no denominator.
    c = x.const
    if x.is_const and isinstance(c, (int, float)) and not isinstance(c, bool) and c != 0:
        return g / y, -g * ans * ans / c
    return g / y, -g * ans / y


defbinary(
    "divide",
    np.true_divide,
    _divide_adjoint,
    "_0 / _1",
    keys=[operator.truediv],
    augmented="/",
    foldable=True,
)


def _power_adjoint(g, ans, x, y):
    b = g.builder
    # x ** 0 is 1 for every x, 0 ** 0 included: no derivative in x (y * x ** (y - 1)
    # would be 0 * inf = nan there, or raise ZeroDivisionError for Python floats)
    if y.is_const and isinstance(y.const, (int, float)):
        # x is differentiated only where it is active, so a float: x ** 1 is x
        gx = None if y.const == 0 else g * y * (x if y.const == 2 else x ** (y - 1))
    else:
        gx = g * y * b.call(np.where, y == 0, 1.0, x) ** (y - 1)
    # d/dy x ** y = x ** y log x, which is 0 where x ** y is 0 (0 ** y for y > 0; not
    # 0 * log 0 = nan): log is taken of 1 there
    if y.is_const:
        return gx, None
    if x.is_const and isinstance(x.const, (int, float)) and x.const > 0:
        return gx, g * ans * math.log(x.const)  # 2.0 ** y: a number, not a float64 array
    gy = g * ans * b.call(np.log, b.call(np.where, ans == 0, 1.0, x))
    return gx, gy


defbinary("power", np.power, _power_adjoint, "_0 ** _1", keys=[operator.pow], foldable=True)
defbinary(
    "mod",
    np.mod,
    lambda g, ans, x, y: (g, -g * g.builder.call(np.floor_divide, x, y)),
    "_0 % _1",
    keys=[operator.mod],
    integer=True,
)
defbinary(
    "logaddexp",
    np.logaddexp,
    lambda g, ans, x, y: (g * g.builder.call(np.exp, x - ans), g * g.builder.call(np.exp, y - ans)),
)
defbinary(
    "maximum",
    np.maximum,
    lambda g, ans, x, y: (g * (x >= y), g * (x < y)),
)
defbinary(
    "minimum",
    np.minimum,
    lambda g, ans, x, y: (g * (x <= y), g * (x > y)),
)
defnondiff(
    "floor_divide",
    np.floor_divide,
    "x, y",
    "_0 // _1",
    keys=[operator.floordiv],
    broadcasts=True,
    integer=True,
    foldable=True,
)

defunary(
    "negative",
    np.negative,
    lambda g, ans, x: -g,
    "-_0",
    keys=[operator.neg],
    integer=True,
    foldable=True,
)
defunary("positive", np.positive, lambda g, ans, x: g, "+_0", keys=[operator.pos])


# ---------------------------------------------------------------------------
# Elementwise functions
# ---------------------------------------------------------------------------


def _call(fn, *args, **attrs):
    return args[0].builder.call(fn, *args, **attrs)


def _sum_parts(parts):
    """The sum of the tangent contributions of several inputs."""
    parts = list(parts)
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


defunary("exp", np.exp, lambda g, ans, x: g * ans)
defunary("log", np.log, lambda g, ans, x: g / x)
defunary("log1p", np.log1p, lambda g, ans, x: g / (1 + x))
defunary("expm1", np.expm1, lambda g, ans, x: g * (ans + 1))
defunary("sqrt", np.sqrt, lambda g, ans, x: g * 0.5 / ans)
defunary("square", np.square, lambda g, ans, x: g * 2 * x)
defunary("reciprocal", np.reciprocal, lambda g, ans, x: -g * ans * ans)
defunary("abs", np.abs, lambda g, ans, x: g * _call(np.sign, x), keys=[abs, np.absolute])
defunary("sin", np.sin, lambda g, ans, x: g * _call(np.cos, x))
defunary("cos", np.cos, lambda g, ans, x: -g * _call(np.sin, x))
defunary("tan", np.tan, lambda g, ans, x: g * (1 + ans * ans))
defunary("arcsin", np.arcsin, lambda g, ans, x: g / _call(np.sqrt, 1 - x * x))
defunary("arccos", np.arccos, lambda g, ans, x: -g / _call(np.sqrt, 1 - x * x))
defunary("arctan", np.arctan, lambda g, ans, x: g / (1 + x * x))
defunary("sinh", np.sinh, lambda g, ans, x: g * _call(np.cosh, x))
defunary("cosh", np.cosh, lambda g, ans, x: g * _call(np.sinh, x))
defunary("tanh", np.tanh, lambda g, ans, x: g * (1 - ans * ans))

defnondiff("sign", np.sign, "x")
defnondiff("floor", np.floor, "x")
defnondiff("ceil", np.ceil, "x")
defnondiff("rint", np.rint, "x", keys=[np.round])
defnondiff("isnan", np.isnan, "x")
defnondiff("isfinite", np.isfinite, "x")
for _name, _fn, _sym in [
    ("equal", np.equal, "=="),
    ("not_equal", np.not_equal, "!="),
    ("less", np.less, "<"),
    ("less_equal", np.less_equal, "<="),
    ("greater", np.greater, ">"),
    ("greater_equal", np.greater_equal, ">="),
]:
    _op = getattr(
        operator, {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}[_sym]
    )
    defnondiff(_name, _fn, "x, y", f"_0 {_sym} _1", keys=[_op], broadcasts=True)
defnondiff("logical_and", np.logical_and, "x, y", keys=[operator.and_], broadcasts=True)
defnondiff("logical_or", np.logical_or, "x, y", keys=[operator.or_], broadcasts=True)
defnondiff("logical_not", np.logical_not, "x", keys=[operator.invert])


def _where_rule(g, ans, c, x, y):
    return (None, _call(np.where, c, g, 0.0), _call(np.where, c, 0.0, g))


defop("where", np.where, "c, x, y", broadcasts=True, fresh=True)
adjoint(np.where)(_where_rule)


@tangent(np.where)
def _(ts, ans, c, x, y):
    b = ans.builder
    tx = ts[1] if ts[1] is not None else b.const(0.0)
    ty = ts[2] if ts[2] is not None else b.const(0.0)
    return b.call(np.where, c, tx, ty)


def _clip_masks(x, lo, hi):
    """Where clip(x, lo, hi) = minimum(maximum(x, lo), hi) takes x, lo and hi (None: no bound)."""
    bounded_lo, bounded_hi = lo.const is not None, hi.const is not None
    take_x = [m for m in (bounded_lo and x >= lo, bounded_hi and x <= hi) if m]
    take_x = take_x[0] if len(take_x) == 1 else _call(np.logical_and, *take_x)
    take_lo = bounded_lo and (x < lo if not bounded_hi else _call(np.logical_and, x < lo, lo <= hi))
    take_hi = bounded_hi and (x > hi if not bounded_lo else _call(np.logical_or, x > hi, lo > hi))
    return take_x, take_lo, take_hi


# NumPy's names (its keywords min=, max= are these: adcompiler/frontend/methods.py)
defop("clip", np.clip, "a, a_min, a_max", broadcasts=True, fresh=True)
adjoint(np.clip)(
    lambda g, ans, x, lo, hi: tuple(None if m is False else g * m for m in _clip_masks(x, lo, hi))
)
tangent(np.clip)(
    lambda ts, ans, x, lo, hi: _sum_parts(
        t * m for t, m in zip(ts, _clip_masks(x, lo, hi)) if t is not None
    )
)


# ---------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------


def _ones(ans):
    """Ones shaped like a reduction's result: the seed for the tangent of a reduction
    given through its adjoint, sum(dx * adjoint(ones))."""
    return _call(np.ones_like, ans)


def _unreduce(g, x, axis, keepdims):
    """Broadcast a reduced adjoint back to the shape of the reduced input."""
    if axis is not None and not keepdims:
        g = g.builder.call(np.expand_dims, g, axis=axis)
    return g.builder.call(np.broadcast_to, g, x.shape)


def _count(x, ans=None):
    """How many elements each element of a mean's result averages: at least 1, so that
    the mean of an empty array (nan, as NumPy makes it) has an empty gradient instead of
    a division by zero (ZeroDivisionError for Python numbers)."""
    b = x.builder
    n = b.call(builtins.max, _call(np.size, x), 1)
    return n if ans is None else n / b.call(builtins.max, _call(np.size, ans), 1)


deflinear(
    "sum",
    np.sum,
    "x, axis=None, keepdims=False",
    lambda g, ans, x, axis, keepdims: _unreduce(g, x, axis, keepdims),
    reduction=True,
    fresh=True,
)
deflinear(
    "mean",
    np.mean,
    "x, axis=None, keepdims=False",
    lambda g, ans, x, axis, keepdims: _unreduce(
        g / (_count(x) if axis is None else _count(x, ans)), x, axis, keepdims
    ),
    reduction=True,
    fresh=True,
)
defop("prod", np.prod, "x, axis=None, keepdims=False", reduction=True)
adjoint(np.prod)(
    lambda g, ans, x, axis, keepdims: (
        _call(runtime.prod_adjoint, g, x, axis=axis, keepdims=keepdims),
    )
)
tangent(np.prod)(
    lambda ts, ans, x, axis, keepdims: _call(
        np.sum,
        ts[0] * _call(runtime.prod_adjoint, _ones(ans), x, axis=axis, keepdims=keepdims),
        axis=axis,
        keepdims=keepdims,
    )
)
defop(
    "prod_adjoint",
    runtime.prod_adjoint,
    "g, x, axis=None, keepdims=False",
    "prod_adjoint",
    fresh=True,
)

for _name, _fn, _keys in [("max", np.max, [np.amax]), ("min", np.min, [np.amin])]:
    defop(_name, _fn, "x, axis=None, keepdims=False", keys=_keys, reduction=True)
    adjoint(_fn)(
        lambda g, ans, x, axis, keepdims: (
            _call(runtime.max_adjoint, g, ans, x, axis=axis, keepdims=keepdims),
        )
    )
    tangent(_fn)(
        lambda ts, ans, x, axis, keepdims: _call(
            np.sum,
            ts[0] * _call(runtime.max_adjoint, _ones(ans), ans, x, axis=axis, keepdims=keepdims),
            axis=axis,
            keepdims=keepdims,
        )
    )
defop(
    "max_adjoint",
    runtime.max_adjoint,
    "g, ans, x, axis=None, keepdims=False",
    "max_adjoint",
    fresh=True,
)

deflinear(
    "cumsum",
    np.cumsum,
    "x, axis=None",
    lambda g, ans, x, axis: _call(runtime.cumsum_adjoint, g, x.shape, axis=axis),
)
defop("cumsum_adjoint", runtime.cumsum_adjoint, "g, (shape), axis=None", "cumsum_adjoint")
deflinear(
    "trace",
    np.trace,
    "x, offset=0, axis1=0, axis2=1",
    lambda g, ans, x, **attrs: _call(runtime.trace_adjoint, g, x.shape, **attrs),
)
defop(
    "trace_adjoint",
    runtime.trace_adjoint,
    "g, (shape), offset=0, axis1=0, axis2=1",
    "trace_adjoint",
)


# ---------------------------------------------------------------------------
# Products
# ---------------------------------------------------------------------------

defop("matmul", np.matmul, "a, b", "_0 @ _1", keys=[operator.matmul], fresh=True)
adjoint(np.matmul)(
    lambda g, ans, a, b: (
        _call(runtime.matmul_lhs_adjoint, g, a, b),
        _call(runtime.matmul_rhs_adjoint, g, a, b),
    )
)
defop("dot", np.dot, "a, b", fresh=True)
adjoint(np.dot)(
    lambda g, ans, a, b: (
        _call(runtime.dot_lhs_adjoint, g, a, b),
        _call(runtime.dot_rhs_adjoint, g, a, b),
    )
)
for _fn in (np.matmul, np.dot):
    tangent(_fn)(
        lambda ts, ans, a, b, _fn=_fn: (
            _call(_fn, ts[0], b)
            if ts[1] is None
            else _call(_fn, a, ts[1])
            if ts[0] is None
            else _call(_fn, ts[0], b) + _call(_fn, a, ts[1])
        )
    )
defop("matmul_lhs_adjoint", runtime.matmul_lhs_adjoint, "g, a, b", "matmul_lhs_adjoint", fresh=True)
defop("matmul_rhs_adjoint", runtime.matmul_rhs_adjoint, "g, a, b", "matmul_rhs_adjoint", fresh=True)
defop("dot_lhs_adjoint", runtime.dot_lhs_adjoint, "g, a, b", "dot_lhs_adjoint", fresh=True)
defop("dot_rhs_adjoint", runtime.dot_rhs_adjoint, "g, a, b", "dot_rhs_adjoint", fresh=True)

defop("outer", np.outer, "a, b", fresh=True)
adjoint(np.outer)(
    lambda g, ans, a, b: (
        _call(np.reshape, g @ _call(np.ravel, b), a.shape),
        _call(np.reshape, _call(np.ravel, a) @ g, b.shape),
    )
)
tangent(np.outer)(
    lambda ts, ans, a, b: (
        _call(np.outer, ts[0], b)
        if ts[1] is None
        else _call(np.outer, a, ts[1])
        if ts[0] is None
        else _call(np.outer, ts[0], b) + _call(np.outer, a, ts[1])
    )
)


defop("vdot", np.vdot, "a, b")  # the sum of a * b over all elements (real arrays)
adjoint(np.vdot)(
    lambda g, ans, a, b: (
        g * _call(np.reshape, b, a.shape),
        g * _call(np.reshape, a, b.shape),
    )
)
tangent(np.vdot)(
    lambda ts, ans, a, b: _sum_parts(
        _call(np.vdot, t, other) for t, other in zip(ts, (b, a)) if t is not None
    )
)


def _einsum_spelling(node, args):
    fn = ast.Attribute(ast.Name("np", ast.Load()), "einsum", ast.Load())
    return ast.Call(fn, [ast.Constant(node.attrs["subscripts"]), *args], [])


defop("einsum", np.einsum, "*operands, subscripts=''", _einsum_spelling)


@adjoint(np.einsum)
def _(g, ans, *operands, subscripts):
    return tuple(
        _call(runtime.einsum_adjoint, g, *operands, subscripts=subscripts, i=i)
        for i in range(len(operands))
    )


@tangent(np.einsum)
def _(ts, ans, *operands, subscripts):
    b = ans.builder
    parts = []
    for i, t in enumerate(ts):
        if t is not None:
            args = [t if j == i else x for j, x in enumerate(operands)]
            parts.append(b.emit_sym(_EINSUM, args, {"subscripts": subscripts}))
    return _sum_parts(parts)


defop(
    "einsum_adjoint", runtime.einsum_adjoint, "g, *operands, subscripts='', i=0", "einsum_adjoint"
)


# ---------------------------------------------------------------------------
# Shape manipulation
# ---------------------------------------------------------------------------


def _inverse_axes(axes):
    return None if axes is None else tuple(int(i) for i in np.argsort(np.mod(axes, len(axes))))


def _transpose_rule(g, ans, x, axes):
    return g.builder.call(np.transpose, g, axes=_inverse_axes(axes))


def _transpose_spelling(node, args):
    """`x.T` (all axes reversed), or `np.transpose(x, axes=...)`."""
    from adcompiler.codegen.to_source import constant_ast

    if node.attrs.get("axes") is None:
        return ast.Attribute(args[0], "T", ast.Load())
    func = ast.Attribute(ast.Name("np", ast.Load()), "transpose", ast.Load())
    return ast.Call(func, [args[0]], [ast.keyword("axes", constant_ast(node.attrs["axes"]))])


# Views (View traits; docs/design.md): `write_back` gives the input after a write
# changed the view to `new`, e.g. the transpose back for `x.T`.
def _reshaped_back(emit, node, new):
    return emit(np.reshape, [new, emit(np.shape, [node.inputs[0]], {})], {})


def _reshaped_back_checked(emit, node, new):
    """For a view of `x` that is a new array where `x` is a number (np.expand_dims):
    the write is put back into `x` only after checking that `x` is an array."""
    return emit(runtime.reshape_back, [new, node.inputs[0]], {})


_TRANSPOSE_VIEW = View(
    write_back=lambda emit, node, new: emit(
        np.transpose, [new], {"axes": _inverse_axes(node.attrs["axes"])}
    )
)
_SWAPAXES_VIEW = View(write_back=lambda emit, node, new: emit(np.swapaxes, [new], node.attrs))
_RESHAPE_VIEW = View(kind="layout", write_back=_reshaped_back)  # a view or a copy

deflinear(
    "transpose",
    np.transpose,
    "x, axes=None",
    _transpose_rule,
    _transpose_spelling,
    view=_TRANSPOSE_VIEW,
)
deflinear(
    "swapaxes",
    np.swapaxes,
    "x, axis1=0, axis2=1",
    lambda g, ans, x, axis1, axis2: _call(np.swapaxes, g, axis1=axis1, axis2=axis2),
    view=_SWAPAXES_VIEW,
)
defop("reshape", np.reshape, "x, (shape)", view=_RESHAPE_VIEW)
adjoint(np.reshape)(lambda g, ans, x, shape: (_call(np.reshape, g, x.shape), None))
tangent(np.reshape)(lambda ts, ans, x, shape: _call(np.reshape, ts[0], shape))
deflinear(
    "ravel", np.ravel, "x", lambda g, ans, x: _call(np.reshape, g, x.shape), view=_RESHAPE_VIEW
)
# x.flatten() always copies (np.ravel makes a view where it can)
deflinear(
    "flatten",
    np.ndarray.flatten,
    "x",
    lambda g, ans, x: _call(np.reshape, g, x.shape),
    "_0.flatten()",
)
# np.asarray(x) is x itself if x is an array already (of any dtype: no `dtype=` here),
# a new array for a number or a list
deflinear(
    "asarray",
    np.asarray,
    "x",
    lambda g, ans, x: g,
    keys=[np.asanyarray],
    view=View(kind="layout", identity=True, whole=True),
)
deflinear(
    "squeeze",
    np.squeeze,
    "x, axis=None",
    lambda g, ans, x, axis: _call(np.reshape, g, x.shape),
    view=View(write_back=_reshaped_back_checked),
)
deflinear(
    "expand_dims",
    np.expand_dims,
    "x, axis=0",
    lambda g, ans, x, axis: _call(np.reshape, g, x.shape),
    view=View(write_back=_reshaped_back_checked),
)
defop("reshape_back", runtime.reshape_back, "new, x", "reshape_back")
adjoint(runtime.reshape_back)(lambda g, ans, new, x: (_call(np.reshape, g, new.shape), None))
tangent(runtime.reshape_back)(
    lambda ts, ans, new, x: None if ts[0] is None else _call(np.reshape, ts[0], x.shape)
)
defop(  # a read-only view: NumPy refuses writes through it
    "broadcast_to", np.broadcast_to, "x, (shape)", view=View(writable=False, whole=True)
)
adjoint(np.broadcast_to)(lambda g, ans, x, shape: (_call(runtime.unbroadcast, g, x.shape), None))
tangent(np.broadcast_to)(lambda ts, ans, x, shape: _call(np.broadcast_to, ts[0], shape))
defop(  # g itself where no axis is summed
    "unbroadcast",
    runtime.unbroadcast,
    "g, (shape)",
    "unbroadcast",
    view=View(kind="layout", whole=True),
)
adjoint(runtime.unbroadcast)(
    lambda g, ans, gx, shape: (_call(np.broadcast_to, g, _call(np.shape, gx)), None)
)
tangent(runtime.unbroadcast)(lambda ts, ans, gx, shape: _call(runtime.unbroadcast, ts[0], shape))

deflinear(
    "tile",
    np.tile,
    "x, reps=1",
    lambda g, ans, x, reps: _call(runtime.untile, g, x.shape, reps=reps),
)
defop("untile", runtime.untile, "g, (shape), reps=1", "untile")
deflinear(
    "repeat",
    np.repeat,
    "x, repeats=1, axis=None",
    lambda g, ans, x, repeats, axis: _call(
        runtime.unrepeat, g, x.shape, repeats=repeats, axis=axis
    ),
)
defop("unrepeat", runtime.unrepeat, "g, (shape), repeats=1, axis=None", "unrepeat")
deflinear("copy", np.copy, "x", lambda g, ans, x: g)


def _astype_spelling(node, args):
    from adcompiler.codegen.to_source import constant_ast

    method = ast.Attribute(args[0], "astype", ast.Load())
    return ast.Call(method, [constant_ast(node.attrs["dtype"])], [])


defop("astype", runtime.astype, "x, dtype=None", _astype_spelling)


def _to_float(dtype) -> bool:
    """True if a cast to `dtype` keeps the value (floats): a cast to integers or booleans
    is piecewise constant, with no derivative."""
    try:
        return np.dtype(dtype).kind in "fc"
    except TypeError:
        return False  # not a dtype NumPy knows: no derivative claimed


@adjoint(runtime.astype)
def _(g, ans, x, dtype=None):
    return (g if _to_float(dtype) else None,)


@tangent(runtime.astype)
def _(ts, ans, x, dtype=None):
    return _call(runtime.astype, ts[0], dtype=dtype) if _to_float(dtype) else None


def _index_join_spelling(node, args):
    """``np.r_[a, b]``, ``np.c_[a, b]``: the join written as the user wrote it."""
    np_attr = ast.Attribute(ast.Name("np", ast.Load()), node.op.name, ast.Load())
    index = ast.Tuple(list(args), ast.Load()) if len(args) != 1 else args[0]
    return ast.Subscript(np_attr, index, ast.Load())


for _name, _fn, _axis in [
    ("concatenate", np.concatenate, "axis=0"),
    ("stack", np.stack, "axis=0"),
    ("hstack", np.hstack, ""),
    ("vstack", np.vstack, ""),
    ("r_", runtime.r_, ""),  # np.r_[a, b] and np.c_[a, b]: indexing a NumPy object
    ("c_", runtime.c_, ""),
]:
    defop(
        _name,
        _fn,
        f"[arrays], {_axis}" if _axis else "[arrays]",
        _index_join_spelling if _name in ("r_", "c_") else None,
        keys=(getattr(np, _name),) if _name in ("r_", "c_") else (),
    )

    def _join_adjoint(g, ans, *xs, axis=0, _name=_name):
        return tuple(
            _call(runtime.unjoin, g, *xs, kind=_name, axis=axis, i=i) for i in range(len(xs))
        )

    def _join_tangent(ts, ans, *xs, axis=0, _fn=_fn, _name=_name):
        b = ans.builder
        filled = [t if t is not None else b.call(np.zeros_like, x) for t, x in zip(ts, xs)]
        attrs = {"axis": axis} if _name in ("concatenate", "stack") else {}
        return b.call(_fn, *filled, **attrs)

    adjoint(_fn)(_join_adjoint)
    tangent(_fn)(_join_tangent)
defop("unjoin", runtime.unjoin, "g, *xs, kind='', axis=0, i=0", "unjoin")


# ---------------------------------------------------------------------------
# Linear algebra
# ---------------------------------------------------------------------------


def _norm_adjoint(g, ans, x, ord, axis, keepdims):
    return _call(runtime.norm_adjoint, g, ans, x, ord=ord, axis=axis, keepdims=keepdims)


defop(
    "norm",
    np.linalg.norm,
    "x, ord=None, axis=None, keepdims=False",
    "np.linalg.norm",
    reduction=True,
)
adjoint(np.linalg.norm)(lambda g, ans, x, **attrs: (_norm_adjoint(g, ans, x, **attrs),))
tangent(np.linalg.norm)(
    lambda ts, ans, x, **attrs: _call(
        np.sum,
        ts[0] * _norm_adjoint(_ones(ans), ans, x, **attrs),
        axis=attrs["axis"],
        keepdims=attrs["keepdims"],
    )
)
defop(
    "norm_adjoint",
    runtime.norm_adjoint,
    "g, ans, x, ord=None, axis=None, keepdims=False",
    "norm_adjoint",
    fresh=True,
)

defop("inv", np.linalg.inv, "a", "np.linalg.inv")
adjoint(np.linalg.inv)(lambda g, ans, a: (-(_mT(ans) @ g @ _mT(ans)),))
tangent(np.linalg.inv)(lambda ts, ans, a: -(ans @ ts[0] @ ans))

defop("det", np.linalg.det, "a", "np.linalg.det")
adjoint(np.linalg.det)(lambda g, ans, a: (_call(runtime.det_adjoint, g, ans, a),))
tangent(np.linalg.det)(
    lambda ts, ans, a: ans * _call(np.trace, _call(np.linalg.solve, a, ts[0]), axis1=-2, axis2=-1)
)
defop("det_adjoint", runtime.det_adjoint, "g, ans, a", "det_adjoint")

defop("solve", np.linalg.solve, "a, b", "np.linalg.solve")


@adjoint(np.linalg.solve)
def _(g, ans, a, b):
    gb = _call(np.linalg.solve, _mT(a), g)
    return _call(runtime.solve_lhs_adjoint, gb, ans), gb


@tangent(np.linalg.solve)
def _(ts, ans, a, b):
    rhs = ts[1] if ts[0] is None else (-(ts[0] @ ans) if ts[1] is None else ts[1] - ts[0] @ ans)
    return _call(np.linalg.solve, a, rhs)


defop("solve_lhs_adjoint", runtime.solve_lhs_adjoint, "gb, x", "solve_lhs_adjoint")


# ---------------------------------------------------------------------------
# Constructors: no gradient flows through them
# ---------------------------------------------------------------------------

defnondiff("zeros", np.zeros, "shape, dtype=None", fresh=True)
defnondiff("ones", np.ones, "shape, dtype=None", fresh=True)
defnondiff("zeros_like", np.zeros_like, "x, dtype=None", unique=True)
defnondiff("ones_like", np.ones_like, "x, dtype=None")
defnondiff("eye", np.eye, "N, *rest, k=0, dtype=None")  # rest: M, given by position

# ... except through the values they are given: the fill value, arange's start and step
defop("full", np.full, "(shape), fill_value, dtype=None")
defop("full_like", np.full_like, "x, fill_value, dtype=None")
defop("arange", np.arange, "start, *rest")


@adjoint(np.full)
def _(g, ans, shape, fill_value, dtype=None):
    return None, _call(runtime.unbroadcast, g, fill_value.shape)


@tangent(np.full)
def _(ts, ans, shape, fill_value, dtype=None):
    return None if ts[1] is None else _call(np.full, shape, ts[1], dtype=dtype)


@adjoint(np.full_like)
def _(g, ans, x, fill_value, dtype=None):
    return None, _call(runtime.unbroadcast, g, fill_value.shape)


@tangent(np.full_like)
def _(ts, ans, x, fill_value, dtype=None):
    return None if ts[1] is None else _call(np.full_like, ans, ts[1], dtype=dtype)


# np.arange(start, stop, step)[k] = start + k * step: the stop only sets the count, and
# np.arange(stop) has no derivative
@adjoint(np.arange)
def _(g, ans, start, *rest):
    if not rest:
        return (None,)
    steps = _call(np.arange, _call(np.size, g))
    step = (_call(np.sum, g * steps),) if len(rest) > 1 else ()
    return (_call(np.sum, g), None, *step)


@tangent(np.arange)
def _(ts, ans, start, *rest):
    if not rest:
        return None
    parts = []
    if ts[0] is not None:
        parts.append(_call(np.full_like, ans, ts[0], dtype=float))
    if len(rest) > 1 and ts[2] is not None:
        parts.append(_call(np.arange, _call(np.size, ans)) * ts[2])
    return _sum_parts(parts) if parts else None


defnondiff("argmax", np.argmax, "x, axis=None")
defnondiff("argmin", np.argmin, "x, axis=None")
defnondiff("argsort", np.argsort, "x, axis=-1")


# ---------------------------------------------------------------------------
# Builtins
# ---------------------------------------------------------------------------

deflinear("float", float, "x", lambda g, ans, x: g, "float", scalar=True)
defnondiff("int", int, "x", "int", scalar=True)
defnondiff("len", len, "x", "len", scalar=True)
# adcompiler.stop_gradient: the value passes, its derivative does not
# (it returns x itself: a write into it is a write into x)
defnondiff(
    "stop_gradient",
    runtime.stop_gradient,
    "x",
    "stop_gradient",
    same_shape=True,
    view=View(identity=True, whole=True),
)

# ---------------------------------------------------------------------------
# Rules of the helpers that adjoint rules emit (second derivatives)
# ---------------------------------------------------------------------------
# Closure: grad of grad and forward-over-reverse differentiate these too. Most
# are linear in the adjoint `g` and in some operands, and read other operands
# only for a shape or a mask; their tangent is the helper applied to each
# varied linear operand's tangent in turn. The adjoint of a helper that is
# itself the adjoint of a linear map x ↦ L(x) at g is L applied to G.


def _multilinear_tangent(fn, linear):
    """The tangent of `fn`, linear in each input whose position `linear(n)` lists (n: the
    number of inputs) and locally constant in the others: the sum over the varied linear
    inputs of `fn` with that input replaced by its tangent."""

    def rule(ts, ans, *args, **attrs):
        parts = [
            _call(fn, *args[:i], ts[i], *args[i + 1 :], **attrs)
            for i in linear(len(args))
            if ts[i] is not None
        ]
        return _sum_parts(parts) if parts else None

    return rule


def _first(n):
    return [0]


for _fn, _linear in [
    (runtime.matmul_lhs_adjoint, lambda n: [0, 2]),
    (runtime.matmul_rhs_adjoint, lambda n: [0, 1]),
    (runtime.dot_lhs_adjoint, lambda n: [0, 2]),
    (runtime.dot_rhs_adjoint, lambda n: [0, 1]),
    (runtime.max_adjoint, _first),
    (runtime.cumsum_adjoint, _first),
    (runtime.trace_adjoint, _first),
    (runtime.untile, _first),
    (runtime.unrepeat, _first),
    (runtime.unjoin, _first),
    (runtime.solve_lhs_adjoint, lambda n: [0, 1]),
]:
    tangent(_fn)(_multilinear_tangent(_fn, _linear))

# <G, lhs(g, a, b)> = <G @ b, g>  and  <G, rhs(g, a, b)> = <a @ G, g>
adjoint(runtime.matmul_lhs_adjoint)(
    lambda G, ans, g, a, b: (G @ b, None, _call(runtime.matmul_rhs_adjoint, g, G, b))
)
adjoint(runtime.matmul_rhs_adjoint)(
    lambda G, ans, g, a, b: (a @ G, _call(runtime.matmul_lhs_adjoint, g, a, G), None)
)
adjoint(runtime.dot_lhs_adjoint)(
    lambda G, ans, g, a, b: (_call(np.dot, G, b), None, _call(runtime.dot_rhs_adjoint, g, G, b))
)
adjoint(runtime.dot_rhs_adjoint)(
    lambda G, ans, g, a, b: (_call(np.dot, a, G), _call(runtime.dot_lhs_adjoint, g, a, G), None)
)
adjoint(runtime.max_adjoint)(
    lambda G, ans, g, m, x, axis, keepdims: (
        _call(
            np.sum,
            G * _call(runtime.max_adjoint, _ones(g), m, x, axis=axis, keepdims=keepdims),
            axis=axis,
            keepdims=keepdims,
        ),
        None,
        None,
    )
)
adjoint(runtime.cumsum_adjoint)(
    lambda G, ans, g, shape, axis: (_call(np.cumsum, G, axis=axis), None)
)
adjoint(runtime.trace_adjoint)(
    lambda G, ans, g, shape, **attrs: (_call(np.trace, G, **attrs), None)
)
adjoint(runtime.untile)(lambda G, ans, g, shape, reps: (_call(np.tile, G, reps=reps), None))
adjoint(runtime.unrepeat)(
    lambda G, ans, g, shape, repeats, axis: (
        _call(np.repeat, G, repeats=repeats, axis=axis),
        None,
    )
)
_JOINS = {
    "concatenate": np.concatenate,
    "stack": np.stack,
    "hstack": np.hstack,
    "vstack": np.vstack,
    "r_": runtime.r_,
    "c_": runtime.c_,
}


@adjoint(runtime.unjoin)
def _(G, ans, g, *xs, kind, axis, i):
    parts = [G if j == i else _call(np.zeros_like, x) for j, x in enumerate(xs)]
    attrs = {"axis": axis} if kind in ("concatenate", "stack") else {}
    return (_call(_JOINS[kind], *parts, **attrs), *(None for _ in xs))


# solve_lhs_adjoint(gb, x) = -gb xᵀ
adjoint(runtime.solve_lhs_adjoint)(lambda G, ans, gb, x: (-(G @ x), -(_mT(G) @ gb)))


@tangent(runtime.einsum_adjoint)
def _(ts, ans, g, *operands, subscripts, i):
    parts = [
        _call(runtime.einsum_adjoint, *(t if k == j else a for k, a in enumerate([g, *operands])),
              subscripts=subscripts, i=i)
        for j, t in enumerate(ts)
        if t is not None and j != i + 1
    ]  # fmt: skip
    return _sum_parts(parts) if parts else None


@adjoint(runtime.einsum_adjoint)
def _(G, ans, g, *operands, subscripts, i):
    # <G, einsum_adjoint_i(g, ops)> = <g, einsum(ops with operand i replaced by G)>
    ops = [G if k == i else x for k, x in enumerate(operands)]
    g_part = _call(np.einsum, *ops, subscripts=subscripts)
    rest = [
        None if j == i else _call(runtime.einsum_adjoint, g, *ops, subscripts=subscripts, i=j)
        for j in range(len(operands))
    ]
    return (g_part, *rest)


# prod_adjoint(g, x): linear in g; the product of the other factors is a polynomial in x,
# whose Hessian is symmetric, so one helper gives both its tangent and its adjoint in x.
@tangent(runtime.prod_adjoint)
def _(ts, ans, g, x, axis, keepdims):
    parts = []
    if ts[0] is not None:
        parts.append(_call(runtime.prod_adjoint, ts[0], x, axis=axis, keepdims=keepdims))
    if ts[1] is not None:
        parts.append(_call(runtime.prod_adjoint_tangent, g, x, ts[1], axis=axis, keepdims=keepdims))
    return _sum_parts(parts)


adjoint(runtime.prod_adjoint)(
    lambda G, ans, g, x, axis, keepdims: (
        _call(
            np.sum,
            G * _call(runtime.prod_adjoint, _ones(g), x, axis=axis, keepdims=keepdims),
            axis=axis,
            keepdims=keepdims,
        ),
        _call(runtime.prod_adjoint_tangent, g, x, G, axis=axis, keepdims=keepdims),
    )
)
defop(
    "prod_adjoint_tangent",
    runtime.prod_adjoint_tangent,
    "g, x, x_dot, axis=None, keepdims=False",
    "prod_adjoint_tangent",
)


@tangent(runtime.prod_adjoint_tangent)
def _(ts, ans, g, x, x_dot, axis, keepdims):
    if ts[1] is not None:
        raise NotImplementedError("third derivatives of np.prod are not implemented")
    return _multilinear_tangent(runtime.prod_adjoint_tangent, lambda n: [0, 2])(
        ts, ans, g, x, x_dot, axis=axis, keepdims=keepdims
    )


@adjoint(runtime.prod_adjoint_tangent)
def _(G, ans, g, x, x_dot, axis, keepdims):
    # symmetric in x_dot and G; sum(G * g-part) for g
    attrs = {"axis": axis, "keepdims": keepdims}
    g_part = _call(
        np.sum, G * _call(runtime.prod_adjoint_tangent, _ones(g), x, x_dot, **attrs), **attrs
    )
    return g_part, None, _call(runtime.prod_adjoint_tangent, g, x, G, **attrs)


# norm_adjoint(g, ans, x) = x g / ans for the 2-norm and Frobenius norm; the other norms it
# handles to second order (1, inf, -inf, 0) are piecewise linear, so it is constant in x, ans.
_SMOOTH_NORMS = (None, "fro")
_PIECEWISE_LINEAR_NORMS = (1, np.inf, -np.inf, 0)


def _norm_order(ord, axis):
    if ord in _SMOOTH_NORMS or (ord == 2 and isinstance(axis, int)):
        return "smooth"
    if ord in _PIECEWISE_LINEAR_NORMS:
        return "piecewise"
    raise NotImplementedError(
        f"second derivatives of np.linalg.norm with ord={ord!r} are not implemented"
    )


@tangent(runtime.norm_adjoint)
def _(ts, ans, g, m, x, ord, axis, keepdims):
    attrs = {"ord": ord, "axis": axis, "keepdims": keepdims}
    smooth = _norm_order(ord, axis) == "smooth"
    parts = [] if ts[0] is None else [_call(runtime.norm_adjoint, ts[0], m, x, **attrs)]
    if smooth and ts[2] is not None:
        parts.append(_call(runtime.norm_adjoint, g, m, ts[2], **attrs))
    if smooth and ts[1] is not None:  # at m = 0 (x = 0), 0 as norm_adjoint picks there
        per_m = g * ts[1] / _nonzero(m)
        parts.append(-_call(runtime.norm_adjoint, per_m, m, x, **attrs))
    return _sum_parts(parts) if parts else None


def _nonzero(m):
    """`m` with its zeros replaced by 1 (as norm_adjoint divides by a norm): a division
    by a norm that is 0, where x and so the quotient's factor are 0, gives 0, not nan."""
    return _call(np.where, m == 0, 1.0, m)


@adjoint(runtime.norm_adjoint)
def _(G, ans, g, m, x, ord, axis, keepdims):
    attrs = {"ord": ord, "axis": axis, "keepdims": keepdims}
    reduce = {"axis": axis, "keepdims": keepdims}
    g_part = _call(np.sum, G * _call(runtime.norm_adjoint, _ones(g), m, x, **attrs), **reduce)
    if _norm_order(ord, axis) != "smooth":
        return g_part, None, None
    m_part = -(_call(np.sum, G * ans, **reduce) / _nonzero(m))
    return g_part, m_part, _call(runtime.norm_adjoint, g, m, G, **attrs)


# det_adjoint(g, d, a) = g d inv(a)ᵀ: linear in g and d; d(inv(a)ᵀ) = -inv(a)ᵀ ȧᵀ inv(a)ᵀ
@tangent(runtime.det_adjoint)
def _(ts, ans, g, d, a):
    parts = _multilinear_tangent(runtime.det_adjoint, lambda n: [0, 1])(ts, ans, g, d, a)
    parts = [] if parts is None else [parts]
    if ts[2] is not None:
        parts.append(-(ans @ _mT(ts[2]) @ _mT(_call(np.linalg.inv, a))))
    return _sum_parts(parts) if parts else None


@adjoint(runtime.det_adjoint)
def _(G, ans, g, d, a):
    def over_matrix(x):
        return _call(np.sum, x, axis=(-2, -1))

    return (
        over_matrix(G * _call(runtime.det_adjoint, _ones(g), d, a)),
        over_matrix(G * _call(runtime.det_adjoint, g, _ones(d), a)),
        -(ans @ _mT(G) @ _mT(_call(np.linalg.inv, a))),
    )


_EINSUM = None


def _late_bind():
    global _EINSUM
    from adcompiler.ops.core import op_for

    _EINSUM = op_for(np.einsum)


_late_bind()


# Handles on the operators that passes and rewrites look for by identity (`node.op is
# MULTIPLY`): a pass compares operator objects, never names.
ADD, SUBTRACT, MULTIPLY, DIVIDE, NEGATIVE, EXP, LOG = map(
    op_for, (np.add, np.subtract, np.multiply, np.true_divide, np.negative, np.exp, np.log)
)
SUM, MAX, VDOT, EINSUM, MATMUL, CONCATENATE = map(
    op_for, (np.sum, np.max, np.vdot, np.einsum, np.matmul, np.concatenate)
)
LEN = op_for(len)
TRANSPOSE, BROADCAST_TO, UNBROADCAST, COPY = map(
    op_for, (np.transpose, np.broadcast_to, runtime.unbroadcast, np.copy)
)
MATMUL_LHS_ADJOINT, MATMUL_RHS_ADJOINT = map(
    op_for, (runtime.matmul_lhs_adjoint, runtime.matmul_rhs_adjoint)
)
