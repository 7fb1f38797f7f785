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
    )
)


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
