"""NumPy's view operators: axes moved, flipped, rotated, diagonals, windows, splits.

Each returns a view of its input in NumPy's sense (it shares the input's memory), and
carries a `View` trait saying so exactly as NumPy behaves (adcompiler/ops/core.py):

- a permutation of the input's entries (``np.moveaxis``, ``np.flip``, ``np.rot90``,
  ``x.mT``, ``np.atleast_2d``, ...) is a writable view that shows every entry: a write
  through it is followed by applying the inverse permutation to the new view
  (`write_back`);
- ``np.diagonal`` and ``sliding_window_view`` are read-only views: NumPy raises on a
  write through them, so the compiler refuses it;
- ``np.diag`` is a read-only view for a 2-D input and a new matrix for a 1-D one: which
  is known only at run time, so a write through its result is refused, and a name
  holding it is stale after a write into its input;
- ``np.split`` and its kin return a tuple of writable views, one operator per part
  (`split_part`), each with a `write_back` that puts the part back (`split_put`).

Every operator is linear; its adjoint is the transposed map (for a permutation, the
inverse permutation; for a diagonal, the diagonal embedded in zeros; for overlapping
windows, the windows summed back), and every helper a rule emits has rules itself.
"""

from __future__ import annotations

import ast

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from adcompiler import runtime
from adcompiler.ops.core import Param, View, adjoint, register_parts, tangent
from adcompiler.ops.numpy_math import helper, required_attr
from adcompiler.ops.numpy_ops import (
    _call,
    _multilinear_tangent,
    _reshaped_back_checked,
    deflinear,
    defnondiff,
    defop,
)


def _permutation(name, fn, sig, inverse, spelling=None, keys=()):
    """A view that shows every entry of its input, moved: `inverse(g, **attrs)` moves them
    back. The adjoint and the write-back are the inverse; the tangent is the map itself."""
    return deflinear(
        name,
        fn,
        sig,
        lambda g, ans, x, **attrs: inverse(g, **attrs),
        spelling,
        keys=keys,
        view=View(write_back=lambda emit, node, new: inverse.emit(emit, new, node.attrs)),
    )


class _Inverse:
    """The inverse of a permutation view: `fn` with attributes derived from the view's."""

    def __init__(self, fn, attrs):
        self.fn, self.attrs = fn, attrs

    def __call__(self, g, **attrs):
        return _call(self.fn, g, **self.attrs(attrs))

    def emit(self, emit, new, attrs):
        return emit(self.fn, [new], self.attrs(attrs))


# ---------------------------------------------------------------------------
# Axes moved: moveaxis, rollaxis, matrix_transpose
# ---------------------------------------------------------------------------

_MOVEAXIS = _permutation(
    "moveaxis",
    np.moveaxis,
    "x, source=0, destination=0",
    _Inverse(np.moveaxis, lambda a: {"source": a["destination"], "destination": a["source"]}),
)
required_attr(required_attr(_MOVEAXIS, "source"), "destination")


def rollaxis_inverse(g, axis=0, start=0):
    """The inverse of ``np.rollaxis(x, axis, start)`` applied to `g` (a view of `g`)."""
    n = g.ndim
    axis = axis % n if n else 0
    start = start + n if start < 0 else start
    if axis < start:
        start -= 1
    order = [i for i in range(n) if i != axis]
    order.insert(start, axis)
    return np.transpose(g, np.argsort(order))


_permutation(
    "rollaxis",
    np.rollaxis,
    "x, axis=0, start=0",
    _Inverse(rollaxis_inverse, lambda a: dict(a)),
)
helper(rollaxis_inverse, "g, axis=0, start=0", view=View(write_back=None))
adjoint(rollaxis_inverse)(lambda G, ans, g, **attrs: (_call(np.rollaxis, G, **attrs),))
tangent(rollaxis_inverse)(lambda ts, ans, g, **attrs: _call(rollaxis_inverse, ts[0], **attrs))

