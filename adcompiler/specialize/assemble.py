"""Adjoints of the slices of one array, put together in one step.

Code that cuts a packed array into parts (an LSTM's four gates, `z[:, :H]`,
`z[:, H:2*H]`, ...) gets, in reverse mode, a zero array with each part's
adjoint added into its slice:

    gz = unindex(g3, (32, 128), (slice(None), slice(96, None)))   # zeros, then g3
    gz[:, 64:96] += g2
    gz[:, 32:64] += g1                    ──▶   gz = np.concatenate([g0, g1, g2, g3], axis=1)
    gz[:, :32] += g0

Where the slices (known once the shapes are) lie along one axis and tile it, no
zeros are needed and nothing is added: the parts are joined, as a gradient
written by hand would do. (adcompiler.specialize.stacks may then join them
straight into a row of a tape.)
"""

from __future__ import annotations

import numpy as np

from adcompiler import passes
from adcompiler.ops.core import lookup
from adcompiler.ops.mutation import INDEX_ADD
from adcompiler.ops.structure import UNINDEX, build_index
from adcompiler.specialize.facts import float_array, value_of
from adcompiler.ssa import Function, Node


def join_slice_adjoints(fn: Function, known: dict) -> None:
    """Rewrite, in place, every `unindex` + `index_add` chain that tiles its array."""
    counts = passes.read_counts(fn)
    for block in passes.blocks(fn.body):
        defs = {v.id: n for n in block.nodes for v in n.outputs}
        readers: dict[int, Node] = {}
        for node in block.nodes:
            for v in node.inputs:
                readers[v.id] = node
        for node in list(block.nodes):
            if node.op is UNINDEX and node in block.nodes:
                _join(node, block, defs, readers, counts, known)


def _join(first: Node, block, defs, readers, counts, known) -> None:
    shape = value_of(first.inputs[1], known)
    out_fact = known.get(first.output.id)
    if not isinstance(shape, tuple) or not float_array(out_fact) or out_fact[1] != shape:
        return
    chain, parts = [first], []
    part = _part(first.attrs["index"], first.inputs[2:], first.inputs[0], shape, known)
    if part is None:
        return
    parts.append(part)
    node = first
    while counts.get(node.output.id) == 1 and node.output.id in readers:
        reader = readers[node.output.id]
        if reader.op is not INDEX_ADD or reader.inputs[0] is not node.output:
            break
        part = _part(reader.attrs["index"], reader.inputs[2:], reader.inputs[1], shape, known)
        if part is None:
            return
        parts.append(part)
        chain.append(reader)
        node = reader
    axes = {axis for axis, _, _, _ in parts}
    if len(parts) < 2 or len(axes) != 1:
        return
    parts.sort(key=lambda p: p[1])
    (axis,) = axes
    edges = [0, *(stop for _, _, stop, _ in parts)]
    if [start for _, start, _, _ in parts] != edges[:-1] or edges[-1] != shape[axis]:
        return  # gaps or overlaps: the sum stays
    joined = Node(lookup(np.concatenate), [g for _, _, _, g in parts], {"axis": axis},
                  [chain[-1].output], loc=first.loc)  # fmt: skip
    at = block.nodes.index(chain[-1])
    block.nodes[at] = joined
    for node in chain[:-1]:
        block.nodes.remove(node)


def _part(template, dyn, g, shape, known):
    """`(axis, start, stop, g)` if `g` fills `[start:stop]` along one axis and all of the
    others; else None."""
    values = [value_of(v, known) for v in dyn]
    if any(type(v) is not int for v in values):
        return None
    try:
        index = build_index(template, values)
    except (IndexError, TypeError):
        return None
    items = index if isinstance(index, tuple) else (index,)
    if len(items) > len(shape) or not all(isinstance(p, slice) for p in items):
        return None
    cut = [(k, p.indices(shape[k])) for k, p in enumerate(items) if p != slice(None)]
    if len(cut) != 1 or cut[0][1][2] != 1:
        return None
    axis, (start, stop, _) = cut[0]
    fact = known.get(g.id)
    want = shape[:axis] + (stop - start,) + shape[axis + 1 :]
    if not float_array(fact) or fact[1] != want or stop <= start:
        return None
    return axis, start, stop, g
