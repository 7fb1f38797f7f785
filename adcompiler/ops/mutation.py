"""Writing into arrays: ``x[index] = v`` as an operator that makes a new value.

In the IR a write defines a new value from the old one, so every value keeps
one meaning and the reverse sweep can read what a write destroyed. Codegen
writes in place when the old value is dead, owned by the generated code, and
not seen through a live view; otherwise it copies first.

    x[1:3] = v    ──▶    %x_1 = setitem(%x, %v) {index=((slice(1, 3),), True)}

Adjoint: the write hides the old entries, so ``x̄ = setitem(ḡ, 0)`` and
``v̄ = unbroadcast(ḡ[index], shape v)``.
"""

from __future__ import annotations

import ast
import dataclasses

import numpy as np

from adcompiler import runtime
from adcompiler.ops.core import Op, Param, adjoint, register, tangent
from adcompiler.ops.structure import GETITEM, build_index


def setitem(x, v, *dyn, index):
    out = np.array(x, dtype=np.result_type(x, v), copy=True)
    out[build_index(index, dyn)] = v
    return out


SETITEM = register(
    Op(
        "setitem",
        setitem,
        (Param("x"), Param("v"), Param("dyn", "varargs"), Param("index", "attr")),
        "setitem",  # written by codegen as an assignment statement
        unique=True,
    )
)


def _setitem_back(emit, node, new):
    """The array after a write into its view `node` (``x[index]``) made it `new`."""
    return emit(SETITEM, [node.inputs[0], new, *node.inputs[1:]], node.attrs)


# A write through `x[index]` is a write into x. GETITEM's view trait learns that here,
# where setitem is defined (ops/structure.py comes first: it cannot import this module).
GETITEM.view = dataclasses.replace(GETITEM.view, write_back=_setitem_back)


@adjoint(setitem)
def _(g, ans, x, v, *dyn, index):
    b = g.builder
    hidden = b.emit_sym(SETITEM, [g, b.const(0.0), *dyn], {"index": index})
    written = b.emit_sym(GETITEM, [g, *dyn], {"index": index})
    return (hidden, b.call(runtime.unbroadcast, written, v.shape)) + (None,) * len(dyn)


@tangent(setitem)
def _(ts, ans, x, v, *dyn, index):
    b = ans.builder
    tx = ts[0] if ts[0] is not None else b.call(np.zeros_like, ans)
    tv = ts[1] if ts[1] is not None else b.const(0.0)
    return b.emit_sym(SETITEM, [tx, tv, *dyn], {"index": index})


# ---------------------------------------------------------------------------
# x̄ + unindex(ḡ, index): adding into the entries that were read
# ---------------------------------------------------------------------------


def add_at(x, index, g):
    """``x[index] += g`` in place, summing repeated integer indices like np.add.at."""
    if type(index) is int or type(index) is slice:  # a row or a range: no repeats
        x[index] += g
        return
    parts = index if isinstance(index, tuple) else (index,)
    if any(isinstance(p, (list, np.ndarray)) and np.asarray(p).dtype != bool for p in parts):
        np.add.at(x, index, g)
    else:
        x[index] += g


def index_add(x, g, *dyn, index):
    out = np.array(x, dtype=np.result_type(x, g), copy=True)
    add_at(out, build_index(index, dyn), g)
    return out


runtime.HELPERS["add_at"] = add_at
INDEX_ADD = register(
    Op(
        "index_add",
        index_add,
        (Param("x"), Param("g"), Param("dyn", "varargs"), Param("index", "attr")),
        "add_at",  # written by codegen as a call that adds in place
        unique=True,
    )
)


@adjoint(index_add)
def _(g, ans, x, v, *dyn, index):
    b = g.builder
    picked = b.emit_sym(GETITEM, [g, *dyn], {"index": index})
    return (g, b.call(runtime.unbroadcast, picked, v.shape)) + (None,) * len(dyn)


@tangent(index_add)
def _(ts, ans, x, v, *dyn, index):
    b = ans.builder
    tx = ts[0] if ts[0] is not None else b.call(np.zeros_like, ans)
    if ts[1] is None:
        return tx
    return b.emit_sym(INDEX_ADD, [tx, ts[1], *dyn], {"index": index})


# ---------------------------------------------------------------------------
# Lists built at run time (appended to in a loop)
# ---------------------------------------------------------------------------
# The adjoint of a list of equally shaped arrays is one stacked array: slicing it
# gives the adjoints of the elements, and two of them add elementwise.


def make_list(*items):
    return list(items)


def _make_list_spelling(node, args):
    import ast

    return ast.List(list(args), ast.Load())


def list_append(lst, v):
    return [*lst, v]


def unstack(g, axis=0):
    """The adjoint of ``np.stack(list, axis)``: the stacked adjoint, list axis first."""
    return np.moveaxis(g, axis, 0) if axis else g


