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

import numpy as np

from adcompiler.ops.calls import CALL_BWD, CALL_FWD
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
from adcompiler.ops.numpy_ops import (
    ADD,
    BROADCAST_TO,
    DIVIDE,
    EXP,
    LOG,
    MAX,
    MULTIPLY,
    NEGATIVE,
    SUBTRACT,
    SUM,
    TRANSPOSE,
    UNBROADCAST,
)
from adcompiler.ops.structure import CONST, GETITEM, MAKE_TUPLE, SHAPE
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
        elif (not node.op.nondiff or node.op.carries) and any(v.id in out for v in node.inputs):
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
        for init, output in zip(inits, node.outputs):  # a loop may run zero times
            if init.id in out and output.id not in out:
                out.add(output.id)
                changed = True
        if not changed:
            return


def varied_through_tapes(fn: Function, wrt: list[Value]) -> tuple[set[int], set[int]]:
    """Varied values (see `varied`), and the ids of the tapes among them.

    A tape varies if a varied value is written to it, and a value read back from a
    varied tape varies. Tapes are values like any other for the analysis, so that
    one held in another tape (nested loops) or passed out of a branch varies too.
    """
    ops = (TAPE_SET, TAPE_APPEND, TAPE_GET)
    uses = [n for n in walk(fn.body) if n.op in ops]
    # Tuples, and calls of a helper's generated functions, are not differentiable
    # operators, but carry tangents: their outputs vary with their inputs.
    carriers = [n for n in walk(fn.body) if n.op in (MAKE_TUPLE, CALL_FWD, CALL_BWD)]
    seeds = list(wrt)
    while True:
        found = varied(fn, seeds)
        new = [n.inputs[0] for n in uses if n.op is not TAPE_GET and n.inputs[-1].id in found]
        new += [n.output for n in uses if n.op is TAPE_GET and n.inputs[0].id in found]
        new += [n.output for n in carriers if any(v.id in found for v in n.inputs)]
        new = [v for v in new if v.id not in found]
        if not new:
            tapes = {n.inputs[0].id for n in uses if n.inputs[0].id in found}
            tapes |= {n.output.id for n in walk(fn.body) if n.op in (TAPE_NEW, TAPE_LIST)} & found
            return found, tapes
        seeds += new


def yielding_regions(node: Node) -> list[Block]:
    """The regions whose yields become the node's outputs (not a `while`'s condition)."""
    return node.regions[1:] if node.op is WHILE else node.regions


def carried_inits(node: Node) -> list[Value]:
    """The initial values of a loop's carried slots ([] for an `if`)."""
    if node.op is FOR:
        return node.inputs[3:]
    if node.op is WHILE:
        return node.inputs
    return []


def carried_params(node: Node, region: Block) -> list[Value]:
    """A region's parameters for the carried slots (a `for` body's index excluded)."""
    if node.op is FOR:
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
        if node.op is WHILE:
            out.update(v.id for v in node.regions[0].yields)
        for region in node.regions:
            params = carried_params(node, region)
            for k, y in enumerate(region.yields):
                if k < len(node.outputs) and node.outputs[k].id in out:
                    out.add(y.id)
                if node.op is not IF and k < len(params) and params[k].id in out:
                    out.add(y.id)
            _useful_block(region, out)
            for k, p in enumerate(params):
                if p.id in out:
                    if k < len(inits):
                        out.add(inits[k].id)
                    if k < len(node.outputs):
                        out.add(node.outputs[k].id)
        for init, output in zip(inits, node.outputs):  # a loop may run zero times
            if output.id in out:
                out.add(init.id)
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
        if node.op is SHAPE:
            cls[node.output.id] = SHAPE_CLASS
            continue
        if node.op is IF:  # classified after its regions, below
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
        if node.op is IF:  # an output shares the class its yields share
            for k, out in enumerate(node.outputs):
                yielded = {cls.get(r.yields[k].id, r.yields[k].id) for r in node.regions}
                cls[out.id] = yielded.pop() if len(yielded) == 1 else out.id
    return cls


