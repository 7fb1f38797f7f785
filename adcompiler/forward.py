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
and the tapes of a reverse sweep (forward over reverse) are handed to the
transform registered for their operator in `HANDLERS`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from adcompiler import passes, runtime
from adcompiler.codegen.naming import base_name
from adcompiler.ops import Builder, Sym, op_for
from adcompiler.ops.control import (
    FOR,
    IF,
    TAPE_APPEND,
    TAPE_GET,
    TAPE_LIST,
    TAPE_NEW,
    TAPE_SET,
    WHILE,
)
from adcompiler.ssa import ACCUMULATIONS, Block, Function, Node, Value, walk


class Tangents:
    """The tangent of each value: `set` records it, `get` reads it (None: zero).

    `tapes` are the ids of tapes (forward over reverse) that store varied values:
    each gets a tangent tape that stores their tangents.
    """

    def __init__(self, varied: set[int], tapes: set[int] = frozenset()):
        self.varied = varied
        self.tapes = tapes
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
    if y.role == "temp":  # a temporary's tangent is written into its one reader, if one
        return f"{y.hint}_dot", "tangent_temp"
    return y.hint, "tangent"


def _temp_role(node: Node) -> str:
    """The role of the temporaries a tangent rule emits for `node`."""
    in_adjoint_sweep = any(v.role.startswith("adjoint") for v in node.outputs)
    return "adjoint_temp" if in_adjoint_sweep else "tangent_temp"


# Operators whose tangents are not rules: those that own regions (if/for/while) and the
# tapes that carry saved values from a loop to its adjoint loop (forward over reverse).
# Each maps (node, tangents, shapes) to the nodes that replace it.
HANDLERS: dict[object, Callable[[Node, Tangents, dict[int, int]], list[Node]]] = {}


def handler(*ops):
    """Decorator: register the forward transform of operators that rules do not cover."""

    def deco(fn):
        for op in ops:
            HANDLERS[op] = fn
        return fn

    return deco


def forward(fn: Function, wrt: list, *, return_value: bool = True) -> Function:
    """The function ``(*params, *tangents of wrt) -> ([results,] tangents of results)``.

    `wrt` holds parameter positions or values (the leaves read from a structured
    argument, ``W = params['W']``). Each tangent parameter is named after its
    value (``x_dot``); a result that does not depend on `wrt` has a zero tangent.
    """
    wrt_values = [fn.params[i] if isinstance(i, int) else i for i in wrt]
    tan = Tangents(*_varied_through_tapes(fn, wrt_values))
    shapes = passes.shape_classes(fn)
    extra_params = []
    taken = {base_name(p) for p in fn.params}
    for x in wrt_values:
        x_dot = Value(x.hint, role="tangent", loc=x.loc)
        n = 1
        while base_name(x_dot) in taken:  # f(x, x_dot), or a jvp of a jvp: x_2_dot
            n += 1
            x_dot.hint = f"{x.hint}_{n}"
        taken.add(base_name(x_dot))
        extra_params.append(x_dot)
        tan.of[x.id] = x_dot
    nodes = _forward_block(fn.body.nodes, tan, shapes)
    if not _already_checked(fn, wrt_values):
        check = Node(op_for(runtime.check_float), wrt_values, {}, outputs=[])
        nodes = _after_definitions(nodes, wrt_values, check)
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


def _after_definitions(nodes: list[Node], values: list[Value], check: Node) -> list[Node]:
    """`nodes` with `check` inserted where every value it checks is defined (the leaves of
    a structured argument are read from it first)."""
    ids = {v.id for v in values}
    last = max((i for i, n in enumerate(nodes) if ids & {o.id for o in n.outputs}), default=-1)
    return [*nodes[: last + 1], check, *nodes[last + 1 :]]


def _already_checked(fn: Function, wrt: list[Value]) -> bool:
    """True if `fn` (a generated gradient) already refuses integer `wrt` inputs."""
    checked = {v.id for n in fn.body.nodes if n.op is op_for(runtime.check_float) for v in n.inputs}
    return all(x.id in checked for x in wrt)


