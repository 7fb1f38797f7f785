"""Specialization of a generated function on the shapes and dtypes of its arguments.

Generic generated code cannot know whether `x + b` broadcast, so the adjoint sums
`unbroadcast(g, np.shape(x))` at run time, and a scalar's adjoint is spread with
`np.broadcast_to`. Once the arguments' shapes and dtypes are known, most of those
disappear: `unbroadcast(g, np.shape(x))` is `g` when the shapes agree and a plain
`np.sum(g, axis=0)` when they do not; a broadcast that a product makes anyway
goes too.

Two facts about each value make that safe:

- its *status*, found statically on the IR: CONST (the value itself is fixed by
  the arguments' shapes, like `np.shape(x)` or `x.shape[0] * 2`), SHAPED (its
  shape and dtype are fixed by them, like `x @ w`), or FREE (its shape may depend
  on the data: a boolean mask, a list grown in a `while` loop, a branch taken on
  the data, the result of a recursive helper);
- what it *was* in one run of the generic code with probes (`observe`): its
  shape, dtype or, for shape tuples and integers, its value. A value seen with
  two different shapes (a carried value that grows) counts as FREE.

A rewrite uses a value's observation only if its status makes it hold for every
call with arguments of the same shapes and dtypes; `Specializing` (in api.py)
keys the generated versions on exactly that.

    %s = shape(%x)                               (%x, %g seen with shape (32, 10))
    %gx = unbroadcast(%g, %s)       ──▶          uses of %gx read %g
"""

from __future__ import annotations

import ast
import functools
import os
from typing import Any

import numpy as np

from adcompiler import passes
from adcompiler.ops.core import Op, Param, lookup, register
from adcompiler.ops.structure import Dyn
from adcompiler.ssa import REUSE, Block, Function, Node, Value, clone, walk

CONST, SHAPED, FREE = 0, 1, 2


def enabled() -> bool:
    """Specialization is on unless ADCOMPILER_SPECIALIZE=0 (or ADCOMPILER_OPTIMIZE=0)."""
    return os.environ.get("ADCOMPILER_SPECIALIZE", "1") != "0" and passes.optimizing()


_ND = np.ndarray


def signature(args: tuple, kwargs: dict) -> tuple:
    """What the generated versions are keyed on: each argument's type, and an array's
    shape and dtype."""
    key = [(a.shape, a.dtype) if type(a) is _ND else type(a) for a in args]
    if kwargs:
        key.extend((k, (v.shape, v.dtype) if type(v) is _ND else type(v))
                   for k, v in sorted(kwargs.items()))  # fmt: skip
    return tuple(key)


# ---------------------------------------------------------------------------
# Observation: the generic code run once with a probe after every value
# ---------------------------------------------------------------------------

_record: dict[int, set] | None = None


def probe(value, key):
    """Record what `value` is (generated code of `observe` calls this)."""
    if _record is not None:
        _record.setdefault(key, set()).add(_describe(value))


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
    global _record
    probed = clone(fn)
    lazy = _lazy_values(probed)
    _add_probes(probed.body, top=True, params=probed.params, lazy=lazy)
    seen: dict[int, set] = {}
    previous, _record = _record, seen
    try:
        result = run(probed)
    finally:
        _record = previous
    return result, seen


def _add_probes(block: Block, top: bool = False, params: list[Value] | None = None,
                lazy: frozenset = frozenset()) -> None:  # fmt: skip
    out: list[Node] = [_probe(p) for p in (params if top else block.params)]
    for node in block.nodes:
        if node.op.name == "print":
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
    stack = [n.inputs[1] for n in walk(fn.body) if n.op.name in ("and", "or")]
    while stack:
        v = stack.pop()
        if v.id not in lazy and v.id in defs:
            lazy.add(v.id)
            stack.extend(defs[v.id].inputs)
    return frozenset(lazy)


def _probe(v: Value) -> Node:
    return Node(PROBE, [v], {"key": v.id}, outputs=[])


# ---------------------------------------------------------------------------
# Status: which observations hold for every call with the same signature
# ---------------------------------------------------------------------------

