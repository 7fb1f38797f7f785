"""Sums over the iterations of a loop, taken after it as one product.

The reverse sweep of a recurrent model adds a weight's adjoint contribution to a
carried sum in every iteration: `W_bar = W_bar + h.T @ g` and, for a bias,
`b_bar = b_bar + np.sum(g, axis=0)`, a small matrix product and a weight-sized
array per step. The sum over the iterations of `X_t.T @ G_t` is one product of the
iterations' rows stacked: `vstack(X).T @ vstack(G)`, which is what a gradient
written by hand does (one big GEMM instead of T small ones, and no temporary per
step). So, in a `for` over `range(n)` with `n` known:

    W_bar = zero_like(W)                         G_saved = [None] * n
    for t in range(n):                           for t in range(n):
        ...                            ──▶           ...
        W_bar = W_bar + X_t.T @ G_t                  G_saved[t] = G_t
                                                 W_bar = np.vstack(X_saved).T
                                                         @ np.vstack(G_saved)

`X_t` read from a tape at the loop's index uses that tape; any other per-iteration
value is saved on a new one. Only 2-D float arrays of one shape in every iteration
qualify (their status is SHAPED, so that holds for every call with the signature).
The sums are added in another order than the loop's: equal up to rounding.
"""

from __future__ import annotations

import numpy as np

from adcompiler import passes
from adcompiler.codegen.naming import base_name
from adcompiler.ops.control import FOR, TAPE_CONCAT, TAPE_GET, TAPE_NEW, TAPE_SET
from adcompiler.ops.core import lookup
from adcompiler.ops.mutation import ZERO_LIKE
from adcompiler.ops.numpy_ops import ADD, MATMUL, MATMUL_LHS_ADJOINT, SUM, TRANSPOSE
from adcompiler.specialize.facts import float_array, range_length, value_of
from adcompiler.ssa import Function, Node, Value, walk


def batch_loop_sums(fn: Function, known: dict) -> None:
    """Rewrite, in place, every carried sum of per-iteration products in `fn`'s loops."""
    counts = passes.read_counts(fn)
    made = {v.id: n for n in walk(fn.body) for v in n.outputs}
    replace: dict[int, Value] = {}  # a loop's old output → the sum taken after it
    for block in list(passes.blocks(fn.body)):
        nodes: list[Node] = []
        for node in block.nodes:
            nodes.extend(_batched(node, known, counts, made, replace) or [node])
        block.nodes = nodes
    passes.substitute(fn, replace)


def _batched(loop: Node, known, counts, made, replace) -> list[Node] | None:
    """`[...before, loop, ...after]` with the loop's carried sums taken after it."""
    if loop.op is not FOR or range_length(loop, known) is None:
        return None
    body = loop.regions[0]
    index, params = body.params[0], body.params[1:]
    defs = {v.id: (i, n) for i, n in enumerate(body.nodes) for v in n.outputs}
    found = []
    for k, (param, y) in enumerate(zip(params, body.yields)):
        term = _summed_term(param, y, defs, known, counts)
        if term is not None:
            found.append((k, term))
    if not found:
        return None
    n = loop.inputs[1]
    before: list[Node] = []
    after: list[Node] = []
    stacked: dict[int, Value] = {}  # per-iteration value → its rows, stacked
    saves: list[tuple[int, Node]] = []  # (position in the body, tape_set)

    def rows(v: Value) -> Value:
        if v.id not in stacked:
            tape = _tape_read_at(v, index, n, body, defs, made, known)
            if tape is None:
                new = Node(TAPE_NEW, [n], {}, [_temp(f"{base_name(v)}_saved", loop)],
                           loc=loop.loc)  # fmt: skip
                before.append(new)
                tape = new.output
                save = Node(TAPE_SET, [tape, index, v], {}, [], loc=defs[v.id][1].loc)
                saves.append((defs[v.id][0], save))
            concat = Node(TAPE_CONCAT, [tape], {}, [_temp(f"{base_name(v)}_rows", loop)],
                          loc=loop.loc)  # fmt: skip
            after.append(concat)
            stacked[v.id] = concat.output
        return stacked[v.id]

    for k, (kind, operands) in found:
        out = loop.outputs[k]
        if kind == "matmul":
            x, g = operands
            flip = Node(lookup(np.transpose), [rows(x)], {"axes": None}, loc=loop.loc)
            flip.outputs[0].role = "adjoint_temp"
            total = Node(lookup(np.matmul), [flip.output, rows(g)], {}, loc=loop.loc)
            after += [flip, total]
        else:
            total = Node(lookup(np.sum), [rows(operands[0])], {"axis": 0, "keepdims": False},
                         loc=loop.loc)  # fmt: skip
            after.append(total)
        init = loop.inputs[3 + k]
        result = Value(out.hint, role=out.role, loc=out.loc)
        if init.id in made and made[init.id].op is ZERO_LIKE:
            total.outputs = [result]
        else:
            total.outputs[0].role = "adjoint_temp"
            after.append(Node(lookup(np.add), [init, total.output], {}, [result], loc=loop.loc))
        replace[out.id] = result
    _drop_slots(loop, [k for k, _ in found])
    for position, save in sorted(saves, key=lambda s: -s[0]):
        body.nodes.insert(position + 1, save)
    return [*before, loop, *after]