_permutation(
    "matrix_transpose",
    np.matrix_transpose,
    "x",
    _Inverse(np.matrix_transpose, lambda a: {}),
    "_0.mT",
    keys=[np.linalg.matrix_transpose],
)

# ---------------------------------------------------------------------------
# Entries reversed or rotated: flip, flipud, fliplr, rot90 (each its own inverse, or
# rot90 by -k)
# ---------------------------------------------------------------------------

_permutation("flip", np.flip, "x, axis=None", _Inverse(np.flip, dict))
_permutation("flipud", np.flipud, "x", _Inverse(np.flipud, dict))
_permutation("fliplr", np.fliplr, "x", _Inverse(np.fliplr, dict))
_ROT90 = _permutation(
    "rot90",
    np.rot90,
    "x, k=1, axes=None",
    _Inverse(np.rot90, lambda a: {"k": -a["k"], "axes": a["axes"]}),
)
_ROT90.params = tuple(  # NumPy's default axes=(0, 1) (the signature parser splits at commas)
    Param(p.name, "attr", (0, 1)) if p.name == "axes" else p for p in _ROT90.params
)

# ---------------------------------------------------------------------------
# Dimensions added: atleast_1d/2d/3d (the input itself, or a reshaped view of it)
# ---------------------------------------------------------------------------


for _name, _fn in [
    ("atleast_1d", np.atleast_1d),
    ("atleast_2d", np.atleast_2d),
    ("atleast_3d", np.atleast_3d),
]:
    deflinear(
        _name,
        _fn,
        "x",
        lambda g, ans, x: _call(np.reshape, g, x.shape),
        view=View(write_back=_reshaped_back_checked),
    )

# ---------------------------------------------------------------------------
# Real and imaginary parts of a real array: the array itself, and read-only zeros
# ---------------------------------------------------------------------------

deflinear("real", np.real, "x", lambda g, ans, x: g, view=View(identity=True, whole=True))
# no derivative (zeros); NumPy's zeros are a read-only array: a write into them raises
defnondiff("imag", np.imag, "x", view=View(writable=False))


# ---------------------------------------------------------------------------
# Diagonals: read-only views
# ---------------------------------------------------------------------------


def diagonal_adjoint(g, shape, offset=0, axis1=0, axis2=1):
    """Adjoint of ``np.diagonal(x, offset, axis1, axis2)``: `g` (the diagonal on its last
    axis) put on that diagonal of zeros shaped like x."""
    n = len(shape)
    axis1, axis2 = axis1 % n, axis2 % n
    rest = [s for i, s in enumerate(shape) if i not in (axis1, axis2)]
    out = np.zeros((*rest, shape[axis1], shape[axis2]), dtype=np.result_type(g, 0.0))
    j = np.arange(np.shape(g)[-1])
    out[..., j + max(-offset, 0), j + max(offset, 0)] = g
    return np.moveaxis(out, (-2, -1), (axis1, axis2))


def _diagonal_rule(g, ans, x, **attrs):
    return _call(diagonal_adjoint, g, x.shape, **attrs)


defop(  # read-only: NumPy raises on a write through it
    "diagonal",
    np.diagonal,
    "x, offset=0, axis1=0, axis2=1",
    view=View(writable=False),
)
adjoint(np.diagonal)(lambda g, ans, x, **attrs: (_diagonal_rule(g, ans, x, **attrs),))
tangent(np.diagonal)(lambda ts, ans, x, **attrs: _call(np.diagonal, ts[0], **attrs))
helper(diagonal_adjoint, "g, (shape), offset=0, axis1=0, axis2=1")
adjoint(diagonal_adjoint)(lambda G, ans, g, shape, **attrs: (_call(np.diagonal, G, **attrs), None))
tangent(diagonal_adjoint)(_multilinear_tangent(diagonal_adjoint, lambda n: [0]))

