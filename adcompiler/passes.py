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
    _varied_block(fn.body, out)
    return out


def _varied_block(block: Block, out: set[int]) -> None:
    for node in block.nodes:
        if node.regions:
            _varied_region_node(node, out)
        elif not node.op.nondiff and any(v.id in out for v in node.inputs):
            out.update(v.id for v in node.outputs)


def _varied_region_node(node: Node, out: set[int]) -> None:
    """Outputs of if/for/while vary if a yield does; loop-carried values to a fixpoint."""
    inits = carried_inits(node)
    while True:
        for region in node.regions:
            for param, init, output in zip(carried_params(node, region), inits, node.outputs):
                if init.id in out or output.id in out:
                    out.add(param.id)
            _varied_block(region, out)
        changed = False
        for region in yielding_regions(node):
            for y, output in zip(region.yields, node.outputs):
                if y.id in out and output.id not in out:
                    out.add(output.id)
                    changed = True
        if not changed:
            return


def yielding_regions(node: Node) -> list[Block]:
    """The regions whose yields become the node's outputs (not a `while`'s condition)."""
    return node.regions[1:] if node.op.name == "while" else node.regions


def carried_inits(node: Node) -> list[Value]:
    """The initial values of a loop's carried slots ([] for an `if`)."""
    if node.op.name == "for":
        return node.inputs[3:]
    if node.op.name == "while":
        return node.inputs
    return []


def carried_params(node: Node, region: Block) -> list[Value]:
    """A region's parameters for the carried slots (a `for` body's index excluded)."""
    if node.op.name == "for":
        return region.params[1:]
    return region.params


def useful(fn: Function, roots: list[Value]) -> set[int]:
    """Ids of values that some root depends on."""
    out = {v.id for v in roots}
    _useful_block(fn.body, out)
    return out


def _useful_block(block: Block, out: set[int]) -> None:
    for node in reversed(block.nodes):
        if node.regions:
            _useful_region_node(node, out)
        elif any(v.id in out for v in node.outputs):
            out.update(v.id for v in node.inputs)


def _useful_region_node(node: Node, out: set[int]) -> None:
    inits = carried_inits(node)
    while True:
        before = len(out)
        if node.op.name == "while":
            out.update(v.id for v in node.regions[0].yields)
        for region in node.regions:
            params = carried_params(node, region)
            for k, y in enumerate(region.yields):
                if k < len(node.outputs) and node.outputs[k].id in out:
                    out.add(y.id)
                if node.op.name != "if" and k < len(params) and params[k].id in out:
                    out.add(y.id)
            _useful_block(region, out)
            for k, p in enumerate(params):
                if p.id in out:
                    if k < len(inits):
                        out.add(inits[k].id)
                    if k < len(node.outputs):
                        out.add(node.outputs[k].id)
        if any(o.id in out for o in node.outputs):
            out.update(v.id for v in node.inputs[: len(node.inputs) - len(inits)])
        if len(out) == before:
            return


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
        if node.op.name == "if":  # classified after its regions, below
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
    for node in reversed(list(walk(fn.body))):  # inner ifs first
        if node.op.name == "if":  # an output shares the class its yields share
            for k, out in enumerate(node.outputs):
                yielded = {cls.get(r.yields[k].id, r.yields[k].id) for r in node.regions}
                cls[out.id] = yielded.pop() if len(yielded) == 1 else out.id
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
    """Remove nodes whose outputs are never read; nodes with no outputs are effects: kept."""
    live = {v.id for v in fn.results}
    dce_block(fn.body, live)
    return fn


def dce_block(block: Block, live: set[int]) -> None:
    live.update(v.id for v in block.yields)
    kept: list[Node] = []
    for node in reversed(block.nodes):
        if not has_effects(node) and not any(v.id in live for v in node.outputs):
            continue
        if node.regions:
            _dce_region_node(node, live)
        live.update(v.id for v in node.inputs)
        kept.append(node)
    block.nodes = kept[::-1]


def _dce_region_node(node: Node, live: set[int]) -> None:
    # Every slot of a kept if/for/while stays: its yields are read by the next
    # iteration or by the outputs. Only the nodes inside each region are pruned.
    for region in node.regions:
        inner = set(live)
        dce_block(region, inner)
        live.update(inner)


def has_effects(node: Node) -> bool:
    """True for a node with no outputs (print, assert, a tape write) or one containing such."""
    if not node.outputs:
        return True
    return any(has_effects(n) for region in node.regions for n in region.nodes)


def uses(fn: Function) -> dict[int, int]:
    """How many times each value is read (by nodes, yields and results)."""
    count: dict[int, int] = {}
    for node in walk(fn.body):
        for v in node.inputs:
            count[v.id] = count.get(v.id, 0) + 1
    for v in fn.results:
        count[v.id] = count.get(v.id, 0) + 1
    return count
