"""Reverse mode: add adjoint nodes to a function.

One primal sweep, then one adjoint sweep over the nodes in reverse order.
For ``y = f(x)`` the rule of ``f`` emits the contribution ``x̄ += ȳ f'(x)``:

    %z = mul(%x, %w)              %z = mul(%x, %w)
    %y = sum(%z)          ──▶     %y = sum(%z)
    return %y                     %y_bar = const 1.0
                                  %z_bar = broadcast_to(%y_bar, shape(%z))
                                  %w_bar = mul(%z_bar, %x)
                                  return %w_bar

Only active values (depending on a `wrt` parameter and reaching the output)
get adjoints. An adjoint is assigned by its first contribution and added to by
later ones. Where a broadcasting operator's input may be smaller than its
output, the contribution goes through one `unbroadcast` node.
"""

from __future__ import annotations

import operator

import numpy as np

from adcompiler import passes, runtime
from adcompiler.ops import Builder, Sym, op_for
from adcompiler.ops.guards import check_scalar
from adcompiler.ssa import Block, Function, Node, Value


class Adjoints:
    """The adjoint of each value so far: `add` records a contribution, `get` reads the sum."""

    def __init__(self, active: set[int]):
        self.active = active
        self.of: dict[int, Value] = {}

    def add(self, b: Builder, x: Value, contribution: Value, fresh: set[int]) -> None:
        if x.id not in self.active:
            return
        if contribution.id in fresh:
            contribution.hint, contribution.role = x.hint, "adjoint"
        if x.id in self.of:
            total = b.call(operator.add, self.of[x.id], contribution)
            total.value.hint, total.value.role = x.hint, "adjoint"
            self.of[x.id] = total.value
        else:
            self.of[x.id] = contribution

    def get(self, x: Value) -> Value | None:
        return self.of.get(x.id)


def reverse(
    fn: Function, wrt: list[int], *, cotangent: str = "one", return_value: bool = False
) -> Function:
    """The function ``(*params[, cotangents]) -> ([results,] adjoints of params[wrt]...)``.

    cotangent: "one" seeds the (scalar) first result with 1.0; "param" adds one
    parameter per result that carries its cotangent (a vector-Jacobian product).
    """
    wrt_values = [fn.params[i] for i in wrt]
    roots = fn.results if cotangent == "param" else fn.results[:1]
    active = passes.varied(fn, wrt_values) & passes.useful(fn, roots)
    shapes = passes.shape_classes(fn)
    adj = Adjoints(active)
    primal = list(fn.body.nodes)
    check = Node(op_for(runtime.check_float), wrt_values, {}, outputs=[])
    seed_builder = Builder(loc=None, role="adjoint")
    extra_params = []
    for r in roots:
        if cotangent == "param":
            seed = Value(r.hint, role="adjoint")
            extra_params.append(seed)
        else:
            seed = seed_builder.const(1.0)
            seed.hint, seed.role = r.hint, "adjoint"
        if r.id in active:
            adj.of[r.id] = seed
    if cotangent == "one" and shapes.get(roots[0].id) != passes.SCALAR_CLASS:
        guard = Node(op_for(check_scalar), [roots[0]], {"name": fn.name}, outputs=[])
        primal.append(guard)
    adjoint_nodes: list[Node] = list(seed_builder.nodes)
    for node in reversed(primal):
        adjoint_nodes.extend(_adjoint_of(node, adj, shapes))
    _read_shapes_early(fn, adjoint_nodes, shapes)
    tail = Builder(loc=None, role="adjoint")
    grads = []
    for x in wrt_values:
        g = adj.get(x)
        if g is None:  # never reached: the gradient really is zero
            g = tail.call(np.zeros_like, x).value
            g.hint, g.role = x.hint, "adjoint"
        grads.append(g)
    results = (list(fn.results) if return_value else []) + grads
    out = Function(
        name=fn.name,
        params=fn.params + extra_params,
        body=Block(nodes=[check, *primal, *adjoint_nodes, *tail.nodes]),
        results=results,
        source_file=fn.source_file,
        doc=fn.doc,
    )
    return passes.dce(out)


def _adjoint_of(node: Node, adj: Adjoints, shapes: dict[int, int]) -> list[Node]:
    """The nodes that propagate the adjoint of `node`'s output to its inputs."""
    if node.op.nondiff or len(node.outputs) != 1:
        return []
    g = adj.get(node.output)
    if g is None or not any(v.id in adj.active for v in node.inputs):
        return []
    if node.op.adjoint is None:
        raise NotImplementedError(f"no adjoint rule for {node.op.name}")
    b = Builder(loc=node.loc, role="adjoint_temp")
    attrs = dict(node.attrs)
    contributions = node.op.adjoint(
        Sym(b, g), Sym(b, node.output), *(Sym(b, v) for v in node.inputs), **attrs
    )
    fresh = {n.output.id for n in b.nodes if n.outputs}
    out_class = shapes.get(node.output.id)
    for x, c in zip(node.inputs, contributions):
        if c is None or x.id not in adj.active:
            continue
        c = c if isinstance(c, Value) else c.value
        if node.op.broadcasts and shapes.get(x.id, x.id) != out_class:
            c = b.call(runtime.unbroadcast, c, Sym(b, x).shape).value
            fresh.add(c.id)
        adj.add(b, x, c, fresh)
    return b.nodes


def _read_shapes_early(fn: Function, nodes: list[Node], shapes: dict[int, int]) -> None:
    """Read each shape from a value the adjoint sweep keeps anyway (a parameter, or the
    value the adjoint reads most), or compute it from the shapes of a broadcasting
    operator's inputs, so that no value is kept or recomputed only for its shape."""
    members: dict[int, list[Value]] = {}
    defs: dict[int, Node] = {}
    for node in fn.body.nodes:
        defs.update((v.id, node) for v in node.outputs)
    for v in [*fn.params, *(o for n in fn.body.nodes for o in n.outputs)]:
        members.setdefault(shapes.get(v.id, v.id), []).append(v)
    reads: dict[int, int] = {}
    for node in nodes:
        if node.op.name != "shape":
            for v in node.inputs:
                reads[v.id] = reads.get(v.id, 0) + 1
    params = {p.id for p in fn.params}

    def kept(v: Value) -> bool:
        return v.id in params or reads.get(v.id, 0) > 0

    def best(v: Value) -> Value:
        group = members.get(shapes.get(v.id, -1), [v]) if shapes.get(v.id, -1) >= 0 else [v]
        return max(group, key=lambda u: (u.id in params, reads.get(u.id, 0)))

    def rewrite(node: Node) -> list[Node]:
        """Point `node` (a shape read) at a kept value; return the nodes to put before it."""
        source = best(node.inputs[0])
        node.inputs[0] = source
        producer = defs.get(source.id)
        if kept(source) or producer is None or not producer.op.broadcasts:
            return []
        b = Builder(loc=node.loc, role="adjoint_temp")
        operands = [Sym(b, x).shape.value for x in producer.inputs if not x.is_const]
        before = [n for shape_node in b.nodes for n in [*rewrite(shape_node), shape_node]]
        node.op, node.inputs, node.attrs = op_for(np.broadcast_shapes), operands, {}
        return before

    position = 0
    while position < len(nodes):
        node = nodes[position]
        if node.op.name == "shape":
            before = rewrite(node)
            nodes[position:position] = before
            position += len(before)
        position += 1
