"""Forward mode: add tangent nodes to a function.

One sweep over the nodes in order. After each node ``y = f(x)`` the rule of
``f`` emits the tangent ``ẏ = f'(x) ẋ``:

    %z = mul(%x, %w)              %z = mul(%x, %w)
    %y = sum(%z)          ──▶     %z_dot = mul(%x_dot, %w)
    return %y                     %y = sum(%z)
                                  %y_dot = sum(%z_dot)
                                  return %y, %y_dot

Only varied values (those that depend on a `wrt` parameter) get tangents; a
value with no tangent has a zero one. Where a broadcasting operator's output
may be larger than the tangent its rule gives (``x + b`` with only ``b``
varied), the tangent goes through one `np.broadcast_to` node, the mirror of
reverse mode's `unbroadcast`. Nodes that own regions (``if``/``for``/``while``)
are handed to the transform registered for their operator in `REGION_TANGENTS`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from adcompiler import passes, runtime
from adcompiler.ops import Builder, Sym, op_for
from adcompiler.ssa import Block, Function, Node, Value


class Tangents:
    """The tangent of each value: `set` records it, `get` reads it (None: zero)."""

    def __init__(self, varied: set[int]):
        self.varied = varied
        self.of: dict[int, Value] = {}

    def set(self, y: Value, tangent: Value, fresh: set[int]) -> None:
        if y.id not in self.varied:
            return
        if tangent.id in fresh:
            tangent.hint, tangent.role = tangent_hint_and_role(y)
        self.of[y.id] = tangent

    def get(self, x: Value) -> Value | None:
        return self.of.get(x.id)


def tangent_hint_and_role(y: Value) -> tuple[str, str]:
    """How y's tangent is named: ``h_dot`` for h. Forward over reverse: ``h_bar_dot`` for
    the adjoint h̄; tangents in the adjoint sweep keep an adjoint role, so that codegen
    writes them under the comment "adjoint of line ..." with the adjoints they follow."""
    if y.role == "adjoint":
        return f"{y.hint}_bar_dot", "adjoint_tangent"
    if y.role == "adjoint_temp":
        return f"{y.hint}_dot", "adjoint_temp"
    return y.hint, "tangent"


def _temp_role(node: Node) -> str:
    """The role of the temporaries a tangent rule emits for `node`."""
    in_adjoint_sweep = any(v.role.startswith("adjoint") for v in node.outputs)
    return "adjoint_temp" if in_adjoint_sweep else "tangent_temp"


# A transform per region-owning operator: (node, tangents, shapes) -> the nodes replacing it.
REGION_TANGENTS: dict[object, Callable[[Node, Tangents, dict[int, int]], list[Node]]] = {}


def region_tangent(op):
    """Decorator: register the forward transform of a region-owning operator (if/for/while)."""

    def deco(handler):
        REGION_TANGENTS[op] = handler
        return handler

    return deco


def forward(fn: Function, wrt: list[int], *, return_value: bool = True) -> Function:
    """The function ``(*params, *tangents of params[wrt]) -> ([results,] tangents of results)``.

    Each tangent parameter is named after its parameter (``x_dot``); a result
    that does not depend on `wrt` has a zero tangent.
    """
    wrt_values = [fn.params[i] for i in wrt]
    tan = Tangents(passes.varied(fn, wrt_values))
    shapes = passes.shape_classes(fn)
    extra_params = []
    for x in wrt_values:
        x_dot = Value(x.hint, role="tangent", loc=x.loc)
        extra_params.append(x_dot)
        tan.of[x.id] = x_dot
    nodes: list[Node] = []
    if not _already_checked(fn, wrt_values):
        nodes.append(Node(op_for(runtime.check_float), wrt_values, {}, outputs=[]))
    for node in fn.body.nodes:
        nodes.extend(_forward_node(node, tan, shapes))
    tail = Builder(loc=None, role="tangent")
    tangents = []
    for y in fn.results:
        t = tan.get(y)
        if t is None:  # not varied: the tangent really is zero
            t = tail.call(np.zeros_like, y).value
            t.hint, t.role = tangent_hint_and_role(y)
        tangents.append(t)
    results = (list(fn.results) if return_value else []) + tangents
    out = Function(
        name=fn.name,
        params=fn.params + extra_params,
        body=Block(nodes=[*nodes, *tail.nodes]),
        results=results,
        source_file=fn.source_file,
        doc=fn.doc,
    )
    return passes.dce(out)


def _already_checked(fn: Function, wrt: list[Value]) -> bool:
    """True if `fn` (a generated gradient) already refuses integer `wrt` inputs."""
    checked = {v.id for n in fn.body.nodes if n.op is op_for(runtime.check_float) for v in n.inputs}
    return all(x.id in checked for x in wrt)


def _forward_node(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    """`node` followed by the nodes computing the tangents of its outputs."""
    if node.regions:
        handler = REGION_TANGENTS.get(node.op)
        if handler is None:
            raise NotImplementedError(f"forward mode has no transform for `{node.op.name}` yet")
        return handler(node, tan, shapes)
    return [node, *_tangent_of(node, tan, shapes)]


def _tangent_of(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    """The nodes that propagate the tangents of `node`'s inputs to its output."""
    if node.op.nondiff or len(node.outputs) != 1:
        return []
    ts = [tan.get(v) for v in node.inputs]
    if all(t is None for t in ts):
        return []
    if node.op.tangent is None:
        raise NotImplementedError(f"no tangent rule for {node.op.name}")
    b = Builder(loc=node.loc, role=_temp_role(node))
    attrs = dict(node.attrs)
    t = node.op.tangent(
        [None if t is None else Sym(b, t) for t in ts],
        Sym(b, node.output),
        *(Sym(b, v) for v in node.inputs),
        **attrs,
    )
    if t is None:  # the rule says the tangent is zero (piecewise constant in the varied inputs)
        return b.nodes
    t = t if isinstance(t, Value) else t.value
    fresh = {n.output.id for n in b.nodes if n.outputs}
    if node.op.broadcasts and not _fills_output(node, t, b.nodes, ts, shapes):
        t = b.call(np.broadcast_to, t, Sym(b, node.output).shape).value
        fresh.add(t.id)
    tan.set(node.output, t, fresh)
    return b.nodes


def _fills_output(
    node: Node, t: Value, emitted: list[Node], ts: list, shapes: dict[int, int]
) -> bool:
    """True if tangent `t` of broadcasting `node` certainly has the output's shape.

    A value broadcast against every (non-scalar) input of the node has the
    output's shape. Track, for each value the rule emitted, which inputs'
    shape classes it has been broadcast against; a tangent has its input's.
    """
    cls = lambda v: shapes.get(v.id, v.id)  # noqa: E731
    needed = {cls(v) for v in node.inputs} - {passes.SCALAR_CLASS}
    if cls(node.output) in needed:
        return True
    cover: dict[int, frozenset | None] = {node.output.id: frozenset(needed)}
    for v, dv in zip(node.inputs, ts):
        cover[v.id] = frozenset({cls(v)}) - {passes.SCALAR_CLASS}
        if dv is not None:
            cover[dv.id] = cover[v.id]
    for n in emitted:
        if not n.outputs:
            continue
        ins = [cover.get(v.id, frozenset() if v.is_const else None) for v in n.inputs]
        if n.op.broadcasts and all(c is not None for c in ins):
            cover[n.output.id] = frozenset().union(*ins)
        elif n.op.same_shape and ins and ins[0] is not None:
            cover[n.output.id] = ins[0]
    return (cover.get(t.id) or frozenset()) >= needed