# Inputs whose *value* sets the output's shape: they must be CONST.
SIZE_INPUTS = {"shape", "N", "rest", "start", "stop", "step", "n"}
LISTS = {"list", "list_append", "array_list", "stack_list", "sum_list", "unstack", "spread"}
CALLS = {"call", "call_forward", "call_adjoint", "call_jvp"}
SHAPE_ONLY = {"shape", "size", "ndim", "dtype"}
INDEXING = {"getitem", "unindex", "setitem", "index_add"}


def statuses(fn: Function, seen: dict[int, set]) -> dict[int, int]:
    """The status of every value of `fn` (see the module docstring)."""
    status: dict[int, int] = {}
    for p in fn.params:
        kinds = {d[0] for d in seen.get(p.id, ())}
        status[p.id] = SHAPED if kinds <= {"array", "scalar", "float", "int", "bool"} else FREE
    tapes: dict[int, int] = {}
    while True:  # statuses only grow: a few rounds reach the fixed point
        before = (dict(status), dict(tapes))
        _status_block(fn.body, status, seen, tapes)
        if (status, tapes) == before:
            return status


def _status_block(block: Block, status: dict, seen: dict, tapes: dict) -> None:
    for node in block.nodes:
        if node.regions:
            _status_region(node, status, seen, tapes)
            continue
        name = node.op.name
        ins = [status.get(v.id, FREE) for v in node.inputs]
        if name in ("tape_set", "tape_append"):
            tape = node.inputs[0].id
            tapes[tape] = max(tapes.get(tape, CONST), ins[-1])
            continue
        if name == "tape_get":
            out = tapes.get(node.inputs[0].id, CONST)
        elif name in ("tape_new", "tape_list") or name in LISTS or name in CALLS:
            out = FREE
        elif name == "const":
            out = CONST
        elif name in SHAPE_ONLY:
            out = CONST if ins[0] <= SHAPED else FREE
        elif name == "len":
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


def _shape_blind(node: Node, ins: list[int], seen: dict) -> bool:
    """True if the output's shape does not depend on the values of the non-CONST inputs."""
    name = node.op.name
    params = _input_names(node)
    if name in INDEXING:
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
    name = node.op.name
    if name in ("setitem", "index_add"):
        return True  # the output is the input array, written into
    first = 2 if name == "unindex" else 1
    if name == "unindex" and ins[1] != CONST:
        return False
    items, _ = node.attrs["index"]
    bare = {p.k for p in items if isinstance(p, Dyn)}
    for k, v in enumerate(node.inputs[first:]):
        if ins[first + k] == CONST:
            continue
        if k not in bare:
            return False  # a slice bound
        if any(d[0] == "array" and d[2] == "|b1" for d in seen.get(v.id, ())):
            return name == "unindex"  # a mask: the shape of x[mask] depends on the data
    return True


def _status_region(node: Node, status: dict, seen: dict, tapes: dict) -> None:
    name = node.op.name
    if name == "if":
        cond = status.get(node.inputs[0].id, FREE)
        for region in node.regions:
            _status_block(region, status, seen, tapes)
        for k, out in enumerate(node.outputs):
            yields = max(status.get(r.yields[k].id, FREE) for r in node.regions)
            status[out.id] = max(status.get(out.id, CONST), yields, FREE if cond else CONST)
        return
    inits = passes.carried_inits(node)
    if name == "for":
        for region in node.regions:
            status[region.params[0].id] = max(
                status.get(region.params[0].id, CONST),
                max(status.get(v.id, FREE) for v in node.inputs[:3]), SHAPED,
            )  # fmt: skip
    for _ in range(4):
        for region in node.regions:
            for k, p in enumerate(passes.carried_params(node, region)):
                s = status.get(inits[k].id, FREE)
                for body in passes.yielding_regions(node):
                    s = max(s, status.get(body.yields[k].id, CONST))
                if len(seen.get(p.id, ())) > 1:
                    s = FREE  # seen with two shapes: it changes from one iteration to the next
                status[p.id] = max(status.get(p.id, CONST), s)
            _status_block(region, status, seen, tapes)
    for k, out in enumerate(node.outputs):
        params = passes.carried_params(node, passes.yielding_regions(node)[0])
        status[out.id] = max(status.get(out.id, CONST), status.get(params[k].id, FREE))


