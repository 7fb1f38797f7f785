"""What each value of a generated function is, for every call with one signature.

`observe` runs the generic code once with a `probe` after every value; `statuses`
says, statically, which of those observations hold for every call with arguments
of the same shapes and dtypes (CONST, SHAPED) and which may not (FREE); `facts`
keeps the ones that hold. See the package docstring.
"""

from __future__ import annotations

import ast
import threading
from typing import Any

import numpy as np

from adcompiler import passes
from adcompiler.ops.calls import CALL, CALL_BWD, CALL_FWD, CALL_JVP
from adcompiler.ops.control import (
    AND,
    FOR,
    IF,
    OR,
    PRINT,
    TAPE_APPEND,
    TAPE_GET,
    TAPE_LIST,
    TAPE_NEW,
    TAPE_SET,
)
from adcompiler.ops.core import Op, Param, register
from adcompiler.ops.mutation import (
    ARRAY_LIST,
    INDEX_ADD,
    LIST_APPEND,
    MAKE_LIST,
    SETITEM,
    SPREAD,
    STACK_LIST,
    SUM_LIST,
    UNSTACK,
)
from adcompiler.ops.numpy_ops import LEN
from adcompiler.ops.random import DRAW, DRAW_GLOBAL
from adcompiler.ops.structure import CONST as CONST_OP
from adcompiler.ops.structure import DTYPE, GETITEM, NDIM, SHAPE, SIZE, UNINDEX, Dyn
from adcompiler.ssa import Block, Function, Node, Value, clone, walk

CONST, SHAPED, FREE = 0, 1, 2


_state = threading.local()  # .record: what the probes of this thread's observation saw


def probe(value, key):
    """Record what `value` is (generated code of `observe` calls this)."""
    record = getattr(_state, "record", None)
    if record is not None:
        record.setdefault(key, set()).add(_describe(value))


def _describe(value) -> tuple:
    if isinstance(value, np.ndarray):
        return ("array", value.shape, value.dtype.str)
    if isinstance(value, np.generic):
        return ("scalar", type(value).__name__)
    if isinstance(value, (bool, int)):
        return (type(value).__name__, value)
    if isinstance(value, float):
        return ("float",)
    if isinstance(value, tuple) and all(type(v) is int for v in value):
        return ("tuple", value)
    return ("object", type(value).__name__)


def _probe_spelling(node, args):
    return ast.Call(ast.Name("probe", ast.Load()), [args[0], ast.Constant(node.attrs["key"])], [])


PROBE = register(
    Op("probe", probe, (Param("x"), Param("key", "attr")), _probe_spelling, nondiff=True)
)


def observe(fn: Function, run) -> tuple[Any, dict[int, set]]:
    """Run `fn` with a probe on every value; `run(probed_fn)` compiles and calls it.
    Returns what the call returned and, per value id, the descriptions seen."""
    probed = clone(fn)
    lazy = _lazy_values(probed)
    _add_probes(probed.body, top=True, params=probed.params, lazy=lazy)
    seen: dict[int, set] = {}
    previous, _state.record = getattr(_state, "record", None), seen
    try:
        result = run(probed)
    finally:
        _state.record = previous
    return result, seen


def _add_probes(block: Block, top: bool = False, params: list[Value] | None = None,
                lazy: frozenset = frozenset()) -> None:  # fmt: skip
    out: list[Node] = [_probe(p) for p in (params if top else block.params)]
    for node in block.nodes:
        if node.op is PRINT:
            continue  # the generic version ran first and printed
        for region in node.regions:
            _add_probes(region, lazy=lazy)
        out.append(node)
        out.extend(_probe(v) for v in node.outputs if v.id not in lazy)
    block.nodes = out


def _lazy_values(fn: Function) -> frozenset:
    """Values computed inside the right operand of `and`/`or` (written inline there, so
    that `i < n and x[i] > 0` short-circuits): a probe would compute them first."""
    defs = {v.id: n for n in walk(fn.body) for v in n.outputs}
    lazy: set[int] = set()
    stack = [n.inputs[1] for n in walk(fn.body) if n.op in (AND, OR)]
    while stack:
        v = stack.pop()
        if v.id not in lazy and v.id in defs:
            lazy.add(v.id)
            stack.extend(defs[v.id].inputs)
    return frozenset(lazy)


