"""Structural operators: constants, indexing, shapes, attribute reads, tuples.

These are what the frontend lowers Python syntax (``x[1:, None]``,
``x.shape``, ``n, d = x.shape``, ``np.array([a, b])``) into. Indexing keeps
the index as a static template in which `Dyn(k)` marks the k-th dynamic
component, so that codegen writes back exactly what the user wrote.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np

from adcompiler import runtime
from adcompiler.ops import core
from adcompiler.ops.core import Op, Param, View, adjoint, register, tangent


@dataclass(frozen=True)
class Dyn:
    """The k-th dynamic component of an index template (node.inputs[1 + k])."""

    k: int


def _const_spelling(node, args):
    from adcompiler.codegen.to_source import constant_ast

    if "name" in node.attrs:  # a global the user's code read: referred to by its name
        return ast.Name(node.attrs["name"], ast.Load())
    return constant_ast(node.attrs["value"])


CONST = register(
    Op("const", None, (Param("value", "attr"),), _const_spelling, nondiff=True, inline=True)
)


def shape_of(x):
    return np.shape(x)


SHAPE = register(
    Op("shape", shape_of, (Param("x"),), "np.shape", nondiff=True, inline=True), np.shape
)
core.CONST = CONST
core.SHAPE = SHAPE


def ndim_of(x):
    return np.ndim(x)


def size_of(x):
    return np.size(x)


def dtype_of(x):
    return np.result_type(x)


NDIM = register(
    Op("ndim", ndim_of, (Param("x"),), "np.ndim", nondiff=True, inline=True, scalar=True), np.ndim
)
SIZE = register(
    Op("size", size_of, (Param("x"),), "np.size", nondiff=True, inline=True, scalar=True), np.size
)
DTYPE = register(Op("dtype", dtype_of, (Param("x"),), "np.result_type", nondiff=True, inline=True))
ATTRIBUTES = {"shape": SHAPE, "ndim": NDIM, "size": SIZE, "dtype": DTYPE}


# ---------------------------------------------------------------------------
# Indexing
# ---------------------------------------------------------------------------


def index_ast(template, dyn_args):
    """Rebuild the AST of an index from its template and the dynamic parts."""

    def part(p):
        if isinstance(p, Dyn):
            return dyn_args[p.k]
        if isinstance(p, slice):
            return ast.Slice(*(None if e is None else part(e) for e in (p.start, p.stop, p.step)))
        if p is Ellipsis:
            return ast.Constant(Ellipsis)
        return ast.Constant(p)

    items, single = template
    if single:
        return part(items[0])
    return ast.Tuple([part(p) for p in items], ast.Load())


def _getitem_spelling(node, args):
    return ast.Subscript(args[0], index_ast(node.attrs["index"], args[1:]), ast.Load())


def getitem(x, *dyn, index):
    return x[build_index(index, dyn)]


def build_index(template, dyn):
    def part(p):
        if isinstance(p, Dyn):
            return dyn[p.k]
        if isinstance(p, slice):
            return slice(*(None if e is None else part(e) for e in (p.start, p.stop, p.step)))
        return p

    items, single = template
    return part(items[0]) if single else tuple(part(p) for p in items)


def _index_view_kind(attrs) -> str | None:
    """Whether `x[index]` is a view of x (NumPy's basic indexing): "always" with a slice,
    `None` or `...` among integers; "scalar" with integers only (a view, or one element
    as a new scalar when they index every axis); "maybe" with a part known only at run
    time (an integer, or an index array that makes a copy); None for a constant index
    array (a copy)."""
    items, _ = attrs["index"]
    kinds = set()
    for p in items:
        if p is None or p is Ellipsis or isinstance(p, slice):
            kinds.add("always")
        elif isinstance(p, str):  # an entry of a dict: the object itself
            kinds.add("always")
        elif isinstance(p, int) and not isinstance(p, bool):
            kinds.add("scalar")
        elif isinstance(p, Dyn):
            kinds.add("maybe")
        else:
            return None
    for kind in ("maybe", "always", "scalar"):
        if kind in kinds:
            return kind
    return "scalar"  # x[()]: a number for a 0-d x


GETITEM = register(
    Op(
        "getitem",
        getitem,
        (Param("x"), Param("dyn", "varargs"), Param("index", "attr")),
        _getitem_spelling,
        inline=True,
        view=View(kind=_index_view_kind),  # write_back: set in ops/mutation.py, with setitem
    )
)


class SlicesAsCalls(ast.NodeTransformer):
    """``x[1:, ::2]`` indexes with slice syntax; as a call argument it is ``slice(1, None)``."""

    def visit_Slice(self, node):  # noqa: N802
        parts = [
            p if p is not None else ast.Constant(None) for p in (node.lower, node.upper, node.step)
        ]
        return ast.Call(ast.Name("slice", ast.Load()), [self.visit(p) for p in parts], [])


def _unindex_spelling(node, args):
    index = SlicesAsCalls().visit(index_ast(node.attrs["index"], args[2:]))
    return ast.Call(ast.Name("unindex", ast.Load()), [args[0], args[1], index], [])


UNINDEX = register(
    Op(
        "unindex",
        runtime.unindex,
        (Param("g"), Param("shape"), Param("dyn", "varargs"), Param("index", "attr")),
        _unindex_spelling,
        fresh=True,
    )
)


@adjoint(getitem)
def _(g, ans, x, *dyn, index):
    return (g.builder.emit_sym(UNINDEX, [g, x.shape, *dyn], {"index": index}),)


@tangent(getitem)
def _(ts, ans, x, *dyn, index):
    return ts[0].builder.emit_sym(GETITEM, [ts[0], *dyn], {"index": index})


@adjoint(runtime.unindex)
def _(g, ans, gx, shape, *dyn, index):
    return (g.builder.emit_sym(GETITEM, [g, *dyn], {"index": index}),)


@tangent(runtime.unindex)
def _(ts, ans, gx, shape, *dyn, index):
    return ts[0].builder.emit_sym(UNINDEX, [ts[0], shape, *dyn], {"index": index})


# ---------------------------------------------------------------------------
# Tuples that exist at run time (shapes), and arrays built from scalars
# ---------------------------------------------------------------------------


def tuple_get(t, *, i):
    return t[i]


def _tuple_get_spelling(node, args):
    return ast.Subscript(args[0], ast.Constant(node.attrs["i"]), ast.Load())


TUPLE_GET = register(
    Op(
        "tuple_get",
        tuple_get,
        (Param("t"), Param("i", "attr")),
        _tuple_get_spelling,
        nondiff=True,
        inline=True,
    )
)


def make_tuple(*items):
    return tuple(items)


def _tuple_spelling(node, args):
    return ast.Tuple(list(args), ast.Load())


MAKE_TUPLE = register(
    Op(
        "tuple",
        make_tuple,
        (Param("items", "varargs"),),
        _tuple_spelling,
        inline=True,
        nondiff=True,
        carries=True,
    )
)


def pack(*items, layout):
    """``np.array(nested list)`` with the leaves given flat and the nesting in `layout`."""
    return np.array(_unflatten(list(items), layout))


def _unflatten(flat, layout):
    if layout is None:
        return flat.pop(0)
    return [_unflatten(flat, sub) for sub in layout]


def _pack_spelling(node, args):
    flat = list(args)

    def build(layout):
        if layout is None:
            return flat.pop(0)
        return ast.List([build(sub) for sub in layout], ast.Load())

    np_array = ast.Attribute(ast.Name("np", ast.Load()), "array", ast.Load())
    return ast.Call(np_array, [build(node.attrs["layout"])], [])


PACK = register(
    Op("array", pack, (Param("items", "varargs"), Param("layout", "attr")), _pack_spelling)
)


def leaf_positions(layout, prefix=()):
    """The index tuple of every leaf of a nested-list layout, in order."""
    if layout is None:
        return [prefix]
    out = []
    for i, sub in enumerate(layout):
        out.extend(leaf_positions(sub, prefix + (i,)))
    return out


@adjoint(pack)
def _(g, ans, *items, layout):
    b = g.builder
    return tuple(
        b.emit_sym(GETITEM, [g], {"index": (pos, len(pos) == 1)}) for pos in leaf_positions(layout)
    )


@tangent(pack)
def _(ts, ans, *items, layout):
    b = next(t for t in ts if t is not None).builder
    filled = [t if t is not None else b.const(0.0) for t in ts]
    return b.emit_sym(PACK, filled, {"layout": layout})


def _check_float_spelling(node, args):
    keywords = [ast.keyword(arg=_checked_name(a, i), value=a) for i, a in enumerate(args)]
    return ast.Call(ast.Name(node.op.name, ast.Load()), [], keywords)


def _checked_name(arg: ast.expr, i: int) -> str:
    """The name an error message gives a checked value: its variable, or the key it is
    read at (``params['W']`` written in place, when nothing else reads it)."""
    if isinstance(arg, ast.Name):
        return arg.id
    key = getattr(getattr(arg, "slice", None), "value", None)
    return key if isinstance(key, str) and key.isidentifier() else f"arg{i}"


CHECK_FLOAT, CHECK_REAL = (
    register(
        Op(
            fn.__name__,
            fn,
            (Param("args", "varargs"),),
            _check_float_spelling,
            nondiff=True,
            unique=True,
        )
    )
    for fn in (runtime.check_float, runtime.check_real)
)