def facts(fn: Function, seen: dict[int, set]) -> dict[int, tuple]:
    """What each value is, for every call with the same signature (where that is known)."""
    status = statuses(fn, seen)
    return {
        vid: next(iter(d))
        for vid, d in seen.items()
        if len(d) == 1 and status.get(vid, FREE) <= SHAPED
        and (next(iter(d))[0] not in ("int", "bool", "tuple") or status.get(vid) == CONST)
    }  # fmt: skip


# ---------------------------------------------------------------------------
# Rewrites
# ---------------------------------------------------------------------------


def specialize(fn: Function, known: dict[int, tuple]) -> Function:
    """A copy of `fn` without the shape work that `known` settles."""
    out = clone(fn)
    defs = {v.id: n for n in walk(out.body) for v in n.outputs}
    replace: dict[int, Value] = {}
    for block in _blocks(out.body):
        nodes: list[Node] = []
        for node in block.nodes:
            node.inputs = [replace.get(v.id, v) for v in node.inputs]
            nodes.extend(_rewrite(node, known, defs, replace))
        block.nodes = nodes
    passes.substitute(out, replace)
    out = passes.dce(out)  # readers that are dead would keep broadcasts below alive
    _drop_broadcasts(out, known, {v.id: n for n in walk(out.body) for v in n.outputs})
    _push_sums(out, known)
    out = passes.dce(out)
    _mark_reuse(out, known)
    return out


def _blocks(block: Block):
    yield block
    for node in block.nodes:
        for region in node.regions:
            yield from _blocks(region)


def _shape(v: Value, known: dict) -> tuple | None:
    """The shape of `v` (() for a scalar), if known."""
    d = known.get(v.id)
    if d is None or d[0] == "object":
        return None
    if d[0] == "array":
        return d[1]
    if d[0] == "tuple":
        return None  # a tuple is not an array here
    return ()


def _value(v: Value, known: dict):
    if v.is_const:
        return v.const
    d = known.get(v.id)
    return d[1] if d is not None and d[0] in ("tuple", "int") else None


def _rewrite(node: Node, known: dict, defs: dict, replace: dict) -> list[Node]:
    name = node.op.name
    if name == "check_float" and all(v.id in known for v in node.inputs):
        return []  # the arguments' dtypes are the signature's: checked once, in the probe
    if name == "check_scalar" and _shape(node.inputs[0], known) == ():
        return []
    if name == "size" and _value(node.output, known) is not None:  # np.size(g) in mean's adjoint
        return [_const_node(_value(node.output, known), node, replace)]
    if name in ("shape", "broadcast_shapes") and _derived(node) and isinstance(
            _value(node.output, known), tuple):  # fmt: skip
        # a shape the derivative needs: the value it is taken of may not be needed at all
        return [_const_node(_value(node.output, known), node, replace)]
    if name in ("index_add", "unindex"):  # integers settled by the shapes, as literals:
        first = 2  # (x, g, *dyn) or (g, shape, *dyn); `x[:, 16:24] += g` needs no add_at
        consts = []
        for v in node.inputs[first:]:
            value = _value(v, known)
            consts.append(_const_node(value, node, {}) if type(value) is int else None)
        node.inputs[first:] = [c.output if c else v for c, v in zip(consts, node.inputs[first:])]
        return [c for c in consts if c] + [node]
    if name in ("matmul_lhs_adjoint", "matmul_rhs_adjoint"):
        return _matmul_adjoint(node, known) or [node]
    if name == "tape_get" and _value(node.output, known) is not None:
        # a shape or an index that is the same in every iteration: no need to save it
        return [_const_node(_value(node.output, known), node, replace)]
    if name not in ("unbroadcast", "broadcast_to"):
        return [node]
    x, target = node.inputs
    shape, want = _shape(x, known), _value(target, known)
    if shape is None or not isinstance(want, tuple):
        return [node]
    array = known.get(x.id, ("",))[0] == "array"
    if shape == want and (array or name == "unbroadcast"):  # (broadcast_to makes an array)
        producer = defs.get(x.id)
        if producer is not None and x.role == "adjoint_temp" and node.output.role == "adjoint":
            # `p = g * y; y_bar = unbroadcast(p, ...)` becomes `y_bar = g * y`: the
            # producer takes the adjoint's name
            producer.outputs = [node.output if o is x else o for o in producer.outputs]
            replace[x.id] = node.output
            defs[node.output.id] = producer
        else:
            replace[node.output.id] = replace.get(x.id, x)
        return []
    if name == "broadcast_to" or not array:
        return [node]
    extra = len(shape) - len(want)
    if extra < 0:
        return [node]
    kept = tuple(extra + i for i, n in enumerate(want) if n == 1 and shape[extra + i] != 1)
    total = _sum_node(x, tuple(range(extra)) + kept, bool(kept), node)
    nodes = [total]
    if kept and extra:
        reshaped = Node(lookup(np.reshape), [total.output, target], {}, loc=node.loc)
        reshaped.outputs = [node.output]
        nodes.append(reshaped)
    else:
        total.outputs = [node.output]
    return nodes


