"""Reverse mode: add adjoint nodes to a function.

One primal sweep, then one adjoint sweep over the nodes in reverse order.
For ``y = f(x)`` the rule of ``f`` emits the contribution ``x̄ += ȳ f'(x)``:

    %z = mul(%x, %w)              %z = mul(%x, %w)
    %y = sum(%z)          ──▶     %y = sum(%z)
    return %y                     %y_bar = const 1.0
                                  %z_bar = broadcast_to(%y_bar, shape(%z))
                                  %w_bar = mul(%z_bar, %x)
                                  return %w_bar

Only active values (depending on a `wrt` parameter and reaching the output)
get adjoints. An adjoint is assigned by its first contribution and added to by
later ones. Where a broadcasting operator's input may be smaller than its
output, the contribution goes through one `unbroadcast` node.
"""

from __future__ import annotations

import operator

import numpy as np

from adcompiler import passes, runtime
from adcompiler.ops import Builder, Sym, op_for
from adcompiler.ops.control import (
    FOR,
    IF,
    TAPE_APPEND,
    TAPE_GET,
    TAPE_LIST,
    TAPE_NEW,
    TAPE_SET,
    TRIP_COUNT,
)
from adcompiler.ops.guards import check_scalar
from adcompiler.ops.mutation import INDEX_ADD
from adcompiler.ops.structure import GETITEM
from adcompiler.ssa import ACCUMULATIONS, Block, Function, Node, Value, clone, walk


class Adjoints:
    """The adjoint of each value so far: `add` records a contribution, `get` reads the sum.

    Inside a region, a child `Adjoints` starts from its parent's: a branch of an
    `if` sees the adjoints made so far; a loop body sees none, and the first
    contribution to a value from outside the loop creates an accumulator (a
    parameter of the adjoint loop, carried from iteration to iteration).
    """

    def __init__(
        self,
        active: set[int],
        parent: Adjoints | None = None,
        mode: str = "top",
        local: set[int] | None = None,
    ):
        self.active = active
        self.parent = parent
        self.mode = mode
        self.local = local or set()
        self.of: dict[int, Value] = dict(parent.of) if mode == "branch" else {}
        self.primal: dict[int, Value] = dict(parent.primal) if parent else {}  # id -> value
        self.accumulators: dict[int, tuple[Value, Value]] = {}

    def add(self, b: Builder, x: Value, contribution: Value, fresh: set[int]) -> None:
        if x.id not in self.active:
            return
        if contribution.id in fresh:
            contribution.hint, contribution.role = x.hint, "adjoint"
        self.primal[x.id] = x
        current = self.current(x)
        scattered = _scatter_of(b, contribution) if contribution.id in fresh else None
        if current is not None and scattered is not None:  # x̄[index] += ḡ, not x̄ + zeros
            g, dyn, index = scattered
            total = b.emit_sym(INDEX_ADD, [current, g, *dyn], {"index": index})
            total.value.hint, total.value.role = x.hint, "adjoint"
            self.of[x.id] = total.value
        elif current is not None:
            total = b.call(operator.add, current, contribution)
            _mark_accumulation(b, total.value)
            total.value.hint, total.value.role = x.hint, "adjoint"
            self.of[x.id] = total.value
        else:
            self.of[x.id] = contribution

    def current(self, x: Value) -> Value | None:
        """The adjoint of `x` so far; in a loop body, an accumulator for an outer value."""
        if x.id in self.of:
            return self.of[x.id]
        if self.mode == "loop" and x.id not in self.local:
            acc = Value(x.hint, role="adjoint", loc=x.loc)
            self.accumulators[x.id] = (x, acc)
            self.of[x.id] = acc
            return acc
        return None

    def get(self, x: Value) -> Value | None:
        return self.of.get(x.id)