def _makes_scalar(node: Node, cls: dict[int, int], scalar: int) -> bool:
    """True if `node` certainly produces a 0-d value (a Python or NumPy scalar)."""
    op = node.op
    if op is CONST:
        return isinstance(node.attrs.get("value"), (int, float))
    if op.scalar:
        return True
    if op.reduction:
        return node.attrs.get("axis") is None and not node.attrs.get("keepdims")
    if op is GETITEM and node.inputs and _is_shape(node.inputs[0], cls):
        return isinstance(node.attrs["index"][0][0], int) and node.attrs["index"][1]
    return False


def _is_shape(value: Value, cls: dict[int, int]) -> bool:
    return cls.get(value.id) == SHAPE_CLASS


SCALAR_CLASS = -1
SHAPE_CLASS = -2


def dce(fn: Function) -> Function:
    """Remove nodes whose outputs are never read; nodes with no outputs are effects: kept,
    except writes to a tape that nothing reads (once its reads are gone: again, until
    nothing changes)."""
    size = -1
    while size != (size := sum(1 for _ in walk(fn.body))):
        live = {v.id for v in fn.results}
        read = {  # a tape written to is not read by that; a tape saved on another tape is
            v.id for n in walk(fn.body)
            for v in (n.inputs[1:] if n.op in _TAPE_WRITES else n.inputs)
        } | {v.id for n in walk(fn.body) for r in n.regions for v in r.yields}  # fmt: skip
        dce_block(fn.body, live, read)
    return fn


_TAPE_WRITES = (TAPE_SET, TAPE_APPEND)


def dce_block(block: Block, live: set[int], read: set[int] | None = None) -> None:
    """`read`: values read other than by tape writes (writes to other tapes are dropped)."""
    live.update(v.id for v in block.yields)
    kept: list[Node] = []
    for node in reversed(block.nodes):
        if read is not None and node.op in _TAPE_WRITES and node.inputs[0].id not in read:
            continue
        if not has_effects(node) and not any(v.id in live for v in node.outputs):
            continue
        if node.regions:
            _dce_region_node(node, live, read)
        live.update(v.id for v in node.inputs)
        kept.append(node)
    block.nodes = kept[::-1]


def _dce_region_node(node: Node, live: set[int], read: set[int] | None = None) -> None:
    # Every slot of a kept if/for/while stays: its yields are read by the next
    # iteration or by the outputs. Only the nodes inside each region are pruned.
    for region in node.regions:
        inner = set(live)
        dce_block(region, inner, read)
        live.update(inner)


def has_effects(node: Node) -> bool:
    """True for a node with no outputs (print, assert, a tape write), one whose operator has
    an effect besides its result (a random draw), or one containing such."""
    if not node.outputs or node.op.effect:
        return True
    return any(has_effects(n) for region in node.regions for n in region.nodes)


def uses(fn: Function) -> dict[int, int]:
    """How many times each value is read by nodes and results (`read_counts` also counts
    the yields of regions)."""
    count: dict[int, int] = {}
    for node in walk(fn.body):
        for v in node.inputs:
            count[v.id] = count.get(v.id, 0) + 1
    for v in fn.results:
        count[v.id] = count.get(v.id, 0) + 1
    return count


# ---------------------------------------------------------------------------
# Common subexpressions and algebraic identities
# ---------------------------------------------------------------------------


def optimizing() -> bool:
    """False when ADCOMPILER_OPTIMIZE=0: no CSE, no simplification, no in-place writes
    of adjoints (to measure what the optimisations buy; see benchmarks/passes_effect.py)."""
    import os

    return os.environ.get("ADCOMPILER_OPTIMIZE", "1") != "0"


def cse(fn: Function, reads: bool = False) -> Function:
    """Compute each pure expression once: a node equal to an earlier one (same operator,
    same inputs, same attributes), in its block or an enclosing one, is dropped and its
    result replaced by the earlier one's.

        %a = mul(%x, %y)              %a = mul(%x, %y)
        %b = mul(%x, %y)     ──▶      %c = add(%a, %a)
        %c = add(%a, %b)

    `reads`: index reads (`x[:, d:]`) are merged too (specialized versions, where two
    reads of one slice would otherwise make two products in `x[:, d:] * x[:, d:]`'s
    adjoint).
    """
    replace: dict[int, Value] = {}
    _cse_block(fn.body, {}, replace, reads)
    fn.results = [replace.get(v.id, v) for v in fn.results]
    return fn