def _derived(node: Node) -> bool:
    """True for a node the transforms made (an adjoint's or a tangent's), not the user."""
    return node.output.role not in ("primal", "temp")


def _matmul_adjoint(node: Node, known: dict) -> list[Node] | None:
    """The adjoints of a 2-D `a @ b` written out: `g @ b.T` and `a.T @ g` (what the
    run-time helper does after looking at the dimensions, which are known here)."""
    g, a, b = node.inputs
    dims = [len(known[v.id][1]) if _float_array(known.get(v.id)) else None for v in (g, a, b)]
    if node.op.name == "matmul_lhs_adjoint" and dims == [2, 2, 2]:
        left, right = g, b  # g @ b.T
    elif node.op.name == "matmul_rhs_adjoint" and dims[1] == 2 and dims[0] == dims[2]:
        left, right = a, g  # a.T @ g
    else:
        return None
    flip = Node(lookup(np.transpose), [right if left is g else left], {"axes": None},
                loc=node.loc)  # fmt: skip
    flip.outputs[0].role = "adjoint_temp"
    first, second = (left, flip.output) if left is g else (flip.output, right)
    product = Node(lookup(np.matmul), [first, second], {}, [node.output], loc=node.loc)
    return [flip, product]


def _const_node(value, at: Node, replace: dict) -> Node:
    out = Value(at.output.hint, role=at.output.role, loc=at.loc)
    out.const = value
    replace[at.output.id] = out
    return Node(lookup_const(), [], {"value": value}, [out], loc=at.loc)


def lookup_const() -> Op:
    from adcompiler.ops.structure import CONST as const_op

    return const_op


def _sum_node(x: Value, axes: tuple, keepdims: bool, at: Node) -> Node:
    axis = axes[0] if len(axes) == 1 else axes
    return Node(lookup(np.sum), [x], {"axis": axis, "keepdims": keepdims}, loc=at.loc)


_ELEMENTWISE_BINARY = {"multiply", "add", "subtract", "divide"}


def _drop_broadcasts(fn: Function, known: dict, defs: dict) -> None:
    """`broadcast_to(s, shape) * y` is `s * y` when `y` is a float64 array of that shape
    already (so the product has that shape and dtype either way); done where every
    reader of the broadcast is such an operation.

        %b = broadcast_to(%s, (n, k))            %p = mul(%s, %y)
        %p = mul(%b, %y)                ──▶      %q = add(%z, %s)
        %q = add(%z, %b)
    """
    readers = passes.readers(fn)
    kept = passes.yielded(fn)
    for vid, producer in defs.items():
        if producer.op.name != "broadcast_to" or vid in kept or vid not in readers:
            continue
        want = _value(producer.inputs[1], known)
        if not want or not all(_product_of_shape(node, i, want, known)
                               for node, i in readers[vid]):  # fmt: skip
            continue
        for node, i in readers[vid]:
            node.inputs[i] = producer.inputs[0]