def reverse(
    fn: Function,
    wrt: list,
    *,
    cotangent: str = "one",
    return_value: bool = False,
    check_types: bool = True,
) -> Function:
    """The function ``(*params[, cotangents]) -> ([results,] adjoints of params[wrt]...)``.

    cotangent: "one" seeds the (scalar) first result with 1.0; "param" adds one
    parameter per result that carries its cotangent (a vector-Jacobian product).
    """
    wrt_values = [fn.params[i] if isinstance(i, int) else i for i in wrt]
    roots = fn.results if cotangent == "param" else fn.results[:1]
    active = passes.varied(fn, wrt_values) & passes.useful(fn, roots)
    shapes = passes.shape_classes(fn)
    by_class = {shapes.get(p.id, p.id): p for p in reversed(fn.params)}
    adj = Adjoints(active)
    primal = list(fn.body.nodes)
    fn = clone(fn)  # the transform rewrites nodes (calls, exported branch values, tapes)
    check = Node(op_for(runtime.check_float), wrt_values, {}, outputs=[])
    seed_builder = Builder(loc=None, role="adjoint")
    extra_params = []
    for r in roots:
        if cotangent == "param":
            seed = Value(r.hint, role="adjoint")
            extra_params.append(seed)
        else:
            seed = seed_builder.const(1.0)
            seed.hint, seed.role = r.hint, "adjoint"
        if r.id in active:
            adj.of[r.id] = seed
    if cotangent == "one" and shapes.get(roots[0].id) != passes.SCALAR_CLASS:
        guard = Node(op_for(check_scalar), [roots[0]], {"name": fn.name}, outputs=[])
        primal.append(guard)
    body = Block(nodes=primal)
    adjoint_nodes: list[Node] = list(seed_builder.nodes)
    adjoint_nodes.extend(Sweep(active, shapes, by_class).block(body, adj))
    primal = body.nodes
    _read_shapes_early(fn, adjoint_nodes, shapes)
    tail = Builder(loc=None, role="adjoint")
    grads = []
    for x in wrt_values:
        g = adj.get(x)
        if g is None:  # never reached: the gradient really is zero
            g = tail.call(np.zeros_like, x).value
            g.hint, g.role = x.hint, "adjoint"
        grads.append(g)
    results = (list(fn.results) if return_value else []) + grads
    out = Function(
        name=fn.name,
        params=fn.params + extra_params,
        body=Block(
            nodes=[
                *(_after_definitions(primal, wrt_values, check) if check_types else primal),
                *adjoint_nodes,
                *tail.nodes,
            ]
        ),
        results=results,
        source_file=fn.source_file,
        doc=fn.doc,
        kwonly=fn.kwonly if not extra_params else 0,
    )
    if not passes.optimizing():
        return passes.dce(out)
    return passes.dce(passes.drop_broadcasts(passes.cse(passes.simplify(out))))


def _after_definitions(primal: list[Node], values: list[Value], check: Node) -> list[Node]:
    """`primal` with `check` inserted where every value it checks is defined (the leaves of
    a structured argument are read from it first)."""
    ids = {v.id for v in values}
    last = max((i for i, n in enumerate(primal) if ids & {o.id for o in n.outputs}), default=-1)
    return [*primal[: last + 1], check, *primal[last + 1 :]]


def _adjoint_of(
    node: Node, adj: Adjoints, shapes: dict[int, int], by_class: dict[int, Value]
) -> list[Node]:
    """The nodes that propagate the adjoint of `node`'s output to its inputs."""
    if node.op.name in ("call_forward", "call_adjoint") and any(
        v.id in adj.active for v in node.inputs
    ):
        raise NotImplementedError(
            f"reverse mode over the generated functions of the recursive helper "
            f"{node.attrs['name']} is not supported yet; use ad.hvp for second derivatives"
        )
    if node.op.nondiff or len(node.outputs) != 1:
        return []
    g = adj.get(node.output)
    if g is None or not any(v.id in adj.active for v in node.inputs):
        return []
    if node.op.adjoint is None:
        raise NotImplementedError(f"no adjoint rule for {node.op.name}")
    b = Builder(loc=node.loc, role="adjoint_temp")
    attrs = dict(node.attrs)
    contributions = node.op.adjoint(
        Sym(b, g), Sym(b, node.output), *(Sym(b, v) for v in node.inputs), **attrs
    )
    fresh = {n.output.id for n in b.nodes if n.outputs}
    _shapes_from_parameters(b.nodes, shapes, by_class)
    out_class = shapes.get(node.output.id)
    for x, c in zip(node.inputs, contributions):
        if c is None or x.id not in adj.active:
            continue
        c = c if isinstance(c, Value) else c.value
        if node.op.broadcasts and shapes.get(x.id, x.id) != out_class:
            c = b.call(runtime.unbroadcast, c, Sym(b, x).shape).value
            fresh.add(c.id)
        adj.add(b, x, c, fresh)
    return b.nodes