def _cse_block(block: Block, seen: dict, replace: dict[int, Value], reads: bool) -> None:
    seen = dict(seen)
    kept = []
    for node in block.nodes:
        node.inputs = [replace.get(v.id, v) for v in node.inputs]
        for region in node.regions:
            _cse_block(region, seen, replace, reads)
        key = _cse_key(node, reads)
        if key is not None:
            earlier = seen.get(key)
            if earlier is not None:
                for old, new in zip(node.outputs, earlier.outputs):
                    replace[old.id] = new
                continue
            seen[key] = node
        kept.append(node)
    block.nodes = kept
    block.yields = [replace.get(v.id, v) for v in block.yields]


def _cse_key(node: Node, reads: bool = False):
    # Cheap reads (shapes, constants, index reads) stay where they are written: merging
    # them would save nothing and cost the reader a name to look up.
    if node.regions or not node.outputs or node.op.unique or node.op.impl is None:
        return None
    if node.op.inline and not (reads and node.op is GETITEM):
        return None
    try:
        attrs = tuple(sorted((k, _hashable(v)) for k, v in node.attrs.items()))
        key = (id(node.op), tuple(v.id for v in node.inputs), attrs)
        hash(key)
        return key
    except TypeError:
        return None


def _hashable(value):
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, slice):
        return ("slice", value.start, value.stop, value.step)
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, (int, float, str, bool, type(None), type)):
        return (type(value).__name__, value)
    return ("id", id(value))


def _negate_after_summing(block: Block, defs: dict, uses: dict) -> None:
    """`u = unbroadcast(-g, s)` becomes `t = unbroadcast(g, s); u = -t`: the negation
    then runs on the summed (smaller) array, and `-g` is never made."""
    out: list[Node] = []
    for node in block.nodes:
        for region in node.regions:
            _negate_after_summing(region, defs, uses)
        inner = defs.get(node.inputs[0].id) if node.op is UNBROADCAST else None
        if inner is not None and inner.op is NEGATIVE and uses[inner.output.id] == 1:
            summed = Value(node.output.hint, role=node.output.role, loc=node.loc)
            negate = Node(inner.op, [summed], {}, [node.output], loc=node.loc)
            node.inputs[0], node.outputs = inner.inputs[0], [summed]
            out.extend([node, negate])
            continue
        out.append(node)
    block.nodes = out


def simplify(fn: Function) -> Function:
    """Algebraic identities the rules leave behind: `-(-x)` and `x.T.T` are `x`, and
    `unbroadcast(-g, s)` is `-unbroadcast(g, s)` (negate after summing, not before)."""
    replace: dict[int, Value] = {}
    defs = {v.id: n for n in walk(fn.body) for v in n.outputs}
    uses: dict[int, int] = {}
    for node in walk(fn.body):
        for v in node.inputs:
            uses[v.id] = uses.get(v.id, 0) + 1
    for node in walk(fn.body):
        node.inputs = [replace.get(v.id, v) for v in node.inputs]

        if node.op in (NEGATIVE, TRANSPOSE) and node.inputs:
            inner = defs.get(node.inputs[0].id)
            same = node.op is NEGATIVE or (
                node.attrs.get("axes") is None and inner is not None
                and inner.attrs.get("axes") is None
            )  # fmt: skip
            if inner is not None and inner.op is node.op and same:
                replace[node.output.id] = replace.get(inner.inputs[0].id, inner.inputs[0])
    substitute(fn, replace)
    _cancel_negations(fn)
    _sigmoid_adjoints(fn)
    _negate_after_summing(fn.body, defs, uses)
    return fn