def _product_of_shape(node: Node, i: int, want: tuple, known: dict) -> bool:
    """True if `node` is elementwise arithmetic whose other operand is a float64 array
    of shape `want`."""
    if node.op.name not in _ELEMENTWISE_BINARY or len(node.inputs) != 2:
        return False
    d = known.get(node.inputs[1 - i].id, ("",))
    return d[0] == "array" and d[1] == want and d[2] == np.dtype(np.float64).str


# ---------------------------------------------------------------------------
# Sums moved ahead of linear steps
# ---------------------------------------------------------------------------
#
# The adjoint of a broadcast is a sum, and it often sums a linear function of a big
# array: `np.sum(g @ B.T + g * c, axis=1, keepdims=True)` where `c` is constant along
# axis 1. Summing first is cheaper and makes no big temporary:
# `np.sum(g, axis=1, keepdims=True) @ B.T + np.sum(g, axis=1, keepdims=True) * c`
# (the two sums are one after CSE). A sum of a product of two arrays of one shape is
# an `np.einsum`, which makes no temporary for the product.


def _push_sums(fn: Function, known: dict) -> None:
    uses = passes.uses(fn)
    defs = {v.id: n for n in walk(fn.body) for v in n.outputs}
    for block in _blocks(fn.body):
        nodes: list[Node] = []
        for node in block.nodes:
            nodes.extend(_pushed(node, known, uses, defs) or [node])
        block.nodes = nodes
    passes.cse(fn)


def _pushed(node: Node, known: dict, uses: dict, defs: dict) -> list[Node] | None:
    """Nodes computing `node` (a sum) with the sum moved inwards, or None."""
    if node.op.name != "sum" or len(node.inputs) != 1:
        return None
    x = node.inputs[0]
    fact, result = known.get(x.id), known.get(node.output.id)
    if not _float_array(fact) or result is None or uses.get(x.id) != 1:
        return None
    ndim = len(fact[1])
    axis = node.attrs.get("axis")
    axes = tuple(range(ndim)) if axis is None else (axis,) if isinstance(axis, int) else axis
    axes = tuple(sorted(a % ndim for a in axes))
    keepdims = bool(node.attrs.get("keepdims"))
    built: list[Node] = []
    v = _sum_of(x, axes, keepdims, built, known, uses, defs, node, top=True)
    if v is None or not any(n.op.name in ("einsum", "matmul", "multiply") for n in built):
        return None  # only sums split over a sum: no gain
    built[-1].outputs = [node.output]  # the last node makes the sum's value (and name)
    return built


