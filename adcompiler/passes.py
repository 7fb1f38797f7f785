"""Analyses and clean-ups over the IR: activity, shape classes, dead code.

varied(fn, wrt)   values that depend on a `wrt` parameter
useful(fn)        values that reach a result
shape_classes(fn) values known to share a shape (so no unbroadcast is needed)
dce(fn)           drop nodes whose outputs nobody reads

%a = exp(%x)          dce           %a = exp(%x)
%b = sin(%x)     ───────────▶       return %a
return %a
"""

from __future__ import annotations

from adcompiler.ssa import Block, Function, Node, Value, walk


def varied(fn: Function, wrt: list[Value]) -> set[int]:
    """Ids of values that depend on one of `wrt` through differentiable operators."""
    out = {v.id for v in wrt}
    for node in walk(fn.body):
        if not node.op.nondiff and any(v.id in out for v in node.inputs):
            out.update(v.id for v in node.outputs)
    return out


def useful(fn: Function, roots: list[Value]) -> set[int]:
    """Ids of values that some root depends on."""
    out = {v.id for v in roots}
    for node in reversed(list(walk(fn.body))):
        if any(v.id in out for v in node.outputs):
            out.update(v.id for v in node.inputs)
    return out


def shape_classes(fn: Function) -> dict[int, int]:
    """Map value id → shape-class id; two values in one class have the same shape.

    Elementwise functions keep their input's class; broadcasting operators whose
    array operands are all in one class (Python scalars aside) keep that class.
    Everything else starts a class of its own.
    """
    cls: dict[int, int] = {v.id: v.id for v in fn.params}
    scalar = SCALAR_CLASS
    for node in walk(fn.body):
        if _makes_scalar(node, cls, scalar):
            cls[node.output.id] = scalar
            continue
        if node.op.name == "shape":
            cls[node.output.id] = SHAPE_CLASS
            continue
        classes = {cls.get(v.id, v.id) for v in node.inputs} - {scalar}
        if node.op.same_shape and node.inputs:
            own = cls.get(node.inputs[0].id, node.inputs[0].id)
        elif node.op.broadcasts and len(classes) == 1:
            own = classes.pop()
        elif node.op.broadcasts and not classes:
            own = scalar
        else:
            own = None
        for out in node.outputs:
            cls[out.id] = out.id if own is None else own
    return cls


SCALAR_OPS = {"size", "ndim", "len", "float", "int", "det", "trace"}
REDUCTIONS = {"sum", "mean", "prod", "max", "min", "norm"}


def _makes_scalar(node: Node, cls: dict[int, int], scalar: int) -> bool:
    """True if `node` certainly produces a 0-d value (a Python or NumPy scalar)."""
    name = node.op.name
    if name == "const":
        return isinstance(node.attrs.get("value"), (int, float))
    if name in SCALAR_OPS:
        return name not in ("det", "trace")
    if name in REDUCTIONS:
        return node.attrs.get("axis") is None and not node.attrs.get("keepdims")
    if name == "getitem" and node.inputs and _is_shape(node.inputs[0], cls):
        return isinstance(node.attrs["index"][0][0], int) and node.attrs["index"][1]
    return False


def _is_shape(value: Value, cls: dict[int, int]) -> bool:
    return cls.get(value.id) == SHAPE_CLASS


SCALAR_CLASS = -1
SHAPE_CLASS = -2


def dce(fn: Function) -> Function:
    """Remove nodes whose outputs are never read (nodes with no outputs have effects: kept)."""
    live = {v.id for v in fn.results}
    _dce_block(fn.body, live)
    return fn


def _dce_block(block: Block, live: set[int]) -> None:
    live.update(v.id for v in block.yields)
    kept: list[Node] = []
    for node in reversed(block.nodes):
        if node.outputs and not any(v.id in live for v in node.outputs):
            continue
        for region in node.regions:
            _dce_block(region, live)
        live.update(v.id for v in node.inputs)
        kept.append(node)
    block.nodes = kept[::-1]


def uses(fn: Function) -> dict[int, int]:
    """How many times each value is read (by nodes, yields and results)."""
    count: dict[int, int] = {}
    for node in walk(fn.body):
        for v in node.inputs:
            count[v.id] = count.get(v.id, 0) + 1
    for v in fn.results:
        count[v.id] = count.get(v.id, 0) + 1
    return count