def _sigmoid_adjoints(fn: Function) -> None:
    """`g * s * s * e` where `s = 1 / (1 + e)` is `g * s * (1 - s)`: the adjoint of a
    sigmoid written `1 / (1 + np.exp(-z))` then reads only `s`, so `exp(-z)` need not be
    kept (a loop no longer saves it), as a gradient written by hand does it."""
    defs = {v.id: n for n in walk(fn.body) for v in n.outputs}
    uses = read_counts(fn)

    def made(v: Value, op) -> Node | None:
        node = defs.get(v.id)
        return node if node is not None and node.op is op else None

    def one(v: Value) -> bool:
        return v.is_const and type(v.const) in (int, float) and v.const == 1

    written: dict[int, list[Value]] = {}  # tape → the values written to it
    for node in walk(fn.body):
        if node.op in _TAPE_WRITES:
            written.setdefault(node.inputs[0].id, []).append(node.inputs[-1])

    def saved(v: Value) -> Value:
        """What `v` is a read of: the one value written to the tape it is read from."""
        read = made(v, TAPE_GET)
        values = written.get(read.inputs[0].id, []) if read is not None else []
        return values[0] if len(values) == 1 else v

    def sigmoid_of(s: Value, e: Value) -> bool:
        """True if `s = 1 / (1 + e)` (directly, or as what a loop saved of them, read
        back at one index)."""
        reads = [made(v, TAPE_GET) for v in (s, e)]
        if any(reads) and not (all(reads) and reads[0].inputs[1] is reads[1].inputs[1]):
            return False
        s, e = saved(s), saved(e)
        q = made(s, DIVIDE)
        total = made(q.inputs[1], ADD) if q is not None and one(q.inputs[0]) else None
        if total is None or e not in total.inputs:
            return False
        return one(total.inputs[1] if total.inputs[0] is e else total.inputs[0])

    for block in blocks(fn.body):
        nodes: list[Node] = []
        for node in block.nodes:
            nodes.append(node)
            if node.op is not MULTIPLY or len(node.inputs) != 2:
                continue
            for x, e in (node.inputs, node.inputs[::-1]):
                outer = made(x, MULTIPLY) if uses.get(x.id) == 1 else None
                if outer is None:
                    continue
                for inner_v, s in (outer.inputs, outer.inputs[::-1]):
                    inner = made(inner_v, MULTIPLY) if uses.get(inner_v.id) == 1 else None
                    if inner is None or s not in inner.inputs:
                        continue
                    if not sigmoid_of(s, e):
                        continue
                    unit = constant(1.0, node.loc)
                    rest = Node(SUBTRACT, [unit.output, s], {}, loc=node.loc)
                    rest.output.role = "adjoint_temp"
                    rest.output.hint = "one_minus"
                    nodes[-1:-1] = [unit, rest]
                    node.inputs = [inner_v, rest.output]
                    break
                else:
                    continue
                break
        block.nodes = nodes


def constant(value, loc, hint: str = "const", role: str = "adjoint_temp") -> Node:
    """A `const` node whose output is the compile-time `value`."""
    out = Value(hint, role=role, loc=loc)
    out.const = value
    return Node(CONST, [], {"value": value}, [out], loc=loc)


def blocks(block: Block):
    """`block` and every block nested in it."""
    yield block
    for node in block.nodes:
        for region in node.regions:
            yield from blocks(region)


_THROUGH = (MULTIPLY, DIVIDE, UNBROADCAST)  # -(a * b) = (-a) * b, exactly


def _cancel_negations(fn: Function) -> None:
    """`-((-g) * a * b)` is `g * a * b`: a negation of a product (or quotient, or sum
    over broadcast axes) with a negated factor drops both signs, bit for bit. The
    sigmoid's adjoint, written `1 / (1 + exp(-z))`, has two. Without a negated factor,
    a constant factor takes the sign: `-(0.5 * g * a)` is `-0.5 * g * a`."""
    defs = {v.id: n for n in walk(fn.body) for v in n.outputs}
    uses = read_counts(fn)
    block_of = {id(n): b for b in blocks(fn.body) for n in b.nodes}
    replace: dict[int, Value] = {}
    for node in walk(fn.body):
        if node.op is not NEGATIVE or node.output.id in replace:
            continue
        found = _negated_factor(node.inputs[0], defs, uses, replace, depth=6)
        if found is None:
            continue
        reader, i = found
        w = reader.inputs[i]
        if w.is_const:
            flipped = constant(-w.const, reader.loc, w.hint, w.role)
            nodes = block_of[id(reader)].nodes
            nodes.insert(nodes.index(reader), flipped)
            reader.inputs[i] = flipped.output
        else:
            reader.inputs[i] = defs[w.id].inputs[0]
        replace[node.output.id] = node.inputs[0]
    substitute(fn, replace)