def _shapes_from_parameters(
    nodes: list[Node], shapes: dict[int, int], by_class: dict[int, Value]
) -> None:
    """Read a shape from a function parameter of the same shape class where there is one:
    parameters are visible everywhere, so no region has to keep a value for its shape."""
    for node in nodes:
        if node.op.name == "shape":
            rep = by_class.get(shapes.get(node.inputs[0].id, -1))
            if rep is not None:
                node.inputs[0] = rep


def _mark_accumulation(b: Builder, total: Value) -> None:
    """Mark `x̄ + c` as an accumulation: codegen may write it as `x̄ += c`."""
    for node in reversed(b.nodes):
        if total in node.outputs:
            ACCUMULATIONS.add(node)
            return


def _scatter_of(b: Builder, value: Value):
    """If `value` was just made by `unindex(g, shape, *dyn)` in `b`: (g, dyn, index)."""
    for node in reversed(b.nodes):
        if value in node.outputs:
            if node.op.name == "unindex":
                return node.inputs[0], node.inputs[2:], node.attrs["index"]
            return None
    return None


class Sweep:
    """The adjoint sweep over a block, with handlers for the nodes that own regions."""

    def __init__(self, active: set[int], shapes: dict[int, int], by_class: dict[int, Value]):
        self.active = active
        self.shapes = shapes
        self.by_class = by_class  # a parameter of each shape class, if any

    def block(self, primal: Block, adj: Adjoints) -> list[Node]:
        """Adjoint nodes for `primal`'s nodes in reverse order (tapes go into `primal`)."""
        out: list[Node] = []
        for node in reversed(list(primal.nodes)):
            if node.op.name == "call":
                out.extend(self.call_adjoint(node, adj, primal))
            elif node.op.name == "if":
                out.extend(self.if_adjoint(node, adj))
            elif node.op.name in ("for", "while"):
                out.extend(self.loop_adjoint(node, adj, primal))
            else:
                out.extend(_adjoint_of(node, adj, self.shapes, self.by_class))
        return out

    def touches_active(self, node: Node) -> bool:
        return any(v.id in self.active for n in walk(Block(nodes=[node])) for v in n.outputs)

    # -- calls of helpers that are not inlined ------------------------------------

    def call_adjoint(self, node: Node, adj: Adjoints, enclosing: Block) -> list[Node]:
        """`y = helper(args)`: the primal calls `helper_forward`, the adjoint
        `helper_adjoint` (see adcompiler.calls)."""
        from adcompiler import calls

        b = Builder(loc=node.loc, role="temp")
        _, result, saved = calls.forward_call(b, node)
        at = enclosing.nodes.index(node)
        enclosing.nodes[at : at + 1] = b.nodes
        g = adj.get(result)
        if g is None:
            return []
        back = Builder(loc=node.loc, role="adjoint_temp")
        grads = calls.adjoint_call(back, node, saved, g)
        for i, x in enumerate(node.inputs):
            if x.id in self.active:
                part = back.emit_sym(GETITEM, [grads], {"index": ((i,), True)}).value
                adj.add(back, x, part, {part.id})
        return back.nodes

    # -- if ------------------------------------------------------------------

    def if_adjoint(self, node: Node, adj: Adjoints) -> list[Node]:
        if not self.touches_active(node):
            return []
        branches = []
        for region in node.regions:
            inner = Adjoints(self.active, adj, "branch")
            b = Builder(loc=node.loc, role="adjoint")
            for out, y in zip(node.outputs, region.yields):
                g = adj.get(out)
                if g is not None:
                    inner.add(b, y, g, set())
            branches.append((region, inner, b.nodes + self.block(region, inner)))
        changed: dict[int, Value] = {}
        for region, inner, _ in branches:
            local = defined_ids(region)
            for vid, value in inner.of.items():
                if vid not in local and value is not adj.of.get(vid):
                    changed.setdefault(vid, inner.primal[vid])
        regions = []
        for region, inner, nodes in branches:
            b = Builder(loc=node.loc, role="adjoint")
            yields = []
            for vid, x in changed.items():
                value = inner.of.get(vid)
                if value is None:  # this branch adds nothing and no adjoint exists yet
                    value = b.call(np.zeros_like, x).value
                yields.append(value)
            block = Block(nodes=nodes + b.nodes, yields=yields)
            passes.dce_block(block, set())
            self.export_from_branch(node, region, block)
            regions.append(block)
        outputs = [Value(x.hint, role="adjoint", loc=node.loc) for x in changed.values()]
        result = [Node(IF, [node.inputs[0]], {}, outputs, regions, node.loc)]
        post = Builder(loc=node.loc, role="adjoint")
        for (vid, x), out in zip(changed.items(), outputs):
            if vid in adj.of:
                adj.of[vid] = out
            else:
                adj.add(post, x, out, {out.id})
        return result + post.nodes

    def export_from_branch(self, node: Node, primal: Block, adjoint: Block) -> None:
        """Primal values of a branch that its adjoint reads become outputs of the `if`."""
        local = defined_ids(primal)
        other = node.regions[1] if primal is node.regions[0] else node.regions[0]
        replace: dict[int, Value] = {}
        copies = Builder(loc=node.loc, role="temp")
        for v in referenced(adjoint):
            if v.id in local and v.is_const and "name" not in _const_attrs(primal, v):
                replace[v.id] = copies.const(v.const)  # a literal: write it again, not export
            elif v.id in local and v.id not in replace:
                exported = Value(v.hint, role=v.role if v.role != "temp" else "primal", loc=v.loc)
                primal.yields.append(v)
                b = Builder(loc=node.loc, role="temp")
                other.yields.append(b.const(None))
                other.nodes.extend(b.nodes)
                node.outputs.append(exported)
                replace[v.id] = exported
        adjoint.nodes[0:0] = copies.nodes
        substitute(adjoint, replace)

    # -- loops ---------------------------------------------------------------

    def loop_adjoint(self, node: Node, adj: Adjoints, enclosing: Block) -> list[Node]:
        if not self.touches_active(node) and not any(o.id in self.active for o in node.outputs):
            return []
        is_for = node.op.name == "for"
        body = node.regions[-1]
        carried = passes.carried_params(node, body)
        inits = passes.carried_inits(node)
        if not is_for:
            trip = _count_iterations(node, enclosing)
        slots = [
            k
            for k, c in enumerate(carried)
            if c.id in self.active or node.outputs[k].id in self.active
        ]
        index = Value(body.params[0].hint if is_for else "k", role="primal", loc=node.loc)
        slot_params = [Value(carried[k].hint, role="adjoint", loc=node.loc) for k in slots]
        inner = Adjoints(self.active, adj, "loop", defined_ids(body))
        seed = Builder(loc=node.loc, role="adjoint")
        for k, p in zip(slots, slot_params):
            inner.add(seed, body.yields[k], p, set())
        nodes = seed.nodes + self.block(body, inner)
        tail = Builder(loc=node.loc, role="adjoint")
        next_slots = []
        for k, p in zip(slots, slot_params):
            g = inner.get(carried[k])
            next_slots.append(g if g is not None else _zeros_like(tail, p, carried[k].hint))
        accs = list(inner.accumulators.values())
        ab = Block(
            params=[index, *slot_params, *(acc for _, acc in accs)],
            nodes=nodes + tail.nodes,
            yields=next_slots + [inner.of[x.id] for x, _ in accs],
        )
        passes.dce_block(ab, set())
        pre = Builder(loc=node.loc, role="adjoint")
        bounds = node.inputs[:3] if is_for else [pre.const(0), trip, pre.const(1)]
        self.record(node, enclosing, ab, index)
        slot_inits = [
            adj.get(node.outputs[k]) or _zeros_like(pre, node.outputs[k], carried[k].hint)
            for k in slots
        ]
        acc_inits = [adj.current(x) or _zeros_like(pre, x, x.hint) for x, _ in accs]
        outputs = [Value(carried[k].hint, role="adjoint", loc=node.loc) for k in slots]
        outputs += [Value(x.hint, role="adjoint", loc=node.loc) for x, _ in accs]
        loop = Node(
            FOR, [*bounds, *slot_inits, *acc_inits], {"reverse": True}, outputs, [ab], node.loc
        )
        post = Builder(loc=node.loc, role="adjoint")
        for (x, _), out in zip(accs, outputs[len(slots) :]):
            adj.of[x.id] = out  # the accumulator started from the adjoint so far
        for k, out in zip(slots, outputs):
            adj.add(post, inits[k], out, set())
        return pre.nodes + [loop] + post.nodes

    def saved_values(self, body: Block, ab: Block) -> list[tuple[Value, bool, list[int]]]:
        """What the adjoint body reads of the primal loop body (the index aside), as
        (primal value, whether only its shape is read, ids the restored value replaces).
        A value read only for its shape has just its shape saved."""
        local = defined_ids(body)
        shape_reads: dict[int, list[Node]] = {}
        other_reads: set[int] = {v.id for v in ab.yields}
        for n in walk(ab):
            for v in n.inputs:
                if v.id in local:
                    if n.op.name == "shape":
                        shape_reads.setdefault(v.id, []).append(n)
                    else:
                        other_reads.add(v.id)
        saved = []
        index = body.params[0] if body.params and node_is_for(body) else None
        for v in referenced(ab):
            if v.id not in local or v is index or _is_literal(v, body):
                continue
            if v.id in other_reads:
                saved.append((v, False, [v.id]))
            else:
                saved.append((v, True, [r.output.id for r in shape_reads[v.id]]))
        return saved

    def record(self, node: Node, enclosing: Block, ab: Block, index: Value) -> None:
        """Save what the adjoint body reads: into lists preallocated for the trip count
        (`for`), or lists that grow as the loop runs (`while`)."""
        is_for = node.op.name == "for"
        body = node.regions[-1]
        _LOOP_KIND[id(body)] = is_for
        _copy_literals(body, ab)
        if is_for:
            _recompute_index_arithmetic(body, ab, index)
        saved = self.saved_values(body, ab)
        replace = {body.params[0].id: index} if is_for else {}
        if not saved:
            substitute(ab, replace)
            return
        b = Builder(loc=node.loc, role="temp")
        if is_for:
            start, stop, step = node.inputs[:3]
            trip = _trip_count(b, start, stop, step)
            tapes = [b.emit_sym(TAPE_NEW, [trip]).value for _ in saved]
        else:
            tapes = [b.emit_sym(TAPE_LIST, []).value for _ in saved]
        for tape, (v, shape_only, _) in zip(tapes, saved):
            tape.hint = f"{v.hint}_shape" if shape_only else f"{v.hint}_saved"
        at = enclosing.nodes.index(node)
        enclosing.nodes[at:at] = b.nodes
        forward = Builder(loc=node.loc, role="temp")
        backward = Builder(loc=node.loc, role="temp")
        if is_for:
            j = _iteration(forward, body.params[0], start, step)
            j_back = _iteration(backward, index, start, step)

            def write(tape, v, loc):
                return Node(TAPE_SET, [tape, j, v], {}, [], loc=loc)
        else:
            j_back = index

            def write(tape, v, loc):
                return Node(TAPE_APPEND, [tape, v], {}, [], loc=loc)

        self.insert_writes(body, saved, tapes, write, forward.nodes, node.loc)
        for tape, (v, shape_only, ids) in zip(tapes, saved):
            restored = backward.emit_sym(TAPE_GET, [tape, j_back]).value
            restored.hint = f"{v.hint}_shape" if shape_only else v.hint
            restored.role = "temp" if shape_only else v.role
            replace.update((vid, restored) for vid in ids)
        ab.nodes[0:0] = backward.nodes
        substitute(ab, replace)
        passes.dce_block(ab, set())

    def insert_writes(self, body: Block, saved, tapes, write, prologue, loc) -> None:
        """Put a tape write right after each saved value is defined in the primal body."""
        position = {id(n): i for i, n in enumerate(body.nodes)}
        defined_at = {v.id: (position[id(n)], n.loc) for n in body.nodes for v in n.outputs}
        writes_in_body = any(n.op.name == "setitem" for n in walk(body))
        after: dict[int, list[Node]] = {}
        first: list[Node] = list(prologue)
        for tape, (v, shape_only, _) in zip(tapes, saved):
            i, where = defined_at.get(v.id, (None, loc))
            b = Builder(loc=where, role="temp")
            written = b.call(np.shape, v).value if shape_only else v
            if not shape_only and writes_in_body and _producer_op(body, v) in _VIEWS:
                written = b.call(np.copy, v).value  # a view of an array written later
                written.hint = v.hint
            if shape_only:
                written.hint = f"{v.hint}_shape"
            writes = [*b.nodes, write(tape, written, where)]
            if i is None:  # a loop-carried parameter: its value as the iteration starts
                first.extend(writes)
            else:
                after.setdefault(i, []).extend(writes)
        nodes = list(first)
        for i, n in enumerate(body.nodes):
            nodes.append(n)
            nodes.extend(after.get(i, []))
        body.nodes = nodes


