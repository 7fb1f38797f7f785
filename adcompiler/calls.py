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
"""

from __future__ import annotations

import numpy as np

from adcompiler import ssa
from adcompiler.ops.calls import CALL_BWD, CALL_FWD
from adcompiler.ops.core import Builder
from adcompiler.ops.structure import GETITEM, MAKE_TUPLE
from adcompiler.ssa import Block, Function, Node, Value, walk

NAMESPACE: dict = {"np": np, "__name__": "adcompiler.helpers"}
_built: dict = {}  # function -> (forward Emitted, adjoint Emitted)


def build(fn) -> tuple:
    """Generate (once) the forward and adjoint functions of the helper `fn`."""
    if fn in _built:
        return _built[fn]
    _built[fn] = None  # being built: a recursive call finds its name below
    from adcompiler.codegen.emit import emit_function
    from adcompiler.frontend import lower_function
    from adcompiler.load import load_into
    from adcompiler.reverse import reverse

    primal = ssa.verify(lower_function(fn, functions=True))
    if len(primal.results) != 1:
        raise NotImplementedError(f"a recursive helper must return one value ({fn.__name__})")
    n = len(primal.params)
    both = reverse(primal, list(range(n)), cotangent="param", return_value=True, check_types=False)
    forward, adjoint = split(both, fn.__name__)
    emitted = (
        emit_function(forward, f"{fn.__name__}_forward", f"Value of {fn.__name__} and what "
                      "its adjoint needs.", (0, 1)),
        emit_function(adjoint, f"{fn.__name__}_adjoint", f"Adjoint of {fn.__name__}: the "
                      "adjoints of its arguments.", tuple(range(n))),
    )  # fmt: skip
    for e, ir in zip(emitted, (forward, adjoint)):
        e.ir = ir
        load_into(e, NAMESPACE)
    _built[fn] = emitted
    return emitted


def split(both: Function, name: str) -> tuple[Function, Function]:
    """Cut a vjp IR (params: args..., cotangent) into its forward and adjoint halves."""
    g = both.params[-1]
    args = both.params[:-1]
    late = {g.id}
    first, second = [], []
    for node in both.body.nodes:
        reads = {v.id for n in walk(Block(nodes=[node])) for v in n.inputs}
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
    for n in walk(Block(nodes=second)):
        for v in n.inputs:
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
    pair = b.emit_sym(CALL_FWD, node.inputs, {"function": fn, "name": fn.__name__}).value
    pair.hint = f"{fn.__name__}_result"
    result = node.output  # the call's own value, now read from the pair
    b.nodes.append(Node(GETITEM, [pair], {"index": ((0,), True)}, [result], loc=node.loc))
    saved = b.emit_sym(GETITEM, [pair], {"index": ((1,), True)}).value
    saved.hint = f"{fn.__name__}_saved"
    return pair, result, saved


def adjoint_call(b: Builder, node: Node, saved: Value, g: Value) -> Value:
    fn = node.attrs["function"]
    out = b.emit_sym(CALL_BWD, [saved, g], {"function": fn, "name": fn.__name__}).value
    out.hint = f"{fn.__name__}_bar"
    return out


def helper_sources(fns) -> list:
    """The Emitted forward/adjoint functions of helpers (for the CLI's stand-alone files)."""
    out = []
    for fn in fns:
        out.extend(build(fn))
    return out