def read_counts(fn: Function) -> dict[int, int]:
    """How many times each value is read: by nodes, yields and results."""
    count = uses(fn)
    for v in (v for n in walk(fn.body) for r in n.regions for v in r.yields):
        count[v.id] = count.get(v.id, 0) + 1
    return count


def _negated_factor(v: Value, defs: dict, uses: dict, dropped: dict, depth: int):
    """`(reader, i)` where `reader.inputs[i]` is a negation read only there, found
    through single-use products from `v`; None if there is none. A negation in
    `dropped` has already given its sign away (to a constant factor, or to another
    negation): it is no longer one."""
    producer = defs.get(v.id)
    if depth == 0 or producer is None or producer.op not in _THROUGH:
        return None
    if uses.get(v.id) != 1:
        return None
    sides = (0,) if producer.op is UNBROADCAST else (0, 1)
    for i in sides:
        w = producer.inputs[i]
        inner = defs.get(w.id)
        if inner is not None and inner.op is NEGATIVE and uses.get(w.id) == 1:
            if w.id not in dropped:
                return producer, i
    for i in sides:
        found = _negated_factor(producer.inputs[i], defs, uses, dropped, depth - 1)
        if found is not None:
            return found
    for i in sides:  # a constant factor (not a divisor: -(a / 2) is a / -2 all the same)
        w = producer.inputs[i]
        if w.is_const and type(w.const) in (int, float) and producer.op is not UNBROADCAST:
            return producer, i
    return None


def fold_constants(fn: Function) -> Function:
    """Arithmetic on constants computed while compiling: `1.0 / 10000` is `0.0001` (the
    specialized adjoint of a mean, once the size is known)."""
    replace: dict[int, Value] = {}
    for block in blocks(fn.body):
        for k, node in enumerate(block.nodes):
            node.inputs = [replace.get(v.id, v) for v in node.inputs]
            if not node.op.foldable or node.attrs or len(node.outputs) != 1:
                continue
            if not node.inputs or not all(v.is_const for v in node.inputs):
                continue
            args = [v.const for v in node.inputs]
            if not all(type(a) in (int, float) for a in args):
                continue
            try:
                value = node.op.impl(*args)
            except (ArithmeticError, ValueError):
                continue
            if isinstance(value, np.number):
                value = value.item()
            if type(value) not in (int, float):
                continue
            block.nodes[k] = constant(value, node.loc, node.output.hint, node.output.role)
            replace[node.output.id] = block.nodes[k].output
    substitute(fn, replace)
    return fn


def substitute(fn: Function, replace: dict[int, Value]) -> None:
    """Read `replace[v.id]` wherever `fn` reads `v` (inputs, yields, results)."""
    for node in walk(fn.body):
        node.inputs = [replace.get(v.id, v) for v in node.inputs]
        for region in node.regions:
            region.yields = [replace.get(v.id, v) for v in region.yields]
    fn.body.yields = [replace.get(v.id, v) for v in fn.body.yields]
    fn.results = [replace.get(v.id, v) for v in fn.results]


def readers(fn: Function) -> dict[int, list[tuple[Node, int]]]:
    """Value id → the (node, input position) pairs that read it."""
    out: dict[int, list[tuple[Node, int]]] = {}
    for node in walk(fn.body):
        for i, v in enumerate(node.inputs):
            out.setdefault(v.id, []).append((node, i))
    return out


def yielded(fn: Function) -> set[int]:
    """Ids of the values that regions yield or the function returns (read by no node)."""
    out = {v.id for n in walk(fn.body) for r in n.regions for v in r.yields}
    return out | {v.id for v in fn.results} | {v.id for v in fn.body.yields}