def _probe(v: Value) -> Node:
    return Node(PROBE, [v], {"key": v.id}, outputs=[])


# Inputs whose *value* sets the output's shape: they must be CONST.
SIZE_INPUTS = {"shape", "N", "rest", "start", "stop", "step", "n"}


LISTS = {MAKE_LIST, LIST_APPEND, ARRAY_LIST, STACK_LIST, SUM_LIST, UNSTACK, SPREAD}


CALLS = {CALL, CALL_FWD, CALL_BWD, CALL_JVP}


SHAPE_ONLY = {SHAPE, SIZE, NDIM, DTYPE}


INDEXING = {GETITEM, UNINDEX, SETITEM, INDEX_ADD}


def statuses(fn: Function, seen: dict[int, set]) -> dict[int, int]:
    """The status of every value of `fn` (see the module docstring)."""
    status: dict[int, int] = {}
    for p in fn.params:
        kinds = {d[0] for d in seen.get(p.id, ())}
        leaves = all(d[:1] == ("tuple",) or d in _CONTAINERS for d in seen.get(p.id, ()))
        # a container's structure and the shapes of its leaves are in the signature
        # (specialize.signature): what is read from it at a fixed key is SHAPED
        status[p.id] = SHAPED if kinds <= {"array", "scalar", "float", "int", "bool"} or (
            leaves) else FREE  # fmt: skip
    tapes: dict[int, int] = {}
    while True:  # statuses only grow: a few rounds reach the fixed point
        before = (dict(status), dict(tapes))
        _status_block(fn.body, status, seen, tapes)
        if (status, tapes) == before:
            return status


_CONTAINERS = {("object", "dict"), ("object", "list"), ("object", "tuple")}


def _status_block(block: Block, status: dict, seen: dict, tapes: dict) -> None:
    for node in block.nodes:
        if node.regions:
            _status_region(node, status, seen, tapes)
            continue
        op = node.op
        ins = [status.get(v.id, FREE) for v in node.inputs]
        if op in (TAPE_SET, TAPE_APPEND):
            tape = node.inputs[0].id
            tapes[tape] = max(tapes.get(tape, CONST), ins[-1])
            # a tape kept on a tape (a loop's in an outer loop's): what is read from it
            # where it is read back is what was written into it
            inner = ("entries of entries", tape)
            tapes[inner] = max(tapes.get(inner, CONST), tapes.get(node.inputs[-1].id, CONST))
            continue
        if op is TAPE_GET:
            out = tapes.get(node.inputs[0].id, CONST)
            read = node.outputs[0].id
            inner = tapes.get(("entries of entries", node.inputs[0].id), CONST)
            tapes[read] = max(tapes.get(read, CONST), inner)
        elif op in (TAPE_NEW, TAPE_LIST) or op in LISTS or op in CALLS:
            out = FREE
        elif op.effect:  # a draw: never its value, at most its shape
            out = _draw_status(node, ins, seen)
        elif op in (AND, OR):  # which operand it returns (a bool or a float) is the data's
            out = FREE
        elif op is CONST_OP:
            out = _const_status(node.attrs.get("value"))
        elif op in SHAPE_ONLY:
            out = CONST if ins[0] <= SHAPED else FREE
        elif op is LEN:
            kinds = {d[0] for d in seen.get(node.inputs[0].id, ())}
            out = CONST if ins[0] <= SHAPED and kinds == {"array"} else max(ins[0], SHAPED)
        elif all(s == CONST for s in ins):
            out = CONST
        elif any(s == FREE for s in ins):
            out = FREE
        else:
            out = SHAPED if _shape_blind(node, ins, seen) else FREE
        for v in node.outputs:
            status[v.id] = max(status.get(v.id, CONST), out)