def _ZERO_LIKE():  # noqa: N802
    from adcompiler.ops.mutation import ZERO_LIKE

    return ZERO_LIKE


_LOOP_KIND: dict[int, bool] = {}


def node_is_for(body: Block) -> bool:
    return _LOOP_KIND.get(id(body), False)


def _is_literal(v: Value, block: Block) -> bool:
    return v.is_const and "name" not in _const_attrs(block, v)


_INDEX_ARITHMETIC = {"add", "subtract", "multiply", "floor_divide", "mod"}


def _recompute_index_arithmetic(body: Block, ab: Block, index: Value) -> None:
    """Values of a `for` body computed from the loop index and constants only (`t + 1`)
    are computed again in the adjoint loop from its own index, not saved."""
    i = body.params[0]
    defs = {v.id: n for n in body.nodes for v in n.outputs}
    cheap: dict[int, bool] = {i.id: True}

    def recomputable(v: Value) -> bool:
        if v.id not in cheap:
            node = defs.get(v.id)
            cheap[v.id] = (
                node is not None
                and node.op.name in _INDEX_ARITHMETIC
                and all(x.is_const or recomputable(x) for x in node.inputs)
            )
        return cheap[v.id]

    wanted = [v for v in referenced(ab) if v.id in defs and recomputable(v)]
    if not wanted:
        return
    copies: dict[int, Value] = {i.id: index}
    nodes: list[Node] = []

    def copy(v: Value) -> Value:
        if v.id not in copies:
            if v.is_const:
                return v
            node = defs[v.id]
            inputs = [copy(x) for x in node.inputs]
            out = Value(v.hint, role=v.role, loc=v.loc)
            nodes.append(Node(node.op, inputs, dict(node.attrs), [out], loc=node.loc))
            copies[v.id] = out
        return copies[v.id]

    replace = {v.id: copy(v) for v in wanted}
    consts = {x.id for n in nodes for x in n.inputs if x.is_const}
    literal = Builder(role="temp")
    fresh = {cid: literal.const(_const_of(body, cid)) for cid in consts}
    for n in nodes:
        n.inputs = [fresh.get(x.id, x) for x in n.inputs]
    ab.nodes[0:0] = literal.nodes + nodes
    substitute(ab, replace)