def drop_broadcasts(fn: Function, fits=None, one_reader: bool = True) -> Function:
    """`broadcast_to(s, shape(v)) * y` is `s * y` when `y` has the shape of `v`: the
    product broadcasts anyway, so the broadcast view need not be made.

        %b = broadcast_to(%s, shape(%x))          %p = mul(%s, %x)
        %p = mul(%b, %x)                  ──▶

    `fits(node, i, target)` says whether elementwise `node`, whose input `i` is the
    broadcast to the shape `target`, makes that shape anyway; by default, when the
    other input has the shape class of the `v` in `shape(v)`. The broadcast goes where
    every reader fits (and, with `one_reader`, there is only one).
    """
    defs = {v.id: n for n in walk(fn.body) for v in n.outputs}
    if fits is None:
        classes = shape_classes(fn)

        def fits(node: Node, i: int, target: Value) -> bool:
            shape = defs.get(target.id)
            if shape is None or shape.op is not SHAPE:
                return False
            cls = classes.get(shape.inputs[0].id, -1)
            return cls >= 0 and classes.get(node.inputs[1 - i].id, -1) == cls

    reading, kept = readers(fn), yielded(fn)
    for vid, producer in defs.items():
        found = reading.get(vid, [])
        if producer.op is not BROADCAST_TO or vid in kept or not found:
            continue
        if one_reader and len(found) != 1:
            continue
        if all(
            node.op.augmented and len(node.inputs) == 2  # a + b, a - b, a * b, a / b
            and node.inputs[1 - i] is not node.inputs[i]  # `b + b`: no other operand
            and fits(node, i, producer.inputs[1])
            for node, i in found
        ):  # fmt: skip
            for node, i in found:
                node.inputs[i] = producer.inputs[0]
    return fn


# ---------------------------------------------------------------------------
# Maxima that only shift a logsumexp
# ---------------------------------------------------------------------------


def shift_invariant_maxes(fn: Function) -> set[int]:
    """Ids of `m = np.max(x, axis)` whose only use is to shift a logsumexp or a
    log-softmax of `x` along that axis, where its derivative is exactly zero:

        s = x - m;  log(sum(exp(s), axis)) + m      (logsumexp)
        s = x - m;  s - log(sum(exp(s), axis))      (log-softmax)

    Differentiating `m` anyway costs a mask, a count and a division that sum to
    zero; the transforms treat these maxima as constants (as ``ad.stop_gradient``)."""
    reading = readers(fn)
    escaped = yielded(fn)

    def only(v, op):
        rs = reading.get(v.id, []) if v.id not in escaped else []
        return rs[0][0] if len(rs) == 1 and rs[0][0].op is op else None

    out: set[int] = set()
    for node in walk(fn.body):
        if node.op is not MAX or len(node.inputs) != 1 or node.output.id in escaped:
            continue
        x, m = node.inputs[0], node.output
        axis, keepdims = node.attrs.get("axis"), node.attrs.get("keepdims")
        if not (keepdims or axis is None or axis == 0):
            continue  # x - m would not line m up with the axis it was taken along
        uses = reading.get(m.id, [])
        shifts = [n for n, i in uses if n.op is SUBTRACT and i == 1 and n.inputs[0] is x]
        adds = [n for n, _ in uses if n.op is ADD]
        if len(shifts) != 1 or len(shifts) + len(adds) != len(uses) or len(adds) > 1:
            continue
        s = shifts[0].output
        s_uses = [] if s.id in escaped else reading.get(s.id, [])
        exps = [n for n, _ in s_uses if n.op is EXP]
        total = only(exps[0].output, SUM) if len(exps) == 1 else None
        if total is None or total.attrs.get("axis") != axis:
            continue
        if not (total.attrs.get("keepdims") or axis is None or axis == 0):
            continue  # the sum would not line up with x either (a square x broadcasts it
            # across the other axis: not a log-softmax, and m's derivative is not zero)
        log = only(total.output, LOG)
        if log is None:
            continue
        last = only(log.output, ADD if adds else SUBTRACT)
        rest = [n for n, _ in s_uses if n is not exps[0]]
        if adds:
            pair = {v.id for v in adds[0].inputs}
            ok = last is adds[0] and not rest and pair == {log.output.id, m.id}
        else:
            ok = last is not None and rest == [last] and last.inputs[0] is s
        if ok:
            out.add(m.id)
    return out
