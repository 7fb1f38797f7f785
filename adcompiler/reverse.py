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

Loops save what their adjoint loops read on tapes. Reverse mode over a gradient
(grad of grad) follows values through those tapes: each tape of values that vary
gets an adjoint tape, written by the adjoint of a read and read back by the
adjoint of the write (`Sweep.tape_read_adjoint`, `Sweep.tape_write_adjoint`).
"""

from __future__ import annotations

import operator

import numpy as np

from adcompiler import passes, runtime
from adcompiler.codegen.naming import base_name
from adcompiler.ops import Builder, Sym, op_for
from adcompiler.ops.calls import CALL, CALL_BWD, CALL_FWD
from adcompiler.ops.control import (
    FOR,
    IF,
    TAPE_APPEND,
    TAPE_GET,
    TAPE_LIST,
    TAPE_NEW,
    TAPE_SET,
    TRIP_COUNT,
    WHILE,
)
from adcompiler.ops.core import Refused, view_of
from adcompiler.ops.guards import CHECK_SCALAR, CHECK_SEED
from adcompiler.ops.mutation import INDEX_ADD, ONE_LIKE, SETITEM
from adcompiler.ops.structure import GETITEM, SHAPE, UNINDEX
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
        tapes: set[int] | None = None,
    ):
        self.active = active
        self.parent = parent
        self.mode = mode
        self.local = local or set()
        self.tapes = tapes if tapes is not None else (parent.tapes if parent else set())
        self.of: dict[int, Value] = dict(parent.of) if mode == "branch" else {}
        self.primal: dict[int, Value] = dict(parent.primal) if parent else {}  # id -> value
        self.accumulators: dict[int, tuple[Value, Value]] = {}

    def add(self, b: Builder, x: Value, contribution: Value, fresh: set[int]) -> None:
        if x.id not in self.active:
            return
        if contribution.id in fresh:
            contribution.hint, contribution.role = x.hint, "adjoint"
        self.primal[x.id] = x
        if x.id in self.tapes:  # a tape's adjoint is a tape that adjoints are written into
            if self.of.get(x.id, contribution) is not contribution:
                raise NotImplementedError("reverse mode: two adjoint tapes for one tape")
            self.of[x.id] = contribution
            return
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

    # Tapes (reverse over reverse). The adjoint of a tape is a tape of the same length
    # whose slot k holds the adjoint of the value saved in slot k: the adjoint loop of
    # the read writes it, the adjoint loop of the write reads it. It is one list that
    # both write into, so it is never summed: found, or made once where it is first
    # needed (before the loop, as a loop accumulator).

    def reaches(self, x: Value) -> bool:
        """True if an adjoint of `x` exists here or in an enclosing region."""
        if x.id in self.of:
            return True
        if self.parent is None or (self.mode == "loop" and x.id in self.local):
            return False
        return self.parent.reaches(x)

    def tape_adjoint(self, x: Value, b: Builder | None) -> Value | None:
        """The adjoint tape of tape `x`; made in `b` if there is none yet (and `b` given)."""
        self.primal[x.id] = x
        if x.id in self.of:
            return self.of[x.id]
        if self.mode == "loop" and x.id not in self.local:
            return self.current(x)  # the loop carries the enclosing region's tape
        if self.mode == "branch" and self.parent.reaches(x):
            self.of[x.id] = self.parent.tape_adjoint(x, None)
            return self.of[x.id]
        if b is None:
            return None
        self.of[x.id] = _tape_like(b, x)
        return self.of[x.id]


def reverse(
    fn: Function,
    wrt: list,
    *,
    cotangent: str = "like",
    return_value: bool = False,
    check_types: bool = True,
) -> Function:
    """The function ``(*params[, cotangents]) -> ([results,] adjoints of params[wrt]...)``.

    cotangent: "like" seeds the (scalar) first result with `one_like(result)`, 1 in its
    dtype (a float32 loss has float32 adjoints); "one" with the constant 1.0, which the
    rules fold, for a float64 scalar result only (a guard checks it: the specializer
    makes such code where it knows the output is one); "param" adds one parameter per
    result that carries its cotangent (a vector-Jacobian product).
    """
    wrt_values = [fn.params[i] if isinstance(i, int) else i for i in wrt]
    roots = fn.results if cotangent == "param" else fn.results[:1]
    tapes = tape_values(fn)
    active = varied_through_tapes(fn, wrt_values) & useful_through_tapes(fn, roots)
    active -= passes.shift_invariant_maxes(fn)  # their derivative is exactly zero
    shapes = _shape_classes(fn)
    by_class = {shapes.get(p.id, p.id): p for p in reversed(fn.params)}
    adj = Adjoints(active, tapes=tapes)
    primal = list(fn.body.nodes)
    if tapes & active:
        _tapes_saved_last(Block(nodes=primal), tapes)
    fn = clone(fn)  # the transform rewrites nodes (calls, exported branch values, tapes)
    check = Node(op_for(runtime.check_float), wrt_values, {}, outputs=[])
    wrt_ids = {v.id for v in wrt_values}
    others = [p for p in fn.params if p.id not in wrt_ids and p.id not in fn.leaves]
    real = Node(op_for(runtime.check_real), others, {}, outputs=[]) if others else None
    seed_builder = Builder(loc=None, role="adjoint")
    extra_params = []
    taken = {base_name(p) for p in fn.params}
    for r in roots:
        if cotangent == "param":
            seed = Value(r.hint, role="adjoint")
            n = 1
            while base_name(seed) in taken:  # a vjp of a vjp: x_bar, x_2_bar, x_3_bar
                n += 1
                seed.hint = f"{r.hint}_{n}"
            taken.add(base_name(seed))
            extra_params.append(seed)
        elif cotangent == "one":
            seed = seed_builder.const(1.0)
            seed.hint, seed.role = r.hint, "adjoint"
        else:  # one in the output's dtype, which also checks that it is a scalar
            seed = seed_builder.emit_sym(ONE_LIKE, [r], {"name": fn.name}).value
            seed.hint, seed.role = r.hint, "adjoint"
        if r.id in active:
            adj.of[r.id] = seed
            adj.primal[r.id] = r
    if cotangent == "one":
        if shapes.get(roots[0].id) != passes.SCALAR_CLASS:
            primal.append(Node(CHECK_SCALAR, [roots[0]], {"name": fn.name}, outputs=[]))
        # the output whose observation the specializer reads (and then drops this guard)
        primal.append(Node(CHECK_SEED, [roots[0]], {"name": fn.name}, outputs=[]))
    body = Block(nodes=primal)
    adjoint_nodes: list[Node] = list(seed_builder.nodes)
    sweep = Sweep(active, shapes, by_class)
    sweep.rewritten = _rewritten_tapes(fn)
    adjoint_nodes.extend(sweep.block(body, adj))
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
                *([real] if real is not None and check_types else []),
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


def _shape_classes(fn: Function) -> dict[int, int]:
    """`passes.shape_classes`, and what a generated gradient says about shapes besides
    (reverse over reverse): an adjoint sum ``x̄ + c`` and a loop's accumulator of x̄ are
    shaped like x, and a value read back from a tape like the value saved there."""
    shapes = passes.shape_classes(fn)
    if not any(v.role.startswith("adjoint") for n in walk(fn.body) for v in n.outputs):
        return shapes
    parent: dict[int, int] = {}
    params = {p.id for p in fn.params}

    def find(c: int) -> int:
        while parent.get(c, c) != c:
            c = parent[c]
        return c

    def union(*values: Value) -> None:
        for v in values:
            shapes.setdefault(v.id, v.id)
        roots = {find(shapes[v.id]) for v in values}
        if passes.SHAPE_CLASS in roots or len(roots) < 2:
            return
        # the representative: the scalar class, else a parameter's (shapes are read there)
        rep = min(roots, key=lambda c: (c != passes.SCALAR_CLASS, c not in params, c))
        for c in roots:
            parent[c] = rep

    nodes = list(walk(fn.body))
    rewritten = _rewritten_tapes(fn)
    saved = {
        n.inputs[0].id: n.inputs[-1]
        for n in nodes
        if n.op in (TAPE_SET, TAPE_APPEND) and n.inputs[0].id not in rewritten
    }
    defs = {v.id: n for n in nodes for v in n.outputs}

    def accumulation(v: Value) -> Node | None:
        n = defs.get(v.id)
        if n is not None and n.op is op_for(operator.add) and v.role == "adjoint":
            if all(x.role == "adjoint" and x.hint == v.hint for x in n.inputs):
                return n
        return None

    for n in nodes:
        if n.op is TAPE_GET and n.inputs[0].id in saved:
            union(n.output, saved[n.inputs[0].id])
        elif n.op is _ZERO_LIKE():
            union(n.output, n.inputs[0])
        elif len(n.outputs) == 1 and accumulation(n.output) is not None:
            union(n.output, *n.inputs)
        elif n.op in (FOR, WHILE):
            body = n.regions[-1]
            carried = passes.carried_params(n, body)
            for p, init, y, out in zip(carried, passes.carried_inits(n), body.yields, n.outputs):
                acc = accumulation(y)
                if acc is not None and p in acc.inputs and init.role == "adjoint":
                    union(p, init, y, out)
    if not parent:
        return shapes
    return {vid: find(c) for vid, c in shapes.items()}


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
    if node.op in (CALL_FWD, CALL_BWD) and any(v.id in adj.active for v in node.inputs):
        raise NotImplementedError(
            f"reverse mode over the generated functions of the recursive helper "
            f"{node.attrs['name']} is not supported yet; use ad.hvp for second derivatives"
        )
    if node.op.carries and adj.get(node.output) is not None:
        if any(v.id in adj.active for v in node.inputs):  # fail closed: never dropped
            raise NotImplementedError(
                f"reverse mode: a tuple whose items carry derivatives, passed to or returned "
                f"from a recursive helper, is not supported ({node.loc}); pass and return "
                f"arrays (np.stack), or one value per argument"
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
        if isinstance(c, Refused):  # a derivative the rule cannot give: never taken as zero
            raise c.error(node.loc)
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
        if node.op is SHAPE:
            rep = by_class.get(shapes.get(node.inputs[0].id, -1))
            if rep is not None:
                node.inputs[0] = rep


def _mark_accumulation(b: Builder, total: Value) -> None:
    """Mark `x̄ + c` as an accumulation: codegen may write it as `x̄ += c` (not when the
    builder folded it: `1.0 + 1.0` is a constant, and `x̄ + 0` is `x̄`)."""
    for node in reversed(b.nodes):
        if total in node.outputs:
            if node.op is op_for(operator.add):
                ACCUMULATIONS.add(node)
            return


def _scatter_of(b: Builder, value: Value):
    """If `value` was just made by `unindex(g, shape, *dyn)` in `b`: (g, dyn, index)."""
    for node in reversed(b.nodes):
        if value in node.outputs:
            if node.op is UNINDEX:
                return node.inputs[0], node.inputs[2:], node.attrs["index"]
            return None
    return None


class Sweep:
    """The adjoint sweep over a block, with handlers for the nodes that own regions."""

    def __init__(self, active: set[int], shapes: dict[int, int], by_class: dict[int, Value]):
        self.active = active
        self.shapes = shapes
        self.by_class = by_class  # a parameter of each shape class, if any
        self.iteration: dict[int, Value] = {}  # id of a while body -> its adjoint loop's index
        self.tapes_read: set[int] = set()  # tapes whose adjoint tape has its slots written
        self.rewritten: set[int] = set()  # tapes whose slots are written more than once

    def block(self, primal: Block, adj: Adjoints) -> list[Node]:
        """Adjoint nodes for `primal`'s nodes in reverse order (tapes go into `primal`)."""
        out: list[Node] = []
        for node in reversed(list(primal.nodes)):
            if node.op is CALL:
                out.extend(self.call_adjoint(node, adj, primal))
            elif node.op is IF:
                out.extend(self.if_adjoint(node, adj))
            elif node.op in (FOR, WHILE):
                out.extend(self.loop_adjoint(node, adj, primal))
            elif node.op is TAPE_GET:
                out.extend(self.tape_read_adjoint(node, adj))
            elif node.op in (TAPE_SET, TAPE_APPEND):
                out.extend(self.tape_write_adjoint(node, adj, primal))
            else:
                out.extend(_adjoint_of(node, adj, self.shapes, self.by_class))
        return out

    # -- tapes (reverse over reverse) ------------------------------------------
    #   v = tape[k]         ──▶  tape_bar[k] = v_bar        (the slot's adjoint)
    #   tape[k] = v         ──▶  v_bar += tape_bar[k]
    # A saved value is read once, by the adjoint loop's iteration for its slot, so the
    # adjoint of the read assigns the slot; the adjoint of the read's loop runs first
    # (forwards in time), the adjoint of the write's loop after it (backwards).

    def tape_read_adjoint(self, node: Node, adj: Adjoints) -> list[Node]:
        tape, k = node.inputs
        g = adj.get(node.output)
        if g is None or tape.id not in self.active:
            return []
        b = Builder(loc=node.loc, role="adjoint")
        tape_bar = adj.tape_adjoint(tape, b)
        if tape.id in self.tapes_read:  # read again (third derivatives): add to the slot
            earlier = b.emit_sym(TAPE_GET, [tape_bar, k]).value
            earlier.hint = node.output.hint
            g = b.call(operator.add, earlier, g).value
            g.hint = node.output.hint
        self.tapes_read.add(tape.id)
        b.nodes.append(Node(TAPE_SET, [tape_bar, k, g], {}, [], loc=node.loc))
        return b.nodes

    def tape_write_adjoint(self, node: Node, adj: Adjoints, enclosing: Block) -> list[Node]:
        tape, *k, v = node.inputs
        if v.id not in self.active or tape.id not in self.active or not adj.reaches(tape):
            return []  # nothing read this tape's values on the way to the result
        if not k:  # appended by a while loop: the slot is the iteration
            k = [self.iteration[id(enclosing)]]
        if tape.id in self.rewritten:  # written again later (fourth derivatives)
            if tape.id not in self.tapes_read:
                return []  # the value written later replaced this one before any read
            self.tapes_read.discard(tape.id)  # what was read before this write is counted
        b = Builder(loc=node.loc, role="adjoint")
        tape_bar = adj.tape_adjoint(tape, None)
        g = b.emit_sym(TAPE_GET, [tape_bar, k[0]]).value
        adj.add(b, v, g, {g.id})
        return b.nodes

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
                if value is None and vid in adj.tapes:  # the branch reads no tape: none
                    value = b.const(None)
                elif value is None:  # this branch adds nothing and no adjoint exists yet
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
        is_for = node.op is FOR
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
        if not is_for:
            self.iteration[id(body)] = index
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
            if g is None:  # no contribution in the body (a tape's adjoint passes through);
                # zeros like the value the trip started from, not like the adjoint of what
                # it ended with: a carried variable may change its shape (vector, matrix)
                if carried[k].id in adj.tapes:
                    g = p
                else:
                    g = _zeros_like(tail, carried[k], carried[k].hint)
            next_slots.append(g)
        pre = Builder(loc=node.loc, role="adjoint")
        # An adjoint tape is a list the body writes into or reads: the loop reads the one
        # made before it (or an enclosing region's) and does not carry it.
        outer_tapes = {
            acc.id: adj.tape_adjoint(x, pre)
            for x, acc in sorted(inner.accumulators.values(), key=lambda xa: xa[0].id)
            if x.id in adj.tapes
        }
        accs = [(x, acc) for x, acc in inner.accumulators.values() if x.id not in adj.tapes]
        ab = Block(
            params=[index, *slot_params, *(acc for _, acc in accs)],
            nodes=nodes + tail.nodes,
            yields=next_slots + [inner.of[x.id] for x, _ in accs],
        )
        substitute(ab, outer_tapes)
        passes.dce_block(ab, set())
        bounds = node.inputs[:3] if is_for else [pre.const(0), trip, pre.const(1)]
        self.record(node, enclosing, ab, index)
        slot_inits = [
            adj.tape_adjoint(node.outputs[k], pre)
            if carried[k].id in adj.tapes
            else adj.get(node.outputs[k]) or _zeros_like(pre, node.outputs[k], carried[k].hint)
            for k in slots
        ]
        acc_inits = [adj.current(x) or _zeros_like(pre, x, x.hint) for x, _ in accs]
        outputs = [Value(carried[k].hint, role="adjoint", loc=node.loc) for k in slots]
        outputs += [Value(x.hint, role="adjoint", loc=node.loc) for x, _ in accs]
        backwards = not node.attrs.get("reverse", False)  # an adjoint loop's adjoint: forwards
        loop = Node(
            FOR, [*bounds, *slot_inits, *acc_inits], {"reverse": backwards}, outputs, [ab], node.loc
        )
        post = Builder(loc=node.loc, role="adjoint")
        for (x, _), out in zip(accs, outputs[len(slots) :]):
            adj.of[x.id] = out  # the accumulator started from the adjoint so far
            adj.primal[x.id] = x
        for k, out in zip(slots, outputs):
            adj.add(post, inits[k], out, set())
        return pre.nodes + [loop] + post.nodes

    def saved_values(
        self, body: Block, ab: Block, is_for: bool
    ) -> list[tuple[Value, bool, list[int]]]:
        """What the adjoint body reads of the primal loop body (the index of a `for` aside), as
        (primal value, whether only its shape is read, ids the restored value replaces).
        A value read only for its shape has just its shape saved."""
        local = defined_ids(body)
        shape_reads: dict[int, list[Node]] = {}
        other_reads: set[int] = {v.id for v in ab.yields}
        for n in walk(ab):
            for v in n.inputs:
                if v.id in local:
                    if n.op is SHAPE:
                        shape_reads.setdefault(v.id, []).append(n)
                    else:
                        other_reads.add(v.id)
        saved = []
        index = body.params[0] if body.params and is_for else None
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
        is_for = node.op is FOR
        body = node.regions[-1]
        _copy_literals(body, ab)
        if is_for:
            _recompute_index_arithmetic(body, ab, index, self.rewritten)
        saved = self.saved_values(body, ab, is_for)
        replace = {body.params[0].id: index} if is_for else {}
        on_tape = _saved_already(node, body, self.rewritten)  # saved already (a gradient)
        reused = [(v, ids) for v, shape_only, ids in saved if not shape_only and v.id in on_tape]
        saved = [s for s in saved if s[1] or s[0].id not in on_tape]
        if not saved and not reused:
            substitute(ab, replace)
            return
        b = Builder(loc=node.loc, role="temp")
        forward = Builder(loc=node.loc, role="temp")
        backward = Builder(loc=node.loc, role="temp")
        if is_for:
            start, stop, step = node.inputs[:3]
            j = _iteration(forward, body.params[0], start, step)
            j_back = _iteration(backward, index, start, step)

            def write(tape, v, loc):
                return Node(TAPE_SET, [tape, j, v], {}, [], loc=loc)
        else:
            j_back = index

            def write(tape, v, loc):
                return Node(TAPE_APPEND, [tape, v], {}, [], loc=loc)

        for v, ids in reused:
            restored = backward.emit_sym(TAPE_GET, [on_tape[v.id], j_back]).value
            restored.hint, restored.role = v.hint, v.role
            replace.update((vid, restored) for vid in ids)
        if saved:
            if is_for:
                trip = _trip_count(b, start, stop, step)
                tapes = [b.emit_sym(TAPE_NEW, [trip]).value for _ in saved]
            else:
                tapes = [b.emit_sym(TAPE_LIST, []).value for _ in saved]
            for tape, (v, shape_only, _) in zip(tapes, saved):
                own = f"{v.hint}_bar" if v.role == "adjoint" else v.hint  # h_bar_saved
                tape.hint = f"{own}_shape" if shape_only else f"{own}_saved"
            at = enclosing.nodes.index(node)
            enclosing.nodes[at:at] = b.nodes
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
        writes_in_body = any(n.op in (SETITEM, INDEX_ADD) for n in walk(body))
        after: dict[int, list[Node]] = {}
        first: list[Node] = list(prologue)
        for tape, (v, shape_only, _) in zip(tapes, saved):
            i, where = defined_at.get(v.id, (None, loc))
            b = Builder(loc=where, role="temp")
            written = b.call(np.shape, v).value if shape_only else v
            scalar = self.shapes.get(v.id) == passes.SCALAR_CLASS  # a number: not a view
            if not shape_only and writes_in_body and not scalar and _is_view(body, v):
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