def _draw_status(node: Node, ins: list[int], seen: dict) -> int:
    """A random draw's values differ from call to call: never CONST. Its shape and dtype
    are fixed (SHAPED) when its arguments that may be sizes (integers and tuples) are
    CONST and the others are SHAPED; the generator a method is called on does not count.
    A generator made in the function is FREE (an object)."""
    if node.op not in (DRAW, DRAW_GLOBAL):
        return FREE
    first = 1 if node.op is DRAW else 0
    for v, s in zip(node.inputs[first:], ins[first:]):
        if s == CONST:
            continue
        seen_as = seen.get(v.id, ())
        if s == FREE or not seen_as or not all(_floats(d) for d in seen_as):
            return FREE
    return SHAPED


def _floats(description: tuple) -> bool:
    """A description of floats (never a size: only its shape shapes a draw)."""
    kind = description[0]
    if kind == "array":
        return description[2][1:2] in ("f", "c")
    if kind == "scalar":
        return description[1].startswith(("float", "complex"))
    return kind == "float"


def _const_status(value) -> int:
    """CONST for an immutable value (a literal, a tuple of them); SHAPED for an array (a
    global's values may be written in place, not its shape); FREE for anything else (a
    global dict or list: what the code reads from it may change between calls)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic,
                                           np.dtype, slice, type(Ellipsis))):  # fmt: skip
        return CONST
    if isinstance(value, tuple):
        return max((_const_status(v) for v in value), default=CONST)
    if isinstance(value, np.ndarray):
        return SHAPED
    return FREE


def _shape_blind(node: Node, ins: list[int], seen: dict) -> bool:
    """True if the output's shape does not depend on the values of the non-CONST inputs."""
    params = _input_names(node)
    if node.op in INDEXING:
        return _index_blind(node, ins, seen)
    return not any(s != CONST and p in SIZE_INPUTS for s, p in zip(ins, params))


def _input_names(node: Node) -> list[str]:
    names: list[str] = []
    for p in node.op.input_params:
        if p.kind in ("varargs", "seq"):
            names.extend([p.name] * (len(node.inputs) - len(names)))
        else:
            names.append(p.name)
    return names


def _index_blind(node: Node, ins: list[int], seen: dict) -> bool:
    """`x[i]` with `i` an integer or an integer array has a shape independent of the
    values of `i`; a boolean mask, or `i` as a slice bound, does not."""
    unindex = node.op is UNINDEX
    if node.op in (SETITEM, INDEX_ADD):
        return True  # the output is the input array, written into
    first = 2 if unindex else 1
    if unindex and ins[1] != CONST:
        return False
    items, _ = node.attrs["index"]
    bare = {p.k for p in items if isinstance(p, Dyn)}
    for k, v in enumerate(node.inputs[first:]):
        if ins[first + k] == CONST:
            continue
        if k not in bare:
            return False  # a slice bound
        kinds = seen.get(v.id, ())
        if not kinds:
            return False  # never observed: it may be a mask (fail closed)
        if any(d[0] == "array" and d[2] == "|b1" or d[0] == "bool" or d[0] == "scalar" and
               d[1].startswith("bool") for d in kinds):  # fmt: skip
            # a mask: the shape of x[mask] depends on the data (x[True] has a new axis
            # of length 1, x[False] of length 0)
            return unindex
    return True


def _status_region(node: Node, status: dict, seen: dict, tapes: dict) -> None:
    if node.op is IF:
        cond = status.get(node.inputs[0].id, FREE)
        for region in node.regions:
            _status_block(region, status, seen, tapes)
        for k, out in enumerate(node.outputs):
            yields = max(status.get(r.yields[k].id, FREE) for r in node.regions)
            status[out.id] = max(status.get(out.id, CONST), yields, FREE if cond else CONST)
        return
    inits = passes.carried_inits(node)
    if node.op is FOR:
        for region in node.regions:
            status[region.params[0].id] = max(
                status.get(region.params[0].id, CONST),
                max(status.get(v.id, FREE) for v in node.inputs[:3]), SHAPED,
            )  # fmt: skip
    for _ in range(4):
        fixed = _fixed_trips(node, status)
        for region in node.regions:
            for k, p in enumerate(passes.carried_params(node, region)):
                s = status.get(inits[k].id, FREE)
                for body in passes.yielding_regions(node):
                    s = max(s, status.get(body.yields[k].id, CONST))
                if len(seen.get(p.id, ())) > 1:
                    s = FREE  # seen with two shapes: it changes from one iteration to the next
                elif not fixed and not _same_every_iteration(node, k, seen):
                    s = FREE  # the iterations seen may be fewer than another call's
                status[p.id] = max(status.get(p.id, CONST), s)
            _status_block(region, status, seen, tapes)
    for k, out in enumerate(node.outputs):
        params = passes.carried_params(node, passes.yielding_regions(node)[0])
        status[out.id] = max(status.get(out.id, CONST), status.get(params[k].id, FREE))