def spread(g, lst):
    """The adjoint of ``sum(list)``: every element gets `g`."""
    return np.broadcast_to(g, (len(lst), *np.shape(g)))


def stack_list(lst, axis=0):
    return np.stack(lst, axis)


def array_list(lst):
    return np.array(lst)


def sum_list(lst):
    return sum(lst)


def copy_array(x):
    """A copy the generated code may write into (numbers and lists need none)."""
    return x.copy() if isinstance(x, np.ndarray) else x


runtime.HELPERS["copy_array"] = copy_array
runtime.HELPERS["unstack"] = unstack
runtime.HELPERS["spread"] = spread
MAKE_LIST = register(
    Op(
        "list",
        make_list,
        (Param("items", "varargs"),),
        _make_list_spelling,
        nondiff=False,
        holds=0,
        unique=True,
    )
)
LIST_APPEND = register(
    Op("list_append", list_append, (Param("lst"), Param("v")), "append", holds=1, unique=True)
)
STACK_LIST = register(
    Op("stack_list", stack_list, (Param("lst"), Param("axis", "attr", 0)), "np.stack")
)
ARRAY_LIST = register(Op("array_list", array_list, (Param("lst"),), "np.array"))
SUM_LIST = register(Op("sum_list", sum_list, (Param("lst"),), "sum"))
UNSTACK = register(Op("unstack", unstack, (Param("g"), Param("axis", "attr", 0)), "unstack"))
SPREAD = register(Op("spread", spread, (Param("g"), Param("lst")), "spread"))


@adjoint(make_list)
def _(g, ans, *items):
    return tuple(
        g.builder.emit_sym(GETITEM, [g], {"index": ((i,), True)}) for i in range(len(items))
    )


@adjoint(list_append)
def _(g, ans, lst, v):
    b = g.builder
    head = b.emit_sym(GETITEM, [g], {"index": ((slice(None, -1),), True)})
    last = b.emit_sym(GETITEM, [g], {"index": ((-1,), True)})
    return head, last


@adjoint(stack_list)
def _(g, ans, lst, axis):
    return (g.builder.emit_sym(UNSTACK, [g], {"axis": axis}),)


@adjoint(array_list)
def _(g, ans, lst):
    return (g,)


@adjoint(sum_list)
def _(g, ans, lst):
    return (g.builder.emit_sym(SPREAD, [g, lst], {}),)


@adjoint(unstack)
def _(g, ans, gx, axis):
    return (g.builder.emit_sym(STACK_LIST, [g], {"axis": axis}),)


def _zeros_for(b, t, x):
    return t if t is not None else b.call(np.zeros_like, x)


@tangent(make_list)
def _(ts, ans, *items):
    b = ans.builder
    return b.emit_sym(MAKE_LIST, [_zeros_for(b, t, x) for t, x in zip(ts, items)])


@tangent(list_append)
def _(ts, ans, lst, v):
    b = ans.builder
    return b.emit_sym(LIST_APPEND, [_zeros_for(b, ts[0], lst), _zeros_for(b, ts[1], v)])


@tangent(stack_list)
def _(ts, ans, lst, axis):
    return ans.builder.emit_sym(STACK_LIST, [ts[0]], {"axis": axis})


@tangent(array_list)
def _(ts, ans, lst):
    return ans.builder.emit_sym(ARRAY_LIST, [ts[0]])


@tangent(sum_list)
def _(ts, ans, lst):
    return ans.builder.emit_sym(SUM_LIST, [ts[0]])


@tangent(unstack)
def _(ts, ans, g, axis):
    return ans.builder.emit_sym(UNSTACK, [ts[0]], {"axis": axis})


@adjoint(spread)
def _(g, ans, gs, lst):
    return g.builder.call(np.sum, g, axis=0), None


@tangent(spread)
def _(ts, ans, g, lst):
    if ts[0] is None:  # only the list's values vary: spread reads only its length
        return ans.builder.call(np.zeros_like, ans)
    return ans.builder.emit_sym(SPREAD, [ts[0], lst])


ZERO_LIKE = register(
    Op("zero_like", runtime.zero_like, (Param("x"),), "zero_like", nondiff=True, unique=True,
       fresh=True)
)


def _one_like_spelling(node, args):
    return ast.Call(
        ast.Name("one_like", ast.Load()), [args[0], ast.Constant(node.attrs["name"])], []
    )


# The seed of a gradient: 1 in the output's dtype, checked to be a scalar (adcompiler.reverse)
ONE_LIKE = register(
    Op(
        "one_like",
        runtime.one_like,
        (Param("x"), Param("name", "attr")),
        _one_like_spelling,
        nondiff=True,
        unique=True,
    )
)