def _const_of(block: Block, vid: int):
    for n in walk(block):
        for v in n.outputs:
            if v.id == vid:
                return v.const
    raise KeyError(vid)


def _copy_literals(primal: Block, adjoint: Block) -> None:
    """Literal constants of the primal region that the adjoint reads are written again."""
    local = defined_ids(primal)
    b = Builder(loc=None, role="temp")
    replace = {
        v.id: b.const(v.const)
        for v in referenced(adjoint)
        if v.id in local and _is_literal(v, primal)
    }
    adjoint.nodes[0:0] = b.nodes
    substitute(adjoint, replace)


_VIEWS = {"getitem", "reshape", "ravel", "transpose", "swapaxes", "squeeze", "expand_dims"}


def _producer_op(block: Block, v: Value) -> str | None:
    for n in block.nodes:
        if v in n.outputs:
            return n.op.name
    return None


def _zeros_like(b: Builder, x: Value, hint: str) -> Value:
    """A zero adjoint for `x`, where a loop needs one to start from (0.0 for a number)."""
    zeros = b.emit_sym(_ZERO_LIKE(), [x]).value
    zeros.hint, zeros.role = hint, "adjoint"
    return zeros


def _const_attrs(block: Block, v: Value) -> dict:
    for node in walk(block):
        if v in node.outputs:
            return node.attrs
    return {}


