"""Helpers differentiated once, as a forward and an adjoint function of their own.

Helpers are inlined where they are called, except a call that would recurse
(a helper already being inlined further up): it stays a `call` node. The
reverse sweep turns it into a call of the helper's generated forward function,
which returns the value and what the adjoint needs, and a call of its
generated adjoint function:

    def tower(v, depth):                 def tower_forward(v, depth):  -> (value, saved)
        if depth == 0:          ──▶      def tower_adjoint(saved, g):  -> (v_bar, depth_bar)
            return v
        return np.tanh(tower(v, depth - 1) + v)

Each helper is generated once per process; the functions live in one
namespace, so helpers that call each other (or themselves) find each other.

Forward mode turns a call of a helper, or of one of its generated functions
(forward over reverse), into a call of a generated *tangent function*, made
once per callee and per set of arguments that carry tangents (`tangent_function`):

    y = tower(v, depth)        ──▶  tower_jvp_result = tower_jvp(v, depth, v_dot)
                                    y = tower_jvp_result[0]
                                    y_dot = tower_jvp_result[1]

`tower_jvp(v, depth, v_dot) -> (value, tangent)` is the forward transform of
`tower`; its own recursive call is a call of `tower_jvp`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adcompiler import depends, ssa
from adcompiler.helpers import GENERATED, NAMESPACE, helper_name
from adcompiler.helpers import register as _register_helper
from adcompiler.ops.calls import CALL, CALL_BWD, CALL_FWD, CALL_JVP
from adcompiler.ops.core import Builder
from adcompiler.ops.structure import GETITEM, MAKE_TUPLE
from adcompiler.ssa import Block, Function, Node, Value, walk

_built: dict = {}  # function -> (forward Emitted, adjoint Emitted)
_facts: dict = {}  # function -> the globals and cells its generated functions rely on


def build(fn) -> tuple:
    """Generate (once, and again when a global or cell it read changed) the forward and
    adjoint functions of the helper `fn`."""
    if fn in _built and _built[fn] is not None and not _facts[fn].holds():
        forget_stale()
    if fn in _built:
        depends.replay(_facts.get(fn))  # what reuses them relies on the same values
        return _built[fn]
    _built[fn] = None  # being built: a recursive call finds its name below
    try:
        with depends.recording() as facts:
            built = _build(fn)
        _facts[fn] = facts
        return built
    except BaseException:
        del _built[fn]
        raise


def forget_stale() -> None:
    """Drop the generated functions, IR and tangent functions of helpers whose globals or
    cells changed since (each is made again when it is needed)."""
    stale = [fn for fn, facts in _facts.items() if not facts.holds()]
    for fn in stale:
        del _built[fn], _facts[fn]
    lowered = [fn for fn, facts in _lowered_facts.items() if not facts.holds()]
    for fn in lowered:
        del _lowered[fn], _lowered_facts[fn]
    for key in [k for k, e in _jvp.items() if e.facts is not None and not e.facts.holds()]:
        del _jvp[key]


def _build(fn) -> tuple:
    from adcompiler.codegen.emit import emit_function
    from adcompiler.frontend import lower_function
    from adcompiler.load import load_into
    from adcompiler.reverse import reverse

    primal = ssa.verify(lower_function(fn, functions=True))
    if len(primal.results) != 1:
        raise NotImplementedError(f"a recursive helper must return one value ({fn.__name__})")
    n = len(primal.params)
    both = reverse(primal, list(range(n)), cotangent="param", return_value=True, check_types=False)
    base = _base_name(fn)
    forward, adjoint = split(both, base)
    emitted = (
        emit_function(forward, f"{base}_forward", f"Value of {fn.__name__} and what "
                      "its adjoint needs.", (0, 1)),
        emit_function(adjoint, f"{base}_adjoint", f"Adjoint of {fn.__name__}: the "
                      "adjoints of its arguments.", tuple(range(n))),
    )  # fmt: skip
    for e, ir in zip(emitted, (forward, adjoint)):
        e.ir = ir
        load_into(e, NAMESPACE)
        GENERATED[e.name] = NAMESPACE[e.name]
    _built[fn] = emitted
    return emitted


_base_names: dict = {}  # helper -> the name its generated functions start with


def _base_name(fn) -> str:
    """`fn`'s name, or ``name_2`` where another helper of that name has functions already
    (so that `name_forward` of one never replaces the other's)."""
    if fn not in _base_names:
        taken = set(_base_names.values())
        base, n = fn.__name__, 1
        while base in taken or f"{base}_forward" in GENERATED or f"{base}_adjoint" in GENERATED:
            n += 1
            base = f"{fn.__name__}_{n}"
        _base_names[fn] = base
    return _base_names[fn]


def _reads(node: Node) -> list[Value]:
    """The values `node` reads: its inputs, and those of the nodes and the yields of the
    regions inside it."""
    return [
        v for n in walk(Block(nodes=[node]))
        for v in [*n.inputs, *(y for r in n.regions for y in r.yields)]
    ]  # fmt: skip


def split(both: Function, name: str) -> tuple[Function, Function]:
    """Cut a vjp IR (params: args..., cotangent) into its forward and adjoint halves."""
    g = both.params[-1]
    args = both.params[:-1]
    late = {g.id}
    first, second = [], []
    for node in both.body.nodes:
        reads = {v.id for v in _reads(node)}
        if reads & late:
            second.append(node)
            late.update(v.id for v in node.outputs)
        else:
            first.append(node)
    defined = {p.id for p in args} | {v.id for n in first for v in n.outputs}
    inside = set()
    for n in second:
        for m in walk(Block(nodes=[n])):
            inside.update(v.id for v in m.outputs)
            for r in m.regions:
                inside.update(p.id for p in r.params)
    saved: dict[int, Value] = {}
    for n in second:
        for v in _reads(n):
            if v.id in defined and v.id not in inside:
                saved.setdefault(v.id, v)
    for r in both.results[1:]:
        if r.id in defined:
            saved.setdefault(r.id, r)
    saved_list = list(saved.values())
    b = Builder(role="temp")
    pack = b.emit_sym(MAKE_TUPLE, saved_list).value
    pack.hint = "saved"
    forward = Function(f"{name}_forward", list(args), Block(nodes=first + b.nodes),
                       [both.results[0], pack], both.source_file)  # fmt: skip
    saved_param = Value("saved")
    unpack = Builder(role="temp")
    replace = {}
    for i, v in enumerate(saved_list):
        out = unpack.emit_sym(GETITEM, [saved_param], {"index": ((i,), True)}).value
        out.hint, out.role = v.hint, v.role
        replace[v.id] = out
    from adcompiler.reverse import substitute

    body = Block(nodes=unpack.nodes + second)
    substitute(body, replace)
    results = [replace.get(r.id, r) for r in both.results[1:]]
    adjoint = Function(f"{name}_adjoint", [saved_param, g], body, results, both.source_file)
    return ssa.verify(forward), ssa.verify(adjoint)


def forward_call(b: Builder, node: Node) -> tuple[Node, Value, Value]:
    """The primal of a `call` node: (forward call node, result value, saved value)."""
    fn = node.attrs["function"]
    build(fn)
    pair = b.emit_sym(CALL_FWD, node.inputs, {"function": fn, "name": _base_name(fn)}).value
    pair.hint = f"{fn.__name__}_result"
    result = node.output  # the call's own value, now read from the pair
    b.nodes.append(Node(GETITEM, [pair], {"index": ((0,), True)}, [result], loc=node.loc))
    saved = b.emit_sym(GETITEM, [pair], {"index": ((1,), True)}).value
    saved.hint = f"{fn.__name__}_saved"
    return pair, result, saved


def adjoint_call(b: Builder, node: Node, saved: Value, g: Value) -> Value:
    fn = node.attrs["function"]
    out = b.emit_sym(CALL_BWD, [saved, g], {"function": fn, "name": _base_name(fn)}).value
    out.hint = f"{fn.__name__}_bar"
    return out


def helper_sources(keys) -> list:
    """The Emitted functions generated for `keys` (from `callees`): a helper's forward
    and adjoint functions, or a tangent function (for `ad.source` and the CLI's files)."""
    out = []
    for key in keys:
        out.extend([_tangent_entry(key).emitted] if isinstance(key, JvpKey) else build(key))
    return out


def callees(fn: Function) -> list:
    """What `fn` calls of the generated functions, all the way down: helpers (whose forward
    and adjoint functions it calls) and the keys of tangent functions.

    A call that no derivative goes through stays a call of the user's helper itself
    (``pong(x, w, n - 1)``): the helper is put in the namespace of generated code."""
    found: list = []
    stack = [fn]
    while stack:
        for node in walk(stack.pop().body):
            if node.op is CALL:
                _register_helper(node.attrs["function"], node.attrs["name"])
            elif node.op in (CALL_FWD, CALL_BWD):
                key = node.attrs["function"]
                if key not in found:
                    found.append(key)
                    stack.extend(e.ir for e in build(key))
            elif node.op is CALL_JVP:
                key = node.attrs["function"]
                if key not in found:
                    found.append(key)
                    stack.append(_tangent_entry(key).ir)
    return found


def _tangent_entry(key: JvpKey) -> TangentFunction:
    """The tangent function `key` names (made again if it was dropped as stale)."""
    entry = _jvp.get(key)
    return entry if entry is not None else tangent_function(key.callee, key.structs)


def name_helper_calls(fn: Function) -> None:
    """Give each call of a user's helper that stays a call (no derivative goes through it)
    the name generated code calls it by: its own, or `h0_2` where another helper called
    `h0` (of another module) has that name already."""
    for node in walk(fn.body):
        if node.op is CALL:
            node.attrs["name"] = helper_name(node.attrs["function"])


def generated_names(fn: Function) -> set[str]:
    """Names of the generated functions that `fn` calls (reserved in its code)."""
    suffix = {CALL: "", CALL_FWD: "_forward", CALL_BWD: "_adjoint", CALL_JVP: ""}
    return {n.attrs["name"] + suffix[n.op] for n in walk(fn.body) if n.op in suffix}


# ---------------------------------------------------------------------------
# Tangent functions (forward mode)
# ---------------------------------------------------------------------------
# The tangent of each argument has a static *structure*: None (no tangent: the
# argument does not vary), True (an array like the argument), a tuple of
# structures (the argument is a tuple, such as the values a helper's forward
# function saves for its adjoint), or `Ref(key, i)`: the structure of the tangent
# that the tangent function `key` returns for result i. A Ref keeps the structure
# of recursive data finite: the saved values of `tower_forward` hold those of the
# recursive call, whose tangent structure is the one being computed.


@dataclass(frozen=True)
class JvpKey:
    """A tangent function: of `callee` (("call", helper), ("forward", helper),
    ("adjoint", helper) or ("jvp", JvpKey)), for arguments whose tangents have
    the structures `structs`."""

    callee: tuple
    structs: tuple


@dataclass(frozen=True)
class Ref:
    """The structure of the tangent that tangent function `key` returns for result `i`."""

    key: JvpKey
    i: int


@dataclass
class TangentFunction:
    key: JvpKey
    name: str
    declared: list  # the structure of each result's tangent, as callers see it
    tree: Any  # how the callee's results nest: an index, or a tuple of them
    final: list | None = None  # the structures the built function really returns
    ir: Function | None = None
    emitted: Any = None
    facts: Any = None  # the globals and cells it relies on (adcompiler.depends)


_jvp: dict[JvpKey, TangentFunction] = {}
_lowered: dict = {}  # helper -> its IR (helpers inlined, recursive calls kept as calls)
_lowered_facts: dict = {}  # helper -> the globals and cells its IR relies on


def callee_of(node: Node) -> tuple:
    """What a call node calls, as the `callee` of a JvpKey."""
    kind = {CALL: "call", CALL_FWD: "forward", CALL_BWD: "adjoint", CALL_JVP: "jvp"}[node.op]
    return (kind, node.attrs["function"])


def _callee_ir(callee: tuple) -> tuple[Function, str, Any]:
    """The IR of what `callee` names, the name of its function, and how its results nest."""
    kind, target = callee
    if kind == "call":
        if target in _lowered_facts and not _lowered_facts[target].holds():
            forget_stale()
        if target not in _lowered:
            from adcompiler.frontend import lower_function

            with depends.recording() as facts:
                _lowered[target] = ssa.verify(lower_function(target))
            _lowered_facts[target] = facts
        depends.replay(_lowered_facts.get(target))
        fn = _lowered[target]
        tree = tuple(range(len(fn.results))) if fn.returns_tuple else 0
        if not fn.returns_tuple and len(fn.results) != 1:
            raise NotImplementedError(f"a recursive helper must return one value ({fn.name})")
        return fn, _base_name(target), tree
    if kind in ("forward", "adjoint"):
        e = build(target)[0 if kind == "forward" else 1]
        tree = (0, 1) if kind == "forward" else tuple(range(len(e.ir.results)))
        return e.ir, e.name, tree
    entry = _tangent_entry(target)
    if entry.ir is None:
        raise NotImplementedError(f"the tangent of {entry.name} is needed while it is built")
    return entry.ir, entry.name, ((entry.tree, _shift(entry.tree, len(entry.declared))))


def _shift(tree, offset):
    if isinstance(tree, tuple):
        return tuple(_shift(t, offset) for t in tree)
    return tree + offset


def map_tree(tree, leaf: Callable):
    if isinstance(tree, tuple):
        return tuple(map_tree(t, leaf) for t in tree)
    return leaf(tree)


def resolve(struct):
    """`struct` with a Ref at its top replaced by what it stands for (once known)."""
    while isinstance(struct, Ref):
        entry = _jvp[struct.key]
        if entry.final is None:
            raise NotImplementedError(
                f"forward mode: the tangent structure of what {entry.name} returns is needed "
                f"while {entry.name} is generated"
            )
        struct = entry.final[struct.i]
    return struct


def _declared(fn: Function, key: JvpKey) -> list:
    """The structure of each result's tangent, fixed before the tangent function is built
    (so that recursive calls of it can be transformed): a tuple built in the function
    (`saved`) is a Ref, resolved once built; None stays None; any other result gets a
    tangent array (zeros where it does not vary)."""
    from adcompiler.ops.structure import MAKE_TUPLE

    tuples = {n.output.id for n in walk(fn.body) if n.op is MAKE_TUPLE}
    out = []
    for i, r in enumerate(fn.results):
        if r.is_const and r.const is None:
            out.append(None)
        elif r.id in tuples:
            out.append(Ref(key, i))
        else:
            out.append(True)
    return out


def _unique_name(base: str, fn: Function, structs: tuple) -> str:
    """`tower_jvp`; another specialization of the same callee: `tower_jvp_v` (named after
    the arguments with tangents), or a number."""
    taken = set(GENERATED) | {e.name for e in _jvp.values()}
    if base not in taken:
        return base
    active = "_".join(p.hint for p, s in zip(fn.params, structs) if s is not None)
    name, n = f"{base}_{active}", 1
    while name in taken:
        n += 1
        name = f"{base}_{active}_{n}"
    return name


def tangent_function(callee: tuple, structs: tuple) -> TangentFunction:
    """The tangent function of `callee` for arguments with tangent structures `structs`,
    generated once: ``(*args, *tangents of the args that have one) -> (value, tangent)``.
    While it is generated, a recursive call finds its entry (name, result structures)."""
    key = JvpKey(callee, tuple(structs))
    entry = _jvp.get(key)
    if entry is not None and entry.facts is not None and not entry.facts.holds():
        forget_stale()  # this one too (what calls it relies on its facts: made again)
        entry = None
    if entry is not None:
        depends.replay(entry.facts)
        return entry
    try:
        with depends.recording() as facts:
            fn, name, tree = _callee_ir(callee)
            entry = TangentFunction(key, _unique_name(f"{name}_jvp", fn, key.structs), [], tree)
            entry.declared = _declared(fn, key)
            _jvp[key] = entry
            _generate_tangent(entry, fn, name)
        entry.facts = facts
    except BaseException:
        for k in [k for k, e in _jvp.items() if e.ir is None]:
            del _jvp[k]  # this one and any recursive callee left half-built
        raise
    return entry


def _generate_tangent(entry: TangentFunction, fn: Function, callee_name: str) -> None:
    from adcompiler.codegen.emit import emit_function
    from adcompiler.codegen.naming import base_name
    from adcompiler.forward import tangent_function_ir
    from adcompiler.load import load_into

    source = _copy_function(fn)
    ir, final = tangent_function_ir(source, list(entry.key.structs), entry.declared)
    ir = ssa.verify(ir)
    entry.final = final
    m = len(fn.results)
    tree = (entry.tree, _shift(entry.tree, m))
    names = [base_name(p) for p, s in zip(fn.params, entry.key.structs) if s is not None]
    doc = (
        f"Value and Jacobian-vector product (forward mode) of {callee_name} with respect to "
        f"{', '.join(names)}."
    )
    ir.name = entry.name
    emitted = emit_function(ir, entry.name, doc, tree, reserved=generated_names(ir))
    emitted.ir = ir
    load_into(emitted, NAMESPACE)
    GENERATED[entry.name] = NAMESPACE[entry.name]
    entry.emitted = emitted
    entry.ir = ir


def _copy_function(fn: Function) -> Function:
    """A copy of `fn`'s structure (the transform may edit blocks); values are shared."""

    def copy_block(block: Block) -> Block:
        nodes = []
        for n in block.nodes:
            regions = [copy_block(r) for r in n.regions]
            nodes.append(Node(n.op, list(n.inputs), dict(n.attrs), list(n.outputs), regions, n.loc))
            if n in ssa.ACCUMULATIONS:
                ssa.ACCUMULATIONS.add(nodes[-1])
        return Block(list(block.params), nodes, list(block.yields))

    return Function(fn.name, list(fn.params), copy_block(fn.body), list(fn.results),
                    fn.source_file, fn.doc, fn.returns_tuple)  # fmt: skip
