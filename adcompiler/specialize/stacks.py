"""Tapes as one array, and results written straight into their rows.

A tape is a list with a slot per iteration (`[None] * n`): each iteration's saved
value is an array of its own. Where every value a tape keeps is a float array of
one shape (SHAPED: the same for every call with the signature) and the loop that
writes it runs over `range(n)` and writes row `t` in iteration `t`, the tape is
one array, `np.empty((n, *shape))`, as a gradient written by hand keeps it, and:

- the operation that makes a saved value writes it into its row:
  `tanh_c = np.tanh(c, out=tanh_c_saved[t])`; where the value is the last of a
  chain computed in one buffer (`e = -z; np.exp(e, out=e)`), the chain starts in
  the row (`e = np.negative(z, out=e_saved[t])`), so the iteration makes no array
  for it at all;
- any other saved value (a view, a carried value) is copied into its row;
- `tape[t]` reads a view, and `np.vstack(tape)` (adcompiler.specialize.batch)
  is a reshape.

    h_saved = [None] * n                    h_saved = np.empty((n, 32, 32))
    for t in range(n):            ──▶       for t in range(n):
        h = o * tanh_c                          h = np.multiply(o, tanh_c, out=h_saved[t])
        h_saved[t] = h
"""

from __future__ import annotations

import numpy as np

from adcompiler import passes
from adcompiler.ops.control import (
    FOR,
    TAPE_APPEND,
    TAPE_CONCAT,
    TAPE_GET,
    TAPE_NEW,
    TAPE_SET,
    TAPE_STACK,
)
from adcompiler.ops.core import lookup
from adcompiler.ops.mutation import INDEX_ADD
from adcompiler.ops.numpy_ops import CONCATENATE, COPY
from adcompiler.ops.structure import GETITEM, UNINDEX, Dyn, getitem
from adcompiler.specialize.buffers import numpy_ufunc
from adcompiler.specialize.facts import float_array, range_length, value_of
from adcompiler.ssa import INTO, REUSE, Block, Function, Node, Value


def stack_tapes(fn: Function, known: dict) -> None:
    """Make, in place, every tape of `fn` that qualifies one array (see the module)."""
    tapes: dict[int, list] = {}  # tape id → [(node, block, enclosing for-node or None)]
    makers: dict[int, tuple[Node, Block]] = {}
    readers: dict[int, list[Node]] = {}
    _scan(fn.body, None, tapes, makers, readers)
    for v in fn.results:
        readers.setdefault(v.id, []).append(None)
    stacked: dict[int, tuple] = {}  # tape id → (stack node, block, entry, its writes)
    claimed: set[int] = set()  # values made in a row: any other tape copies them
    for tid, (maker, block) in makers.items():
        entry = _entry_shape(tid, maker, tapes.get(tid, []), known)
        if entry is None:
            continue
        whole = _rows_of_an_array(tapes[tid], entry, known, fn.params)
        if whole is not None:  # the tape keeps `A[t]` in row t: it is A
            block.nodes.remove(maker)
        else:
            stack = Node(TAPE_STACK, [maker.inputs[0]], {"shape": entry}, maker.outputs,
                         loc=maker.loc)  # fmt: skip
            block.nodes[block.nodes.index(maker)] = stack
            writes = [use for use in tapes[tid] if use[0].op is TAPE_SET]
            stacked[tid] = (stack, block, entry, writes)
        for node, body, _ in tapes[tid]:
            if whole is not None:
                if node.op is TAPE_SET:
                    body.nodes.remove(node)
                    continue
                node.inputs[0] = whole
            if node.op is TAPE_SET and node.inputs[2].id not in claimed:
                claimed.add(node.inputs[2].id)  # a value saved twice is made in one row
                _write_into_row(node, body, readers)
            elif node.op is TAPE_CONCAT:  # the rows, one after another: a view
                n = value_of(maker.inputs[0], known)
                rows = (n, *entry) if len(entry) == 1 else (n * entry[0], *entry[1:])
                const = passes.constant(rows, node.loc)
                reshape = Node(lookup(np.reshape), [node.inputs[0], const.output], {},
                               node.outputs, loc=node.loc)  # fmt: skip
                i = body.nodes.index(node)
                body.nodes[i : i + 1] = [const, reshape]
    _share_carried_rows(stacked)