# np.linalg.diagonal(x, offset=0): the diagonal of the last two axes
defop("linalg_diagonal", np.linalg.diagonal, "x, offset=0", "np.linalg.diagonal",
      view=View(writable=False))  # fmt: skip
adjoint(np.linalg.diagonal)(
    lambda g, ans, x, offset: (
        _call(diagonal_adjoint, g, x.shape, offset=offset, axis1=-2, axis2=-1),
    )
)
tangent(np.linalg.diagonal)(
    lambda ts, ans, x, offset: _call(np.linalg.diagonal, ts[0], offset=offset)
)


def diag_adjoint(g, shape, k=0):
    """Adjoint of ``np.diag(v, k)``: for a 1-D v (`shape` has one entry), the k-th
    diagonal of `g`; for a 2-D v, `g` put on the k-th diagonal of zeros shaped like v.
    Its own adjoint is itself, with the shape of `g`."""
    if len(shape) == 1:
        return np.diagonal(g, k).copy()
    out = np.zeros(shape, dtype=np.result_type(g, 0.0))
    j = np.arange(np.shape(g)[0])
    out[j + max(-k, 0), j + max(k, 0)] = g
    return out


# a read-only view for a 2-D input, a new matrix for a 1-D one: known only at run time
defop("diag", np.diag, "x, k=0", view=View(kind="ndim"))
adjoint(np.diag)(lambda g, ans, x, k: (_call(diag_adjoint, g, x.shape, k=k),))
tangent(np.diag)(lambda ts, ans, x, k: _call(np.diag, ts[0], k=k))
helper(diag_adjoint, "g, (shape), k=0")
adjoint(diag_adjoint)(
    lambda G, ans, g, shape, k: (_call(diag_adjoint, G, _call(np.shape, g), k=k), None)
)
tangent(diag_adjoint)(_multilinear_tangent(diag_adjoint, lambda n: [0]))


# ---------------------------------------------------------------------------
# Sliding windows: a read-only view with overlapping windows
# ---------------------------------------------------------------------------


def sliding_window_adjoint(g, shape, window_shape=1, axis=None):
    """Adjoint of ``sliding_window_view(x, window_shape, axis)``: every window of `g` added
    back where it was taken from (entries shared by overlapping windows sum)."""
    window = (window_shape,) if np.ndim(window_shape) == 0 else tuple(window_shape)
    n = len(shape)
    axes = tuple(range(n)) if axis is None else (axis,) if np.ndim(axis) == 0 else tuple(axis)
    axes = tuple(a % n for a in axes)
    out = np.zeros(shape, dtype=np.result_type(g, 0.0))
    counts = [np.shape(g)[a] for a in range(n)]  # windows along each axis
    for offsets in np.ndindex(*window):
        index = [slice(None)] * n
        shift = [0] * n
        for a, o in zip(axes, offsets):
            shift[a] += o
        for a in range(n):
            index[a] = slice(shift[a], shift[a] + counts[a])
        out[tuple(index)] += g[(Ellipsis, *offsets)]
    return out


defop(
    "sliding_window_view",
    sliding_window_view,
    "x, window_shape=1, axis=None",
    "np.lib.stride_tricks.sliding_window_view",
    view=View(writable=False),  # NumPy's default: writeable=False
)
adjoint(sliding_window_view)(
    lambda g, ans, x, **attrs: (_call(sliding_window_adjoint, g, x.shape, **attrs),)
)
tangent(sliding_window_view)(lambda ts, ans, x, **attrs: _call(sliding_window_view, ts[0], **attrs))
helper(sliding_window_adjoint, "g, (shape), window_shape=1, axis=None")
adjoint(sliding_window_adjoint)(
    lambda G, ans, g, shape, **attrs: (_call(sliding_window_view, G, **attrs), None)
)
tangent(sliding_window_adjoint)(_multilinear_tangent(sliding_window_adjoint, lambda n: [0]))


# ---------------------------------------------------------------------------
# Splits: a tuple of views, one operator per part
# ---------------------------------------------------------------------------