def _saved_already(node: Node, body: Block, rewritten: set[int]) -> dict[int, Value]:
    """Values that the loop body writes, once per iteration, into a tape made outside it
    at the iteration's slot (the primal loop of a gradient): value id -> tape. Reverse
    over reverse reads them back from there instead of saving them again."""
    local = defined_ids(body)
    out: dict[int, Value] = {}
    for n in body.nodes:
        if n.op not in (TAPE_SET, TAPE_APPEND) or n.inputs[0].id in local | rewritten:
            continue
        if n.op is TAPE_SET and not _is_iteration(node, body, n.inputs[1]):
            continue
        out.setdefault(n.inputs[-1].id, n.inputs[0])
    return out


def _is_iteration(node: Node, body: Block, k: Value) -> bool:
    """True if `k` is the iteration number of `for` loop `node` (as `_iteration` makes it)."""
    if node.op is not FOR:
        return False
    i = body.params[0]
    start, _, step = node.inputs[:3]
    if start.const == 0 and step.const == 1:
        return k is i
    defs = {v.id: n for n in body.nodes for v in n.outputs}
    div = defs.get(k.id)
    if div is None or div.op is not op_for(operator.floordiv) or div.inputs[1] is not step:
        return False
    sub = defs.get(div.inputs[0].id)
    return sub is not None and sub.op is op_for(operator.sub) and sub.inputs == [i, start]