def _sum_of(x, axes, keepdims, built, known, uses, defs, at, top=False):
    """A value equal to `np.sum(x, axis=axes, keepdims=keepdims)`, made by nodes appended
    to `built`; None (at the top) if nothing is gained."""
    fact = known.get(x.id)
    p = defs.get(x.id)
    single = top or uses.get(x.id) == 1
    name = p.op.name if p is not None and single and _float_array(fact) else ""
    shape = fact[1] if fact else None

    def full(v):
        return _float_array(known.get(v.id)) and known[v.id][1] == shape

    def emit(op_fn, inputs, attrs=None):
        n = Node(lookup(op_fn), inputs, {**lookup(op_fn).attr_defaults(), **(attrs or {})},
                 loc=at.loc)  # fmt: skip
        role = at.output.role  # intermediate values are temporaries of that role
        n.outputs[0].hint = f"{n.op.name}_{inputs[0].hint}" if inputs[0].hint else n.op.name
        n.outputs[0].role = role if role.endswith("temp") else (
            "temp" if role == "primal" else f"{role}_temp")  # fmt: skip
        built.append(n)
        return n.output

    if name in ("add", "subtract") and all(full(v) for v in p.inputs):
        a = _sum_of(p.inputs[0], axes, keepdims, built, known, uses, defs, at)
        b = _sum_of(p.inputs[1], axes, keepdims, built, known, uses, defs, at)
        return emit(np.add if name == "add" else np.subtract, [a, b])
    if name == "negative" and full(p.inputs[0]):
        return emit(np.negative, [_sum_of(p.inputs[0], axes, keepdims, built, known, uses,
                                          defs, at)])  # fmt: skip
    if name == "multiply" and keepdims:
        for i in (0, 1):
            a, c = p.inputs[i], p.inputs[1 - i]
            if full(a) and _constant_along(known.get(c.id), axes, len(shape)):
                s = _sum_of(a, axes, keepdims, built, known, uses, defs, at)
                return emit(np.multiply, [s, c] if i == 0 else [c, s])
    if name == "multiply" and all(full(v) for v in p.inputs):
        letters = "abcdefghij"[: len(shape)]
        kept = "".join(ch for k, ch in enumerate(letters) if k not in axes)
        v = emit(np.einsum, list(p.inputs), {"subscripts": f"{letters},{letters}->{kept}"})
        if keepdims:
            target = tuple(1 if k in axes else n for k, n in enumerate(shape))
            v = emit(np.reshape, [v, _const(target, built, at)])
        return v
    if name == "matmul_lhs_adjoint" and keepdims and axes == (len(shape) - 2,):
        g, a, b = p.inputs
        fb = known.get(b.id)
        if full(g) and full(a) and _float_array(fb) and len(fb[1]) == len(shape) >= 3:
            s = _sum_of(g, axes, keepdims, built, known, uses, defs, at)
            bt = emit(np.swapaxes, [b], {"axis1": -1, "axis2": -2})
            return emit(np.matmul, [s, bt])
    if top:
        return None
    return emit(np.sum, [x], {"axis": axes[0] if len(axes) == 1 else axes,
                              "keepdims": keepdims})  # fmt: skip


def _float_array(fact) -> bool:
    return fact is not None and fact[0] == "array" and fact[2] == np.dtype(np.float64).str


def _constant_along(fact, axes: tuple, ndim: int) -> bool:
    """True for a scalar, or an array of `ndim` dimensions of size 1 along `axes`."""
    if fact is None or fact[0] in ("object", "tuple"):
        return False
    if fact[0] != "array" or fact[1] == ():
        return True
    return len(fact[1]) == ndim and all(fact[1][k] == 1 for k in axes)


def _const(value, built: list, at: Node) -> Value:
    out = Value("const", loc=at.loc)
    out.const = value
    built.append(Node(lookup_const(), [], {"value": value}, [out], loc=at.loc))
    return out


# Operators whose result is always a new array (never one of their inputs, or a view
# of one: np.einsum("ii->i", x) is a view of x, so einsum is not here).
_FRESH = {
    "matmul", "dot", "outer", "sum", "mean", "where", "clip", "zeros", "ones", "unindex",
    "matmul_lhs_adjoint", "matmul_rhs_adjoint", "dot_lhs_adjoint", "dot_rhs_adjoint",
    "max_adjoint", "prod_adjoint", "norm_adjoint",
}  # fmt: skip
_IN_PLACE = {"add": (0, 1), "multiply": (0, 1), "subtract": (0,), "divide": (0, 1)}


def _unary_ufunc(op: Op) -> bool:
    """`np.tanh` and the like: callable as ``np.<name>(x, out=x)``."""
    impl = op.impl
    return (
        op.same_shape and isinstance(impl, np.ufunc) and impl.nin == 1
        and getattr(np, impl.__name__, None) is impl
    )  # fmt: skip