def defined_ids(block: Block) -> set[int]:
    """Ids of every value a block defines: its parameters and all values in nested regions."""
    ids = {p.id for p in block.params}
    for node in walk(block):
        ids.update(v.id for v in node.outputs)
        for region in node.regions:
            ids.update(p.id for p in region.params)
    return ids


def referenced(block: Block) -> list[Value]:
    """Every value a block reads, in order of first use, without duplicates."""
    seen: dict[int, Value] = {}

    def visit(b: Block) -> None:
        for node in b.nodes:
            for v in node.inputs:
                seen.setdefault(v.id, v)
            for region in node.regions:
                visit(region)
        for v in b.yields:
            seen.setdefault(v.id, v)

    visit(block)
    return list(seen.values())


def substitute(block: Block, replace: dict[int, Value]) -> None:
    """Replace reads of values in `block` (and nested regions) by `replace[id]`."""
    if not replace:
        return
    for node in walk(block):
        node.inputs = [replace.get(v.id, v) for v in node.inputs]
        for region in node.regions:
            region.yields = [replace.get(v.id, v) for v in region.yields]
    block.yields = [replace.get(v.id, v) for v in block.yields]


def _trip_count(b: Builder, start: Value, stop: Value, step: Value) -> Value:
    if start.const == 0 and step.const == 1:
        return stop
    return b.emit_sym(TRIP_COUNT, [start, stop, step]).value