def _temp(hint: str, loop: Node) -> Value:
    return Value(hint, role="adjoint_temp", loc=loop.loc)


def _summed_term(param, y, defs, known, counts):
    """What `y = param + term` adds per iteration, where `param` and `y` are read
    nowhere else and the arrays are float arrays made in the body:
    `("matmul", (X, G))` for `term = X.T @ G` (2-D), `("sum", (G,))` for
    `term = np.sum(G, axis=0)` (2-D) or `term = G` (1-D), and `("matmul", (g, x))`
    for `term = np.outer(g, x)` (1-D: the adjoint of `W @ x`). Else None."""
    if y.id not in defs or counts.get(param.id) != 1 or counts.get(y.id) != 1:
        return None
    add = defs[y.id][1]
    if add.op is not ADD or param not in add.inputs or len(add.inputs) != 2:
        return None
    term = add.inputs[1] if add.inputs[0] is param else add.inputs[0]
    if term is param or term.id not in defs:
        return None
    if not (known.get(term.id) == known.get(param.id) == known.get(y.id) is not None):
        return None

    def per_iteration(v: Value, ndim: int) -> bool:
        fact = known.get(v.id)
        return v.id in defs and float_array(fact) and len(fact[1]) == ndim

    found = _product_term(term, defs, known, counts, per_iteration)
    if found is None and per_iteration(term, 1):  # vectors: their sum is a column sum
        return "sum", (term,)
    return found


def _product_term(term, defs, known, counts, per_iteration):
    """`_summed_term`'s products and sums of matrices: the term's producer, if it is one
    read only by the carried sum."""
    if counts.get(term.id) != 1:
        return None
    producer = defs[term.id][1]
    if producer.op is SUM:
        (g,) = producer.inputs
        if producer.attrs.get("axis") == 0 and not producer.attrs.get("keepdims"):
            if per_iteration(g, 2):
                return "sum", (g,)
        return None
    if producer.op is MATMUL_LHS_ADJOINT:  # W @ x with W 2-D, x 1-D: outer(g, x)
        g, w, x = producer.inputs
        fact = known.get(w.id)
        if per_iteration(g, 1) and per_iteration(x, 1) and float_array(fact) and len(
                fact[1]) == 2:  # fmt: skip
            return "matmul", (g, x)
        return None
    if producer.op is not MATMUL or len(producer.inputs) != 2:
        return None
    xt, g = producer.inputs
    if xt.id not in defs or counts.get(xt.id) != 1:
        return None
    flip = defs[xt.id][1]
    if flip.op is not TRANSPOSE or flip.attrs.get("axes") is not None:
        return None
    (x,) = flip.inputs
    if per_iteration(x, 2) and per_iteration(g, 2):
        return "matmul", (x, g)
    return None


def _tape_read_at(v, index, n, body, defs, made, known) -> Value | None:
    """The tape `v` is saved on or read from at the loop's index, if it holds one entry
    per iteration (made by `tape_new(n)` for this loop's `n`)."""
    if v.id not in defs:
        return None
    node = defs[v.id][1]
    saved = [
        n.inputs[0] for n in body.nodes
        if n.op is TAPE_SET and n.inputs[2] is v and n.inputs[1] is index
    ]  # fmt: skip
    if saved:  # saved on a tape in this loop already
        tape = saved[0]
    elif node.op is TAPE_GET and node.inputs[1] is index:
        tape = node.inputs[0]
    else:
        return None
    maker = made.get(tape.id)
    if maker is None or maker.op is not TAPE_NEW:
        return None
    return tape if value_of(maker.inputs[0], known) == value_of(n, known) else None


def _drop_slots(loop: Node, ks: list[int]) -> None:
    """Remove carried slots `ks` from `loop` (their sums are taken after it)."""
    body = loop.regions[0]
    keep = [k for k in range(len(loop.outputs)) if k not in ks]
    loop.inputs = loop.inputs[:3] + [loop.inputs[3 + k] for k in keep]
    body.params = body.params[:1] + [body.params[1 + k] for k in keep]
    body.yields = [body.yields[k] for k in keep]
    loop.outputs = [loop.outputs[k] for k in keep]