def split_part(x, indices_or_sections=1, axis=0, kind="split", i=0):
    """Part `i` of ``np.<kind>(x, indices_or_sections[, axis])`` (a view of x)."""
    if kind in ("split", "array_split"):
        return getattr(np, kind)(x, indices_or_sections, axis=axis)[i]
    return getattr(np, kind)(x, indices_or_sections)[i]


def split_put(x, part, indices_or_sections=1, axis=0, kind="split", i=0):
    """`x` with part `i` of its split (see `split_part`) replaced by `part` (a new array)."""
    out = np.array(x, dtype=np.result_type(x, part), copy=True)
    if kind in ("split", "array_split"):
        view = getattr(np, kind)(out, indices_or_sections, axis=axis)[i]
    else:
        view = getattr(np, kind)(out, indices_or_sections)[i]
    view[...] = part
    return out


def _split_spelling(node, args):
    """``np.split(x, 3, axis=1)[0]``: the call as the user wrote it, and the part."""
    from adcompiler.codegen.emit import constant_ast

    kind, attrs = node.attrs["kind"], node.attrs
    fn = ast.Attribute(ast.Name("np", ast.Load()), kind, ast.Load())
    keywords = []
    if kind in ("split", "array_split") and attrs["axis"] != 0:
        keywords.append(ast.keyword("axis", constant_ast(attrs["axis"])))
    call = ast.Call(fn, [args[0], constant_ast(attrs["indices_or_sections"])], keywords)
    return ast.Subscript(call, ast.Constant(attrs["i"]), ast.Load())


_SPLIT_ATTRS = "indices_or_sections=1, axis=0, kind='split', i=0"


def _split_back(emit, node, new):
    return emit(split_put, [node.inputs[0], new], node.attrs)


runtime.HELPERS["split_put"] = split_put
SPLIT_PART = defop(
    "split_part",
    split_part,
    f"x, {_SPLIT_ATTRS}",
    _split_spelling,
    view=View(write_back=_split_back),
)
adjoint(split_part)(
    lambda g, ans, x, **attrs: (_call(split_put, _call(np.zeros_like, x), g, **attrs),)
)
tangent(split_part)(lambda ts, ans, x, **attrs: _call(split_part, ts[0], **attrs))
defop("split_put", split_put, f"x, part, {_SPLIT_ATTRS}", "split_put")
adjoint(split_put)(
    lambda G, ans, x, part, **attrs: (
        _call(split_put, G, 0.0, **attrs),
        _call(split_part, G, **attrs),
    )
)


@tangent(split_put)
def _(ts, ans, x, part, **attrs):
    tx = ts[0] if ts[0] is not None else _call(np.zeros_like, x)
    tp = ts[1] if ts[1] is not None else 0.0
    return _call(split_put, tx, tp, **attrs)


def _static(given):
    """The compile-time value of a call argument (a list literal of them: a tuple)."""
    if isinstance(given, tuple):
        return tuple(_static(g) for g in given)
    return getattr(given, "obj", given) if type(given).__name__ == "Static" else _DYNAMIC


_DYNAMIC = object()


def _split_parts(kind):
    def expand(args, kwargs):
        given = args[1] if len(args) > 1 else kwargs.get("indices_or_sections")
        how = _static(given) if given is not None else _DYNAMIC
        if isinstance(how, (int, np.integer)) and not isinstance(how, bool) and how > 0:
            count = int(how)
        elif isinstance(how, tuple) and all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in how
        ):
            count = len(how) + 1
        else:
            return (
                f"`np.{kind}` returns as many arrays as its `indices_or_sections` says: "
                "adcompiler needs it (a positive integer or a list of integers) when compiling"
            )
        return [(SPLIT_PART, {"kind": kind, "i": i}) for i in range(count)]

    return expand


for _fn in (np.split, np.array_split, np.hsplit, np.vsplit, np.dsplit):
    register_parts(_fn, _split_parts(_fn.__name__))