def _share_carried_rows(stacked: dict) -> None:
    """A carried value saved at the start of each iteration (tape P) and its next value
    saved at the end (tape Y) are one array of n + 1 rows, as a hand-written RNN keeps
    its states: row 0 the initial value, `P = S[:n]`, `Y = S[1:]`; P's writes go (row
    t + 1 of S was written as Y's row t)."""
    by_value = {
        writes[0][0].inputs[2].id: tid for tid, (_, _, _, writes) in stacked.items()
        if len(writes) == 1
    }  # fmt: skip
    for tid, (stack, block, entry, writes) in list(stacked.items()):
        if len(writes) != 1:
            continue
        write, body, loop = writes[0]
        p = write.inputs[2]
        if loop is None or p not in body.params[1:] or loop not in block.nodes:
            continue
        k = body.params.index(p) - 1
        other = by_value.get(body.yields[k].id)
        if other is None or other == tid or other not in stacked:
            continue
        y_stack, y_block, y_entry, y_writes = stacked[other]
        if y_block is not block or y_entry != entry or y_writes[0][1] is not body:
            continue
        n, init = loop.inputs[1], loop.inputs[3 + k]
        one, zero = passes.constant(1, stack.loc), passes.constant(0, stack.loc)
        rows = Node(lookup(np.add), [n, one.output], {}, loc=stack.loc)
        rows.output.role = "adjoint_temp"
        states = Node(TAPE_STACK, [rows.output], {"shape": entry},
                      [Value(y_stack.output.hint, role=y_stack.output.role, loc=stack.loc)],
                      loc=stack.loc)  # fmt: skip
        first = Node(TAPE_SET, [states.output, zero.output, init], {}, [], loc=stack.loc)
        before = _view(states.output, slice(None, Dyn(k=0)), [n], stack.output, stack.loc)
        after = _view(states.output, slice(1, None), [], y_stack.output, stack.loc)
        block.nodes.remove(stack)
        block.nodes.remove(y_stack)
        at = block.nodes.index(loop)
        block.nodes[at:at] = [one, zero, rows, states, first, before, after]
        body.nodes.remove(write)  # row t of P is row t - 1 of Y, or the initial value
        del stacked[tid], stacked[other]


def _view(array: Value, part: slice, dyn: list, out: Value, loc) -> Node:
    return Node(lookup(getitem), [array, *dyn], {"index": ((part,), True)}, [out], loc=loc)


def _scan(block: Block, loop: Node | None, tapes, makers, readers) -> None:
    for node in block.nodes:
        if node.op is TAPE_NEW:
            makers[node.output.id] = (node, block)
        tape_op = node.op in (TAPE_SET, TAPE_GET, TAPE_CONCAT, TAPE_APPEND)
        for i, v in enumerate(node.inputs):
            readers.setdefault(v.id, []).append(node)
            # a tape read any other way (carried, saved, passed on) stays a list
            use = (node, block, loop) if tape_op and i == 0 else (None, block, None)
            tapes.setdefault(v.id, []).append(use)
        for region in node.regions:
            _scan(region, node if node.op is FOR else None, tapes, makers, readers)
            for v in region.yields:  # a tape yielded from a region stays a list
                tapes.setdefault(v.id, []).append((None, region, None))
                readers.setdefault(v.id, []).append(None)  # read by the yield


def _entry_shape(tid: int, maker: Node, uses: list, known: dict) -> tuple | None:
    """The shape of every entry of tape `tid`, if it may be one array; else None."""
    n = value_of(maker.inputs[0], known)
    if type(n) is not int or n < 1 or not uses:
        return None
    shapes = set()
    for node, _, loop in uses:
        if node is None or node.op not in (TAPE_SET, TAPE_GET, TAPE_CONCAT):
            return None
        if node.op is TAPE_SET:
            fact = known.get(node.inputs[2].id)
            if not float_array(fact) or not fact[1] or not _fills(loop, node, n, known):
                return None
            shapes.add(fact[1])
    return shapes.pop() if len(shapes) == 1 else None