def _iteration(b: Builder, i: Value, start: Value, step: Value) -> Value:
    """The iteration number of index `i` in range(start, _, step)."""
    if start.const == 0 and step.const == 1:
        return i
    return b.call(operator.floordiv, b.call(operator.sub, i, start), step).value


def _count_iterations(node: Node, enclosing: Block) -> Value:
    """Give a `while` a carried counter; return the output that holds its trip count."""
    cond, body = node.regions
    b = Builder(loc=node.loc, role="temp")
    zero = b.const(0)
    at = enclosing.nodes.index(node)
    enclosing.nodes[at:at] = b.nodes
    node.inputs.append(zero)
    cond.params.append(Value("iterations", loc=node.loc))
    count = Value("iterations", loc=node.loc)
    body.params.append(count)
    step = Builder(loc=node.loc, role="primal")
    following = step.call(operator.add, count, 1).value
    following.hint = "iterations"
    body.nodes.extend(step.nodes)
    body.yields.append(following)
    trip = Value("iterations", loc=node.loc)
    node.outputs.append(trip)
    return trip


def _read_shapes_early(fn: Function, nodes: list[Node], shapes: dict[int, int]) -> None:
    """Read each shape from a value the adjoint sweep keeps anyway (a parameter, or the
    value the adjoint reads most), or compute it from the shapes of a broadcasting
    operator's inputs, so that no value is kept or recomputed only for its shape."""
    members: dict[int, list[Value]] = {}
    defs: dict[int, Node] = {}
    for node in fn.body.nodes:
        defs.update((v.id, node) for v in node.outputs)
    for v in [*fn.params, *(o for n in fn.body.nodes for o in n.outputs)]:
        members.setdefault(shapes.get(v.id, v.id), []).append(v)
    reads: dict[int, int] = {}
    for node in nodes:
        if node.op.name != "shape":
            for v in node.inputs:
                reads[v.id] = reads.get(v.id, 0) + 1
    params = {p.id for p in fn.params}

    def kept(v: Value) -> bool:
        return v.id in params or reads.get(v.id, 0) > 0

    def best(v: Value) -> Value:
        group = members.get(shapes.get(v.id, -1), [v]) if shapes.get(v.id, -1) >= 0 else [v]
        return max(group, key=lambda u: (u.id in params, reads.get(u.id, 0)))

    def rewrite(node: Node) -> list[Node]:
        """Point `node` (a shape read) at a kept value; return the nodes to put before it."""
        source = best(node.inputs[0])
        node.inputs[0] = source
        producer = defs.get(source.id)
        if kept(source) or producer is None or not producer.op.broadcasts:
            return []
        b = Builder(loc=node.loc, role="adjoint_temp")
        operands = [Sym(b, x).shape.value for x in producer.inputs if not x.is_const]
        before = [n for shape_node in b.nodes for n in [*rewrite(shape_node), shape_node]]
        node.op, node.inputs, node.attrs = op_for(np.broadcast_shapes), operands, {}
        return before

    position = 0
    while position < len(nodes):
        node = nodes[position]
        if node.op.name == "shape":
            before = rewrite(node)
            nodes[position:position] = before
            position += len(before)
        position += 1