def _fixed_trips(loop: Node, status: dict) -> bool:
    """True if `loop` runs the same number of iterations in every call with the signature:
    a `for` over a range of CONST bounds, a `while` whose condition is CONST."""
    if loop.op is FOR:
        return all(status.get(v.id, FREE) == CONST for v in loop.inputs[:3])
    return status.get(loop.regions[0].yields[0].id, FREE) == CONST


def _same_every_iteration(loop: Node, k: int, seen: dict) -> bool:
    """True if carried slot `k` of `loop` (whose trip count depends on the data) was seen
    as one thing, initial value, parameters and next values alike, in an observation
    that ran the body; or if it is only passed on. What one run saw of a slot that
    changes (`i + 1`, a growing list) says nothing of the iterations another run makes:
    the first call may have left the loop at step 0."""
    init = passes.carried_inits(loop)[k]
    bodies = passes.yielding_regions(loop)
    params = [passes.carried_params(loop, r)[k] for r in loop.regions]
    if all(body.yields[k] in params for body in bodies):
        return True  # passed on unchanged: it is the initial value in every iteration
    descriptions: set = set(seen.get(init.id, ()))
    for v in params + [body.yields[k] for body in bodies]:
        if v.id not in seen:
            return False  # not observed: the body did not run, or not to the end
        descriptions |= seen[v.id]
    return len(descriptions) == 1


def facts(fn: Function, seen: dict[int, set]) -> dict[int, tuple]:
    """What each value is, for every call with the same signature (where that is known)."""
    status = statuses(fn, seen)
    return {
        vid: next(iter(d))
        for vid, d in seen.items()
        if len(d) == 1 and status.get(vid, FREE) <= SHAPED
        and (next(iter(d))[0] not in ("int", "bool", "tuple") or status.get(vid) == CONST)
    }  # fmt: skip


def shape_of(v: Value, known: dict) -> tuple | None:
    """The shape of `v` (() for a scalar), if known."""
    d = known.get(v.id)
    if d is None or d[0] == "object":
        return None
    if d[0] == "array":
        return d[1]
    if d[0] == "tuple":
        return None  # a tuple is not an array here
    return ()


def value_of(v: Value, known: dict):
    if v.is_const:
        return v.const
    d = known.get(v.id)
    return d[1] if d is not None and d[0] in ("tuple", "int") else None


def range_length(loop: Node, known: dict) -> int | None:
    """`n` if `loop` is a `for` over `range(n)` (from 0, step 1) with `n` a known positive
    int: it then runs its body, with index `t`, for every `t` in `0..n-1`."""
    start, stop, step = (value_of(v, known) for v in loop.inputs[:3])
    if start == 0 and step == 1 and type(stop) is int and stop > 0:
        return stop
    return None


def float_array(fact) -> bool:
    return fact is not None and fact[0] == "array" and fact[2] == np.dtype(np.float64).str


def float64_scalar(fact) -> bool:
    """True for a Python float, a NumPy float64 and a 0-d float64 array: an output that
    the constant seed 1.0 is right for (adcompiler.ops.guards.check_seed)."""
    f64 = np.dtype(np.float64)
    return fact is not None and (fact == ("float",) or fact == ("scalar", "float64") or (
        fact[0] == "array" and fact[1] == () and fact[2] == f64.str))  # fmt: skip