def _rows_of_an_array(uses: list, entry: tuple, known: dict, params) -> Value | None:
    """`A` if every write to the tape saves `A[t]` in row `t` of a loop over all of
    `A`'s rows, with `A` made before the loop (the input sequence of a recurrent model)."""
    from adcompiler.ops.structure import Dyn

    arrays = set()
    for node, body, loop in uses:
        if node.op is not TAPE_SET:
            continue
        defs = {o.id: n for n in body.nodes for o in n.outputs}
        read = defs.get(node.inputs[2].id)
        if read is not None and read.op is COPY:  # (of an argument: never written)
            read = defs.get(read.inputs[0].id)
            if read is not None and read.inputs[0] not in params:
                return None
        if read is None or read.op is not GETITEM or len(read.inputs) != 2:
            return None
        a, t = read.inputs
        items = read.attrs.get("index", ((),))[0]
        fact = known.get(a.id)
        if (
            t is not node.inputs[1]
            or items != (Dyn(k=0),)
            or a.id in defs
            or not float_array(fact)
            or fact[1] != (value_of(loop.inputs[1], known), *entry)
        ):
            return None  # fmt: skip
        arrays.add(a)
    return arrays.pop() if len(arrays) == 1 else None


def _fills(loop: Node | None, write: Node, n: int, known: dict) -> bool:
    """True if `write` runs in every iteration of `loop` over `range(n)`, writing row `t`."""
    if loop is None or range_length(loop, known) != n:
        return False
    body = loop.regions[0]
    return write.inputs[1] is body.params[0] and write in body.nodes


def _write_into_row(write: Node, body: Block, readers: dict) -> None:
    """Have the node that makes the saved value (or the first of its in-place chain)
    write it into the row; the `tape_set` then copies only if the code generator did
    not compute the value in that row after all (ssa.INTO)."""
    tape, index, v = write.inputs
    defs = {o.id: n for n in body.nodes for o in n.outputs}
    producer = defs.get(v.id)
    if producer is not None and producer.op is COPY and _only_reader(write, 2, defs,
                                                                            readers):  # fmt: skip
        write.inputs[2] = producer.inputs[0]  # writing the row copies: one copy, not two
        return
    while producer is not None and producer.op is INDEX_ADD and _only_reader(
            producer, 0, defs, readers):  # fmt: skip
        producer = defs[producer.inputs[0].id]  # `x[16:24] += g` in place: x's buffer
    if producer is None or producer in INTO:
        return
    if producer.op in (UNINDEX, CONCATENATE):  # both take `out=`
        INTO[producer] = (tape, index)
        INTO[write] = None
        return
    if not _ufunc_call(producer):
        return  # copied into its row by the tape_set
    while producer in REUSE:  # the chain's first buffer is the row
        before = [
            defs[producer.inputs[i].id] for i in REUSE[producer]
            if producer.inputs[i].id in defs
            and len(readers.get(producer.inputs[i].id, ())) == 1
        ]  # fmt: skip
        if len(before) != 1 or not _ufunc_call(before[0]) or before[0] in INTO:
            break
        producer = before[0]
    INTO[producer] = (tape, index)
    INTO[write] = None


def _only_reader(node: Node, i: int, defs: dict, readers: dict) -> bool:
    """True if `node` is the only reader of its input `i`, made in the same block."""
    v = node.inputs[i]
    return v.id in defs and len(readers.get(v.id, ())) == 1


def _ufunc_call(node: Node) -> bool:
    """A NumPy ufunc applied to its inputs (no attributes): it takes ``out=``."""
    return numpy_ufunc(node.op) and not node.attrs and len(node.outputs) == 1