def _forward_block(nodes: list[Node], tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    """Each node followed by the nodes computing the tangents of its outputs."""
    out: list[Node] = []
    for node in nodes:
        transform = HANDLERS.get(node.op)
        if transform is not None:
            out.extend(transform(node, tan, shapes))
        elif node.regions:
            raise NotImplementedError(f"forward mode has no transform for `{node.op.name}`")
        else:
            out.extend([node, *_tangent_of(node, tan, shapes)])
    return out


def _tangent_of(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    """The nodes that propagate the tangents of `node`'s inputs to its output."""
    ts = [tan.get(v) for v in node.inputs]
    if all(t is None for t in ts):
        return []
    if node.op.name in ("call", "call_forward", "call_adjoint"):
        raise NotImplementedError(
            f"forward mode through the recursive helper {node.attrs['name']} is not "
            f"supported yet (reverse mode is)"
        )
    if node.op.nondiff or len(node.outputs) != 1:
        return []
    if node.op.tangent is None:
        if node.op.name == "call":
            raise NotImplementedError(
                f"forward mode through the recursive helper {node.attrs['name']} is not "
                f"supported yet (reverse mode is)"
            )
        raise NotImplementedError(f"no tangent rule for {node.op.name}")
    b = Builder(loc=node.loc, role=_temp_role(node))
    declared = {p.name for p in node.op.params if p.kind == "attr"}
    attrs = {k: v for k, v in node.attrs.items() if k in declared}  # not codegen's hints
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
    if node in ACCUMULATIONS:  # the tangent of x̄ += c is x̄_dot += c_dot
        ACCUMULATIONS.update(n for n in b.nodes if n.outputs == [t] and n.inputs[:1] == ts[:1])
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


# ---------------------------------------------------------------------------
# Control flow: the tangent of a region-owning node carries tangents through it
# ---------------------------------------------------------------------------
#   %y = if(%c) {then: ...; yield %a} {else: ...; yield %b}
#     ──▶  %y, %y_dot = if(%c) {then: ...; yield %a, %a_dot} {else: ...; yield %b, %b_dot}
# and a loop carries the tangent of each varied carried value next to it.


def _tangent_slot(b: Builder, y: Value, tan: Tangents) -> Value:
    """The tangent of `y`, or zeros shaped like it where it has none."""
    t = tan.get(y)
    if t is None:
        t = b.call(np.zeros_like, y).value
        t.hint, t.role = tangent_hint_and_role(y)
    return t


def _tangent_value(y: Value, tan: Tangents) -> Value:
    """A new value that holds y's tangent (a region parameter or a node output)."""
    hint, role = tangent_hint_and_role(y)
    t = Value(hint, role="tangent" if role.endswith("temp") else role, loc=y.loc)
    tan.of[y.id] = t
    return t


def _with_tangents(region: Block, slots: list[int], params: list[Value], tan, shapes) -> Block:
    """`region` with tangent parameters for `params` and tangents yielded for `slots`."""
    nodes = _forward_block(region.nodes, tan, shapes)
    b = Builder(loc=None, role="tangent")
    extra = [_tangent_slot(b, region.yields[k], tan) for k in slots]
    return Block(params=region.params + params, nodes=nodes + b.nodes, yields=region.yields + extra)


@handler(IF)
def _if_tangent(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    slots = [k for k, out in enumerate(node.outputs) if out.id in tan.varied]
    regions = [_with_tangents(r, slots, [], tan, shapes) for r in node.regions]
    outputs = [_tangent_value(node.outputs[k], tan) for k in slots]
    return [Node(node.op, node.inputs, node.attrs, node.outputs + outputs, regions, node.loc)]


@handler(FOR, WHILE)
def _loop_tangent(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    inits = passes.carried_inits(node)
    body = node.regions[-1]
    carried = passes.carried_params(node, body)
    slots = [k for k, p in enumerate(carried) if p.id in tan.varied]
    pre = Builder(loc=node.loc, role="tangent")
    init_tangents = [_tangent_slot(pre, inits[k], tan) for k in slots]
    regions = []
    for region in node.regions:
        params = [_tangent_value(passes.carried_params(node, region)[k], tan) for k in slots]
        if region is body:
            regions.append(_with_tangents(region, slots, params, tan, shapes))
        else:  # a while's condition: it reads the carried values, never their tangents
            regions.append(Block(region.params + params, region.nodes, region.yields))
    outputs = [_tangent_value(node.outputs[k], tan) for k in slots]
    loop = Node(
        node.op, node.inputs + init_tangents, node.attrs, node.outputs + outputs, regions, node.loc
    )
    return [*pre.nodes, loop]


# ---------------------------------------------------------------------------
# Tapes (forward over reverse): a tape of varied values gets a tape of their tangents
# ---------------------------------------------------------------------------


def _varied_through_tapes(fn: Function, wrt: list[Value]) -> tuple[set[int], set[int]]:
    """Varied values, and the ids of the tapes among them.

    A tape varies if a varied value is written to it, and a value read back from a
    varied tape varies. Tapes are values like any other for the analysis, so that
    one held in another tape (nested loops) or passed out of a branch varies too.
    """
    ops = (TAPE_SET, TAPE_APPEND, TAPE_GET)
    uses = [n for n in walk(fn.body) if n.op in ops]
    seeds = list(wrt)
    while True:
        varied = passes.varied(fn, seeds)
        new = [n.inputs[0] for n in uses if n.op is not TAPE_GET and n.inputs[-1].id in varied]
        new += [n.output for n in uses if n.op is TAPE_GET and n.inputs[0].id in varied]
        new = [v for v in new if v.id not in varied]
        if not new:
            tapes = {n.inputs[0].id for n in uses if n.inputs[0].id in varied}
            tapes |= {n.output.id for n in walk(fn.body) if n.op in (TAPE_NEW, TAPE_LIST)} & varied
            return varied, tapes
        seeds += new


@handler(TAPE_NEW, TAPE_LIST)
def _new_tape_tangent(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    if node.output.id not in tan.tapes:
        return [node]
    tape = Value(node.output.hint, role="tangent", loc=node.loc)
    tan.of[node.output.id] = tape
    return [node, Node(node.op, node.inputs, node.attrs, [tape], loc=node.loc)]


@handler(TAPE_SET, TAPE_APPEND)
def _tape_write_tangent(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    tape, *index, v = node.inputs
    if tape.id not in tan.tapes:
        return [node]
    b = Builder(loc=node.loc, role="tangent")
    v_dot = _tangent_slot(b, v, tan)
    write = Node(node.op, [tan.of[tape.id], *index, v_dot], node.attrs, [], loc=node.loc)
    return [node, *b.nodes, write]


@handler(TAPE_GET)
def _tape_read_tangent(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    tape, index = node.inputs
    if tape.id not in tan.tapes:
        return [node]
    read = Node(node.op, [tan.of[tape.id], index], node.attrs, [], loc=node.loc)
    read.outputs = [Value(node.output.hint, loc=node.loc)]
    tan.set(node.output, read.output, {read.output.id})
    return [node, read]