def _ZERO_LIKE():  # noqa: N802
    from adcompiler.ops.mutation import ZERO_LIKE

    return ZERO_LIKE


def _is_literal(v: Value, block: Block) -> bool:
    return v.is_const and "name" not in _const_attrs(block, v)


def _recompute_index_arithmetic(
    body: Block, ab: Block, index: Value, rewritten: set[int] = frozenset()
) -> None:
    """Values of a `for` body computed from the loop index and constants only (`t + 1`)
    are computed again in the adjoint loop from its own index, not saved."""
    i = body.params[0]
    defs = {v.id: n for n in body.nodes for v in n.outputs}
    local = defined_ids(body)
    cheap: dict[int, bool] = {i.id: True}

    def recomputable(v: Value) -> bool:
        if v.id not in cheap:
            node = defs.get(v.id)
            if node is not None and node.op is TAPE_GET:  # read again from a tape made outside
                tape, k = node.inputs
                cheap[v.id] = tape.id not in local | rewritten and recomputable(k)
            else:
                cheap[v.id] = (
                    node is not None
                    and node.op.integer
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
            if v.is_const or v.id not in local:
                return v
            node = defs[v.id]
            inputs = [copy(x) for x in node.inputs]
            out = Value(v.hint, role=v.role, loc=v.loc)
            nodes.append(Node(node.op, inputs, dict(node.attrs), [out], loc=node.loc))
            copies[v.id] = out
        return copies[v.id]

    replace = {v.id: copy(v) for v in wanted}
    consts = {x.id for n in nodes for x in n.inputs if x.is_const and x.id in local}
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


def _is_view(block: Block, v: Value) -> bool:
    """True if `v` may be a view of another array (an index, a reshape, ...; or, through
    an operator that shows its whole input, as `unbroadcast`, `broadcast_to` and
    `stop_gradient` do, a view of one), from the operators' `View` traits."""
    for n in block.nodes:
        if v in n.outputs:
            if n.op is GETITEM and _is_call_result(block, n.inputs[0]):
                # of a helper's (value, saved values) pair: the value may be a view (the
                # helper returned one); the saved values are a tuple, not an array
                return n.attrs["index"] == ((0,), True)
            base = view_of(n)
            if base is None:
                return False
            return not n.op.view.whole or _is_view(block, base)
    return False


def _is_call_result(block: Block, v: Value) -> bool:
    """True if `v` is the (value, saved values) pair a helper's forward function returns."""
    return any(v in n.outputs and n.op is CALL_FWD for n in block.nodes)


def _tape_like(b: Builder, tape: Value) -> Value:
    """A tape as long as `tape` (``[None] * len(h_saved)``): the adjoint tape of `tape`."""
    n = b.call(len, tape).value
    n.hint, n.role = f"{tape.hint}_len", "adjoint_temp"  # never named `len`
    out = b.emit_sym(TAPE_NEW, [n]).value
    out.hint, out.role = tape.hint, "adjoint"
    return out


def tape_values(fn: Function) -> set[int]:
    """Ids of the values that hold tapes: made by `tape_new`/`tape_list`, read from a tape
    of tapes (nested loops), or passed through an `if` or a loop."""
    tapes: set[int] = set()
    nodes = list(walk(fn.body))
    writes = [n for n in nodes if n.op in (TAPE_SET, TAPE_APPEND)]
    while True:
        before = len(tapes)
        holding = {n.inputs[0].id for n in writes if n.inputs[-1].id in tapes}  # of tapes
        for n in nodes:
            if n.op in (TAPE_NEW, TAPE_LIST):
                tapes.add(n.output.id)
            elif n.op is TAPE_GET and n.inputs[0].id in holding:
                tapes.add(n.output.id)
            elif n.regions:
                inits = passes.carried_inits(n)
                for region in passes.yielding_regions(n):
                    for y, out in zip(region.yields, n.outputs):
                        if y.id in tapes:
                            tapes.add(out.id)
                for region in n.regions:
                    for p, init in zip(passes.carried_params(n, region), inits):
                        if init.id in tapes:
                            tapes.add(p.id)
        if len(tapes) == before:
            return tapes


def _rewritten_tapes(fn: Function) -> set[int]:
    """Tapes written by more than one node: a third derivative's adjoint tapes, whose
    slots a second read adds to (``h_saved_bar[t] = h_saved_bar[t] + h_bar``)."""
    seen: set[int] = set()
    twice: set[int] = set()
    for n in walk(fn.body):
        if n.op in (TAPE_SET, TAPE_APPEND):
            (twice if n.inputs[0].id in seen else seen).add(n.inputs[0].id)
    return twice


def varied_through_tapes(fn: Function, wrt: list[Value]) -> set[int]:
    """Values that depend on `wrt`, also through values saved on tapes and read back."""
    if not any(n.op in (TAPE_SET, TAPE_APPEND) for n in walk(fn.body)):
        return passes.varied(fn, wrt)  # no tapes
    return passes.varied_through_tapes(fn, wrt)[0]


def useful_through_tapes(fn: Function, roots: list[Value]) -> set[int]:
    """Values that some root depends on, also through tapes: a value written on a tape
    is useful if a value read from that tape is."""
    writes = [n for n in walk(fn.body) if n.op in (TAPE_SET, TAPE_APPEND)]
    seeds = list(roots)
    while True:
        useful = passes.useful(fn, seeds)
        new = [
            n.inputs[-1]
            for n in writes
            if n.inputs[0].id in useful and n.inputs[-1].id not in useful
        ]
        if not new:
            return useful
        seeds += new


def _tapes_saved_last(block: Block, tapes: set[int]) -> None:
    """Move the writes that save a tape (of an inner loop) on a tape of the outer loop to
    the end of their region. The same list is saved either way, but the reverse sweep
    then meets the write, which gives the inner tape its adjoint tape, before the inner
    loop that needs it."""
    last = [n for n in block.nodes if n.op in (TAPE_SET, TAPE_APPEND) and n.inputs[-1].id in tapes]
    moved = {id(n) for n in last}
    block.nodes[:] = [n for n in block.nodes if id(n) not in moved] + last
    for node in block.nodes:
        for region in node.regions:
            _tapes_saved_last(region, tapes)


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
        if node.op is not SHAPE:
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
        if node.op is SHAPE:
            before = rewrite(node)
            nodes[position:position] = before
            position += len(before)
        position += 1


def tapes_refused(fn: Function) -> str | None:
    """Why reverse mode over `fn` (a generated function) cannot follow the values its
    loops save on tapes, or None if it can.

    An inner loop's tape is saved, per iteration of the outer loop, on a tape of tapes.
    In a second derivative made by reverse mode such a tape is read back by more than
    one loop (the gradient's adjoint loop and the two loops of the second sweep), and
    each reader would need the one adjoint tape of the inner tape before the adjoint of
    the outer read makes it: third derivatives by reverse mode through nested loops."""
    tapes = tape_values(fn)
    reads: dict[int, int] = {}
    for n in walk(fn.body):
        if n.op is TAPE_GET and n.output.id in tapes:
            reads[n.inputs[0].id] = reads.get(n.inputs[0].id, 0) + 1
    if any(count > 1 for count in reads.values()):
        return (
            "its nested loops read an inner loop's saved values in more than one loop, "
            "which reverse mode does not follow yet (a third derivative through nested "
            "loops by reverse mode; forward mode over it, ad.jvp, works)"
        )
    return None
