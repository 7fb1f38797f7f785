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
reverse mode's `unbroadcast`. Nodes that own regions (``if``/``for``/``while``),
the tapes of a reverse sweep (forward over reverse), calls of recursive helpers
and of their generated functions, and tuples are handed to the transform
registered for their operator in `HANDLERS`.

A call of a recursive helper becomes a call of its generated tangent function
(`adcompiler.calls.tangent_function`), which returns the value and its tangent.
Forward over reverse, the helper's generated forward function returns a tuple
of saved values as well: its tangent is a tuple too, with None where a saved
value does not vary. What a tangent is (nothing, an array, or a tuple of such)
is known while compiling: its *structure* (`Tangents.struct_of`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from adcompiler import passes, runtime
from adcompiler.codegen.naming import base_name
from adcompiler.ops import Builder, Sym, op_for
from adcompiler.ops.calls import CALL, CALL_BWD, CALL_FWD, CALL_JVP
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
from adcompiler.ops.structure import GETITEM, MAKE_TUPLE
from adcompiler.ssa import ACCUMULATIONS, Block, Function, Node, Value, walk


class Tangents:
    """The tangent of each value: `set` records it, `get` reads it (None: zero).

    `tapes` are the ids of tapes (forward over reverse) that store varied values:
    each gets a tangent tape that stores their tangents.

    `struct` holds the structure of the tangents that are not plain arrays: a tuple
    of structures (None for an item with no tangent) for a tuple, `Elements(s)` for a
    tape whose items have structure s, or an `adcompiler.calls.Ref`.
    """

    def __init__(self, varied: set[int], tapes: set[int] = frozenset()):
        self.varied = varied
        self.tapes = tapes
        self.of: dict[int, Value] = {}
        self.struct: dict[int, object] = {}

    def set(self, y: Value, tangent: Value, fresh: set[int], struct: object = True) -> None:
        if y.id not in self.varied:
            return
        if tangent.id in fresh:
            tangent.hint, tangent.role = tangent_hint_and_role(y)
        self.of[y.id] = tangent
        self.struct_set(y, struct)

    def struct_set(self, y: Value, struct: object) -> None:
        if struct is True:
            self.struct.pop(y.id, None)
        else:
            self.struct[y.id] = struct

    def get(self, x: Value) -> Value | None:
        return self.of.get(x.id)

    def struct_of(self, x: Value) -> object:
        """None if `x` has no tangent, True if an array does, else its structure."""
        if x.id not in self.of:
            return None
        return self.struct.get(x.id, True)


class Elements:
    """The structure of a tape's tangent whose items have structure `item`."""

    __slots__ = ("item",)

    def __init__(self, item: object):
        self.item = item

    def __eq__(self, other):
        return isinstance(other, Elements) and other.item == self.item

    def __hash__(self):
        return hash(("elements", self.item))


def _is_none(v: Value) -> bool:
    return v.is_const and v.const is None


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
    varied, tapes = passes.varied_through_tapes(fn, wrt_values)
    tan = Tangents(varied - passes.shift_invariant_maxes(fn), tapes)  # exactly zero
    shapes = passes.shape_classes(fn)
    extra_params = _tangent_params(fn, wrt_values, [True] * len(wrt_values), tan)
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


def _tangent_params(fn: Function, values: list[Value], structs: list, tan: Tangents) -> list:
    """A tangent parameter for each of `values`, named after it (``x_dot``)."""
    extra_params = []
    taken = {base_name(p) for p in fn.params}
    for x, struct in zip(values, structs):
        hint, role = tangent_hint_and_role(x)  # x_dot; for an adjoint x̄: x_bar_dot
        x_dot = Value(hint, role="tangent" if role.endswith("temp") else role, loc=x.loc)
        n = 1
        while base_name(x_dot) in taken:  # f(x, x_dot), or a jvp of a jvp: x_2_dot
            n += 1
            x_dot.hint = f"{x.hint}_{n}" if x_dot.role == "tangent" else f"{hint}_{n}"
        taken.add(base_name(x_dot))
        extra_params.append(x_dot)
        tan.of[x.id] = x_dot
        tan.struct_set(x, struct)
    return extra_params


def tangent_function_ir(fn: Function, structs: list, declared: list) -> tuple[Function, list]:
    """The tangent function of a generated function or helper `fn` (adcompiler.calls):
    ``(*params, *tangents of the params whose structure is not None) -> (*results,
    *tangents of results)``, and the structure of each result's tangent.

    `declared` says what callers expect of each result's tangent (fixed before this
    function is built, so that it can call itself): True, an array, zeros where the
    result does not vary; None or a Ref, None where there is no tangent.
    """
    from adcompiler.calls import resolve

    active = [(p, s) for p, s in zip(fn.params, structs) if s is not None]
    seeds: list[Value] = []
    for p, s in active:  # a tuple argument: its items that have tangents vary
        readers = [n for n in walk(fn.body) if p in n.inputs]
        items = [_static_item(n) if n.op is GETITEM and n.inputs == [p] else None for n in readers]
        yielded = p in fn.results or any(p in r.yields for n in walk(fn.body) for r in n.regions)
        if s is True or yielded or any(k is None for k in items):
            seeds.append(p)
            continue
        inner = resolve(s)
        seeds += [n.output for n, k in zip(readers, items) if _item(inner, k) is not None]
    tan = Tangents(*passes.varied_through_tapes(fn, seeds))
    shapes = passes.shape_classes(fn)
    extra_params = _tangent_params(fn, [p for p, _ in active], [s for _, s in active], tan)
    nodes = _forward_block(fn.body.nodes, tan, shapes)
    tail = Builder(loc=None, role="tangent")
    tangents, final = [], []
    for y, expected in zip(fn.results, declared):
        t = tan.get(y)
        struct = tan.struct_of(y)
        if expected is True and struct not in (None, True):
            raise NotImplementedError(
                f"forward mode through {fn.name}: a result that is a tuple is not supported"
            )
        if t is None and expected is True:  # callers expect an array: zeros
            t = tail.call(np.zeros_like, y).value
            t.hint, t.role = tangent_hint_and_role(y)
            struct = True
        elif t is None:
            t = tail.const(None)
        tangents.append(t)
        final.append(struct)
    out = Function(
        name=fn.name,
        params=fn.params + extra_params,
        body=Block(nodes=[*nodes, *tail.nodes]),
        results=list(fn.results) + tangents,
        source_file=fn.source_file,
        doc=fn.doc,
    )
    return passes.dce(out), final


def _static_item(node: Node) -> int | None:
    """The position a `getitem` node reads, if it is a constant integer (``t[1]``)."""
    items, single = node.attrs.get("index", ((), False))
    if single and len(items) == 1 and isinstance(items[0], int) and len(node.inputs) == 1:
        return items[0]
    return None


def _item(struct: object, k: int) -> object:
    """The structure of item `k` of a tuple whose tangent has structure `struct`."""
    from adcompiler.calls import resolve

    struct = resolve(struct)
    if struct is None:
        return None
    if not isinstance(struct, tuple):
        raise NotImplementedError(f"forward mode: indexing a tangent of structure {struct!r}")
    return struct[k]


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
    if node.op.nondiff or len(node.outputs) != 1:
        return []
    if node.op.tangent is None:
        raise NotImplementedError(f"no tangent rule for {node.op.name}")
    if any(tan.struct_of(v) not in (None, True) for v in node.inputs):
        raise NotImplementedError(
            f"forward mode: `{node.op.name}` of a tuple that carries tangents is not supported"
        )
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


def _tangent_slot(b: Builder, y: Value, tan: Tangents, struct: object = True) -> Value:
    """The tangent of `y`, or zeros shaped like it where it has none (None where `y` is
    None, an exported value of the branch not taken, or a tuple, whose items have none)."""
    t = tan.get(y)
    if t is None and (_is_none(y) or struct not in (None, True)):
        t = b.const(None)
    elif t is None:
        t = b.call(np.zeros_like, y).value
        t.hint, t.role = tangent_hint_and_role(y)
    return t


def _merged(structs: list, where: Node) -> object:
    """The structure of a value that is one of several (the yields of an if's branches)."""
    known = {s for s in structs if s is not None}
    if len(known) > 1:
        raise NotImplementedError(
            f"forward mode: the branches of the `if` at {where.loc} yield tuples whose "
            f"tangents differ in structure"
        )
    return known.pop() if known else None


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
    varied = [k for k, out in enumerate(node.outputs) if out.id in tan.varied]
    bodies = [_forward_block(r.nodes, tan, shapes) for r in node.regions]
    structs = {k: _merged([tan.struct_of(r.yields[k]) for r in node.regions], node) for k in varied}
    slots = [k for k in varied if any(tan.get(r.yields[k]) is not None for r in node.regions)]
    regions = []
    for region, nodes in zip(node.regions, bodies):
        b = Builder(loc=None, role="tangent")
        extra = [_tangent_slot(b, region.yields[k], tan, structs[k]) for k in slots]
        regions.append(Block(region.params, nodes + b.nodes, region.yields + extra))
    outputs = []
    for k in slots:
        outputs.append(_tangent_value(node.outputs[k], tan))
        tan.struct_set(node.outputs[k], structs[k])
    return [Node(node.op, node.inputs, node.attrs, node.outputs + outputs, regions, node.loc)]


@handler(FOR, WHILE)
def _loop_tangent(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    inits = passes.carried_inits(node)
    body = node.regions[-1]
    carried = passes.carried_params(node, body)
    slots = [k for k, p in enumerate(carried) if p.id in tan.varied]
    pre = Builder(loc=node.loc, role="tangent")
    init_tangents = [_tangent_slot(pre, inits[k], tan) for k in slots]
    if any(tan.struct_of(inits[k]) not in (None, True) for k in slots):
        raise NotImplementedError(
            f"forward mode: a loop at {node.loc} carries a tuple that has tangents"
        )
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
    if tan.get(tape) is None:
        return [node]
    b = Builder(loc=node.loc, role="tangent")
    v_dot = _tangent_slot(b, v, tan)
    if tan.struct_of(v) not in (None, True):  # a tape of tuples (saved by a helper)
        tan.struct_set(tape, Elements(tan.struct_of(v)))
    write = Node(node.op, [tan.of[tape.id], *index, v_dot], node.attrs, [], loc=node.loc)
    return [node, *b.nodes, write]


@handler(TAPE_GET)
def _tape_read_tangent(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    tape, index = node.inputs
    if tan.get(tape) is None:
        return [node]
    read = Node(node.op, [tan.of[tape.id], index], node.attrs, [], loc=node.loc)
    read.outputs = [Value(node.output.hint, loc=node.loc)]
    struct = tan.struct_of(tape)
    tan.set(node.output, read.output, {read.output.id},
            struct.item if isinstance(struct, Elements) else True)  # fmt: skip
    return [node, read]


# ---------------------------------------------------------------------------
# Tuples, and calls of recursive helpers and of the functions generated for them
# ---------------------------------------------------------------------------
#   %y = call(%v, %n) {_power}     ──▶  %p = call_jvp(%v, %n, %v_dot) {_power_jvp}
#                                       %y = getitem(%p) [0]; %y_dot = getitem(%p) [1]


@handler(MAKE_TUPLE)
def _tuple_tangent(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    """The tangent of a tuple is the tuple of its items' tangents (None for an item
    that has none)."""
    structs = tuple(tan.struct_of(v) for v in node.inputs)
    if all(s is None for s in structs) or node.output.id not in tan.varied:
        return [node]
    b = Builder(loc=node.loc, role=_temp_role(node))
    items = [tan.get(v) if tan.get(v) is not None else b.const(None) for v in node.inputs]
    t = b.emit_sym(MAKE_TUPLE, items).value
    tan.set(node.output, t, {t.id}, structs)
    return [node, *b.nodes]


@handler(GETITEM)
def _getitem_tangent(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    """An item of a tuple has the tangent of that item; an array's, the rule's."""
    struct = tan.struct_of(node.inputs[0])
    if struct is None or struct is True:
        return [node, *_tangent_of(node, tan, shapes)]
    k = _static_item(node)
    if k is None:
        raise NotImplementedError(
            f"forward mode: a tuple with tangents indexed by a value known only at run time "
            f"({node.loc})"
        )
    item = _item(struct, k)
    if item is None:
        return [node]
    b = Builder(loc=node.loc, role=_temp_role(node))
    t = b.emit_sym(GETITEM, [tan.get(node.inputs[0])], {"index": node.attrs["index"]}).value
    tan.set(node.output, t, {t.id}, item)
    return [node, *b.nodes]


@handler(CALL, CALL_FWD, CALL_BWD, CALL_JVP)
def _call_tangent(node: Node, tan: Tangents, shapes: dict[int, int]) -> list[Node]:
    """A call of a recursive helper (or of a function generated for one) becomes a call of
    its tangent function, generated once for the arguments that have tangents; it
    returns the value and its tangent."""
    from adcompiler import calls

    structs = tuple(tan.struct_of(v) for v in node.inputs)
    if all(s is None for s in structs):
        if node.op is CALL:  # no derivative goes through: a call of the user's helper
            attrs = {**node.attrs, "name": calls.helper_name(node.attrs["function"])}
            return [Node(node.op, node.inputs, attrs, node.outputs, loc=node.loc)]
        return [node]
    entry = calls.tangent_function(calls.callee_of(node), structs)
    b = Builder(loc=node.loc, role=_temp_role(node))
    tangents = [tan.get(v) for v in node.inputs if tan.get(v) is not None]
    attrs = {"function": entry.key, "name": entry.name}
    pair = b.emit_sym(CALL_JVP, [*node.inputs, *tangents], attrs).value
    pair.hint = f"{entry.name}_result"
    b.nodes.append(Node(GETITEM, [pair], {"index": ((0,), True)}, [node.output], loc=node.loc))
    t = b.emit_sym(GETITEM, [pair], {"index": ((1,), True)}).value
    struct = calls.map_tree(entry.tree, lambda i: entry.declared[i])
    tan.set(node.output, t, {t.id}, struct)
    return b.nodes
