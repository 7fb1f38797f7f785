"""Sums moved ahead of linear steps.

The adjoint of a broadcast is a sum, and it often sums a linear function of a big
array: `np.sum(g @ B.T + g * c, axis=1, keepdims=True)` where `c` is constant along
axis 1. Summing first is cheaper and makes no big temporary:
`np.sum(g, axis=1, keepdims=True) @ B.T + np.sum(g, axis=1, keepdims=True) * c`
(the two sums are one after CSE). A sum of a product of two arrays of one shape is
an `np.einsum` (over all elements, `np.vdot`), which makes no temporary for the
product.
"""

from __future__ import annotations

import numpy as np

from adcompiler import passes
from adcompiler.ops.core import lookup
from adcompiler.ops.numpy_ops import (
    ADD,
    EINSUM,
    MATMUL,
    MATMUL_LHS_ADJOINT,
    MULTIPLY,
    NEGATIVE,
    SUBTRACT,
    SUM,
    VDOT,
)
from adcompiler.specialize.facts import float_array
from adcompiler.ssa import Function, Node, Value, walk


def push_sums(fn: Function, known: dict) -> None:
    uses = passes.uses(fn)
    defs = {v.id: n for n in walk(fn.body) for v in n.outputs}
    for block in passes.blocks(fn.body):
        nodes: list[Node] = []
        for node in block.nodes:
            nodes.extend(_pushed(node, known, uses, defs) or [node])
        block.nodes = nodes
    passes.cse(fn)


def _pushed(node: Node, known: dict, uses: dict, defs: dict) -> list[Node] | None:
    """Nodes computing `node` (a sum) with the sum moved inwards, or None."""
    if node.op is not SUM or len(node.inputs) != 1:
        return None
    x = node.inputs[0]
    fact, result = known.get(x.id), known.get(node.output.id)
    if not float_array(fact) or result is None or uses.get(x.id) != 1:
        return None
    ndim = len(fact[1])
    axis = node.attrs.get("axis")
    axes = tuple(range(ndim)) if axis is None else (axis,) if isinstance(axis, int) else axis
    axes = tuple(sorted(a % ndim for a in axes))
    keepdims = bool(node.attrs.get("keepdims"))
    built: list[Node] = []
    v = _sum_of(x, axes, keepdims, built, known, uses, defs, node, top=True)
    if v is None or not any(n.op in (EINSUM, VDOT, MATMUL, MULTIPLY)
                            for n in built):  # fmt: skip
        return None  # only sums split over a sum: no gain
    built[-1].outputs = [node.output]  # the last node makes the sum's value (and name)
    return built


def _sum_of(x, axes, keepdims, built, known, uses, defs, at, top=False):
    """A value equal to `np.sum(x, axis=axes, keepdims=keepdims)`, made by nodes appended
    to `built`; None (at the top) if nothing is gained."""
    fact = known.get(x.id)
    p = defs.get(x.id)
    single = top or uses.get(x.id) == 1
    op = p.op if p is not None and single and float_array(fact) else None
    shape = fact[1] if fact else None

    def full(v):
        return float_array(known.get(v.id)) and known[v.id][1] == shape

    def emit(op_fn, inputs, attrs=None):
        n = Node(lookup(op_fn), inputs, {**lookup(op_fn).attr_defaults(), **(attrs or {})},
                 loc=at.loc)  # fmt: skip
        role = at.output.role  # intermediate values are temporaries of that role
        n.outputs[0].hint = f"{n.op.name}_{inputs[0].hint}" if inputs[0].hint else n.op.name
        n.outputs[0].role = role if role.endswith("temp") else (
            "temp" if role == "primal" else f"{role}_temp")  # fmt: skip
        built.append(n)
        return n.output

    if op in (ADD, SUBTRACT) and all(full(v) for v in p.inputs):
        a = _sum_of(p.inputs[0], axes, keepdims, built, known, uses, defs, at)
        b = _sum_of(p.inputs[1], axes, keepdims, built, known, uses, defs, at)
        return emit(np.add if op is ADD else np.subtract, [a, b])
    if op is NEGATIVE and full(p.inputs[0]):
        return emit(np.negative, [_sum_of(p.inputs[0], axes, keepdims, built, known, uses,
                                          defs, at)])  # fmt: skip
    if op is MULTIPLY and keepdims:
        for i in (0, 1):
            a, c = p.inputs[i], p.inputs[1 - i]
            if full(a) and _constant_along(known.get(c.id), axes, len(shape)):
                s = _sum_of(a, axes, keepdims, built, known, uses, defs, at)
                return emit(np.multiply, [s, c] if i == 0 else [c, s])
    if op is MULTIPLY and all(full(v) for v in p.inputs) and len(axes) == len(shape):
        v = emit(np.vdot, list(p.inputs))  # a dot product of the flattened arrays (BLAS)
        if keepdims:
            v = emit(np.reshape, [v, _const((1,) * len(shape), built, at)])
        return v
    if op is MULTIPLY and all(full(v) for v in p.inputs):
        letters = "abcdefghij"[: len(shape)]
        kept = "".join(ch for k, ch in enumerate(letters) if k not in axes)
        v = emit(np.einsum, list(p.inputs), {"subscripts": f"{letters},{letters}->{kept}"})
        if keepdims:
            target = tuple(1 if k in axes else n for k, n in enumerate(shape))
            v = emit(np.reshape, [v, _const(target, built, at)])
        return v
    if op is MATMUL_LHS_ADJOINT and keepdims and axes == (len(shape) - 2,):
        g, a, b = p.inputs
        fb = known.get(b.id)
        if full(g) and full(a) and float_array(fb) and len(fb[1]) == len(shape) >= 3:
            s = _sum_of(g, axes, keepdims, built, known, uses, defs, at)
            bt = emit(np.swapaxes, [b], {"axis1": -1, "axis2": -2})
            return emit(np.matmul, [s, bt])
    if top:
        return None
    return emit(np.sum, [x], {"axis": axes[0] if len(axes) == 1 else axes,
                              "keepdims": keepdims})  # fmt: skip


def _constant_along(fact, axes: tuple, ndim: int) -> bool:
    """True for a scalar, or an array of `ndim` dimensions of size 1 along `axes`."""
    if fact is None or fact[0] in ("object", "tuple"):
        return False
    if fact[0] != "array" or fact[1] == ():
        return True
    return len(fact[1]) == ndim and all(fact[1][k] == 1 for k in axes)


def _const(value, built: list, at: Node) -> Value:
    built.append(passes.constant(value, at.loc, role="primal"))
    return built[-1].output