def _mark_reuse(fn: Function, known: dict) -> None:
    """Mark `a * b` (and +, -, /) and `np.tanh(a)` (and other unary ufuncs) whose result
    has the shape and dtype of `a`, where `a` is an array computed here: the code
    generator may then write `a *= b`, `np.tanh(a, out=a)` if nothing reads `a`
    afterwards (ssa.REUSE)."""
    defs = {v.id: n for n in walk(fn.body) for v in n.outputs}
    for node in walk(fn.body):
        if node.op.name in _IN_PLACE and len(node.inputs) == 2:
            sides = _IN_PLACE[node.op.name]
        elif _unary_ufunc(node.op) and len(node.inputs) == 1:
            sides = (0,)
        else:
            continue
        result = known.get(node.output.id)
        if result is None or result[0] != "array" or result[1] == ():
            continue
        free = tuple(
            i for i in sides
            if known.get(node.inputs[i].id) == result
            and (producer := defs.get(node.inputs[i].id)) is not None
            and (isinstance(producer.op.impl, np.ufunc) or producer.op.name in _FRESH)
        )  # fmt: skip
        if free:
            REUSE[node] = free


# ---------------------------------------------------------------------------
# The function users call
# ---------------------------------------------------------------------------


class Specializing:
    """A generated function that, from the second call with arguments of one signature
    (types, shapes, dtypes), runs a version of itself specialized on that signature.

    The first call runs the generic code; the second observes it once more with
    probes and compiles the specialized version, which every later call with that
    signature runs. Attributes (the IR, for transforms of this function) are the
    generic version's; `ad.source` shows the version that ran last.
    """

    def __init__(self, generic, build):
        functools.update_wrapper(self, generic)
        self.generic = generic
        self._build = build  # (ir, note for the docstring, extra globals) -> function
        self.versions: dict = {}
        self.once: set = set()
        self.latest = generic

    def __call__(self, *args, **kwargs):
        key = signature(args, kwargs)
        g = self.versions.get(key)
        if g is None:
            if key in self.once:
                g = self.versions[key] = self.specialized(args, kwargs)
            else:
                self.once.add(key)
                g = self.generic
        self.latest = g
        return g(*args, **kwargs)

    def specialized(self, args: tuple, kwargs: dict):
        """The version of this function for arguments like `args`, `kwargs` (made from the
        version with helpers inlined, where the generic one calls generated helper
        functions: what flows through a call is not known to the rewrites)."""
        source = self.generic
        rebuild = getattr(source, "__adcompiler_rebuild_inline__", None)
        if rebuild is not None:
            try:
                source = rebuild()
            except Exception:  # noqa: BLE001 - the generic version stays in charge
                return self.generic
        fn = _generic_ir(source)
        if fn is None:
            return self.generic
        try:
            _, seen = observe(
                fn, lambda probed: self._build(probed, None, {"probe": probe})(*args, **kwargs)
            )
        except Exception:  # noqa: BLE001 - the generic version stays in charge
            return self.generic
        known = facts(fn, seen)
        special = specialize(fn, known)
        return self._build(special, _describe_signature(fn, args, kwargs))

    @property
    def __adcompiler_source__(self) -> str:
        return self.latest.__adcompiler_source__

    @property
    def __adcompiler_emitted__(self):
        return self.latest.__adcompiler_emitted__

    @property
    def __code__(self):
        return self.latest.__code__

    @property
    def __globals__(self):
        return self.generic.__globals__

    @property
    def __defaults__(self):
        return self.generic.__defaults__

    @property
    def __kwdefaults__(self):
        return self.generic.__kwdefaults__


def _generic_ir(g):
    fn = getattr(g, "__adcompiler_ir__", None)
    if fn is None and hasattr(g, "__adcompiler_rebuild__"):
        fn = g.__adcompiler_ir__ = g.__adcompiler_rebuild__().__adcompiler_ir__
    return fn


def _describe_signature(fn: Function, args: tuple, kwargs: dict) -> str:
    """`W: (784, 128) float64, b: float`: what a specialized version is for."""
    from adcompiler.codegen.naming import base_name

    names = [base_name(p) for p in fn.params]
    items = list(zip(names, args)) + sorted(kwargs.items())
    parts = [
        f"{n}: {a.shape} {a.dtype}" if isinstance(a, np.ndarray) else f"{n}: {type(a).__name__}"
        for n, a in items
    ]
    return "Specialized for " + ", ".join(parts) + "."
