"""The rewrites that the facts about a generated function's values allow.

%s = shape(%x)                               (%x, %g seen with shape (32, 10))
%gx = unbroadcast(%g, %s)       ──▶          uses of %gx read %g
"""

from __future__ import annotations

import numpy as np

from adcompiler import passes
from adcompiler.ops.control import TAPE_GET
from adcompiler.ops.core import lookup
from adcompiler.ops.guards import CHECK_SCALAR, CHECK_SEED
from adcompiler.ops.mutation import INDEX_ADD
from adcompiler.ops.numpy_ops import (
    BROADCAST_TO,
    DIVIDE,
    MATMUL_LHS_ADJOINT,
    MATMUL_RHS_ADJOINT,
    UNBROADCAST,
)
from adcompiler.ops.shapes import BROADCAST_SHAPES
from adcompiler.ops.structure import CHECK_FLOAT, CHECK_REAL, SHAPE, SIZE, UNINDEX
from adcompiler.specialize.assemble import join_slice_adjoints
from adcompiler.specialize.batch import batch_loop_sums
from adcompiler.specialize.buffers import mark_reuse
from adcompiler.specialize.facts import float_array, shape_of, value_of
from adcompiler.specialize.stacks import stack_tapes
from adcompiler.specialize.sums import push_sums
from adcompiler.ssa import Function, Node, Value, clone, walk

# The rewrites, in the order `specialize` applies them. `specialize(fn, known, on)`
# applies only those named in `on`: the check (adcompiler.specialize.check) finds the
# first one that makes a version differ from the generic code by turning them on one
# after another (a bisection over this list).
REWRITES = (
    "checks",  # check_float / check_scalar / check_seed, run by the probe for this signature
    "sizes",  # np.size(g) in mean's adjoint, as a constant
    "shapes",  # a shape the derivative takes (np.shape, broadcast_shapes), as a constant
    "new axes",  # the adjoint of x[:, None, :] is a reshape
    "indices",  # integer indices settled by the shapes, as literals
    "matmul adjoints",  # g @ b.T and a.T @ g written out
    "tape reads",  # a tape read of a CONST value is the constant
    "unbroadcast",  # unbroadcast(g, s) is g, or a sum over the broadcast axes
    "fold constants",  # arithmetic on the constants above, simplified once more; a
    # float scalar times 1 is the scalar
    "scalars together",  # (s * a) * k is a * (s * k)
    "cse",  # common subexpressions, reads included
    "broadcasts",  # broadcast_to(s, shape) * y is s * y
    "sums",  # sums moved ahead of linear steps (adcompiler.specialize.sums)
    "loop sums",  # a loop's carried sums of products, after it (specialize.batch)
    "slices",  # adjoints of slices that tile an array, joined (specialize.assemble)
    "buffers",  # results written into an operand's buffer (specialize.buffers)
    "tapes",  # tapes as one array (specialize.stacks)
)


def specialize(fn: Function, known: dict[int, tuple], on=REWRITES) -> Function:
    """A copy of `fn` without the shape work that `known` settles, by the rewrites named
    in `on` (all of `REWRITES` by default)."""
    on = frozenset(on)
    out = clone(fn)
    defs = {v.id: n for n in walk(out.body) for v in n.outputs}
    replace: dict[int, Value] = {}
    for block in passes.blocks(out.body):
        nodes: list[Node] = []
        for node in block.nodes:
            node.inputs = [replace.get(v.id, v) for v in node.inputs]
            nodes.extend(_rewrite(node, known, defs, replace, on))
        block.nodes = nodes
    passes.substitute(out, replace)
    if "fold constants" in on:  # the shapes made constants: `-(1.0 / n)`
        passes.simplify(passes.fold_constants(out))
        _unit_products(out, known)
    if "scalars together" in on:
        _scalars_together(out, known)
        passes.fold_constants(out)
    if "cse" in on:
        passes.cse(out, reads=True)
    out = passes.dce(out)  # readers that are dead would keep broadcasts below alive
    if "broadcasts" in on:
        # `broadcast_to(s, shape) * y` is `s * y` where `y` is a float64 array of that
        # shape already (the product has that shape and dtype either way), for every reader
        passes.drop_broadcasts(out, lambda node, i, target: _product_of_shape(
            node, i, value_of(target, known), known), one_reader=False)  # fmt: skip
    if "sums" in on:
        push_sums(out, known)
    if "loop sums" in on:
        batch_loop_sums(out, known)
    if "slices" in on:
        join_slice_adjoints(out, known)
    out = passes.dce(out)
    if "buffers" in on:
        mark_reuse(out, known)
    if "tapes" in on:
        stack_tapes(out, known)
    return passes.dce(out)  # copies that writing a row makes anyway


def _rewrite(node: Node, known: dict, defs: dict, replace: dict, on=REWRITES) -> list[Node]:
    op = node.op
    if op is CHECK_FLOAT and "checks" in on and all(v.id in known for v in node.inputs):
        return []  # the arguments' dtypes are the signature's: checked once, in the probe
    if op is CHECK_REAL and "checks" in on:
        return []  # whether an argument is complex is in the signature: the probe ran it
    if op is CHECK_SCALAR and "checks" in on and shape_of(node.inputs[0], known) == ():
        return []
    if op is CHECK_SEED and "checks" in on:
        return []  # made from that IR only where the observation showed a float64 scalar
    if op is SIZE and "sizes" in on and value_of(node.output, known) is not None:
        return [const_node(value_of(node.output, known), node, replace)]  # np.size(g): mean
    if op in (SHAPE, BROADCAST_SHAPES) and "shapes" in on and _derived(node) and (
            isinstance(value_of(node.output, known), tuple)):  # fmt: skip
        # a shape the derivative needs: the value it is taken of may not be needed at all
        return [const_node(value_of(node.output, known), node, replace)]
    if op is UNINDEX and "new axes" in on and (flat := _only_new_axes(node, known)):
        return flat  # the adjoint of x[:, None, :] is a reshape: no zeros to fill
    if op in (INDEX_ADD, UNINDEX) and "indices" in on:  # integers settled by the
        first = 2  # shapes, as literals: (x, g, *dyn) or (g, shape, *dyn);
        consts = []  # `x[:, 16:24] += g` needs no add_at
        for v in node.inputs[first:]:
            value = value_of(v, known)
            consts.append(const_node(value, node, {}) if type(value) is int else None)
        node.inputs[first:] = [c.output if c else v for c, v in zip(consts, node.inputs[first:])]
        return [c for c in consts if c] + [node]
    if op in (MATMUL_LHS_ADJOINT, MATMUL_RHS_ADJOINT) and "matmul adjoints" in on:
        return _matmul_adjoint(node, known) or [node]
    if op is TAPE_GET and "tape reads" in on and value_of(node.output, known) is not None:
        # a shape or an index that is the same in every iteration: no need to save it
        return [const_node(value_of(node.output, known), node, replace)]
    if op not in (UNBROADCAST, BROADCAST_TO) or "unbroadcast" not in on:
        return [node]
    x, target = node.inputs
    shape, want = shape_of(x, known), value_of(target, known)
    if shape is None or not isinstance(want, tuple):
        return [node]
    array = known.get(x.id, ("",))[0] == "array"
    if shape == want and (array or op is UNBROADCAST):  # (broadcast_to makes an array)
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
    if op is BROADCAST_TO or not array:
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


def _unit_products(fn: Function, known: dict) -> None:
    """`1.0 * s` and `s / 1.0` are `s` where `s` is an argument that the signature says
    is a float scalar. The rules keep them where `s` may be a boolean (`1.0 * mask` is
    not `mask`). Only arguments: the type of a value computed inside may change with the
    data under the same signature (`a > 0 and a * 3.0` is False or a float); an array is
    kept too, so that a gradient is never the caller's own array."""
    multiply = lookup(np.multiply)
    params = {p.id for p in fn.params}

    def one(v: Value) -> bool:
        return v.is_const and type(v.const) in (int, float) and v.const == 1

    def float_scalar(v: Value) -> bool:
        fact = known.get(v.id) if v.id in params else None
        return fact is not None and (fact[0] == "float" or fact[0] == "scalar" and (
            fact[1] in ("float64", "float32", "float16")))  # fmt: skip

    replace: dict[int, Value] = {}
    for node in walk(fn.body):
        node.inputs = [replace.get(v.id, v) for v in node.inputs]
        if len(node.inputs) != 2 or len(node.outputs) != 1:
            continue
        x, y = node.inputs
        kept = None
        if node.op is multiply:
            kept = y if one(x) else x if one(y) else None
        elif node.op is DIVIDE and one(y):
            kept = x
        if kept is not None and float_scalar(kept):
            replace[node.output.id] = kept
    passes.substitute(fn, replace)


def _scalars_together(fn: Function, known: dict) -> None:
    """`(s * a) * k` with `s` a scalar and `k` a constant is `a * (s * k)`: one pass
    over the array, not two (`w_bar = lam * w; w_bar *= 2` is `w_bar = w * (lam * 2)`)."""
    counts = passes.read_counts(fn)
    defs = {v.id: n for n in walk(fn.body) for v in n.outputs}
    multiply = lookup(np.multiply)

    def scalar(v: Value) -> bool:
        return v.is_const and type(v.const) in (int, float) or shape_of(v, known) == () and (
            known.get(v.id, ("",))[0] in ("float", "int", "array"))  # fmt: skip

    for block in passes.blocks(fn.body):
        nodes: list[Node] = []
        for node in block.nodes:
            nodes.append(node)
            if node.op is not multiply or len(node.inputs) != 2:
                continue
            for p, k in (node.inputs, node.inputs[::-1]):
                inner = defs.get(p.id)
                if not (k.is_const and type(k.const) in (int, float)) or inner is None:
                    continue
                if inner.op is not multiply or counts.get(p.id) != 1 or inner not in nodes:
                    continue
                a, b = inner.inputs
                s, array = (a, b) if scalar(a) and not scalar(b) else (b, a)
                if not scalar(s) or scalar(array) or not float_array(known.get(array.id)):
                    continue
                together = Node(multiply, [s, k], {}, loc=node.loc)
                together.output.role = "adjoint_temp" if node.output.role != "primal" else "temp"
                nodes.insert(len(nodes) - 1, together)
                node.inputs = [array, together.output]
                break
        block.nodes = nodes


def _only_new_axes(node: Node, known: dict) -> list[Node] | None:
    """`[reshape(g, shape)]` for `unindex(g, shape, ...)` whose index only takes whole
    axes and adds new ones (`[:, None, :]`): every element of `g` lands once, in order."""
    from adcompiler.ops.structure import build_index

    g, target, *dyn = node.inputs
    shape, g_shape = value_of(target, known), shape_of(g, known)
    values = [value_of(v, known) for v in dyn]
    if not isinstance(shape, tuple) or g_shape is None or None in values:
        return None
    try:
        index = build_index(node.attrs["index"], values)
    except (IndexError, TypeError):
        return None
    items = index if isinstance(index, tuple) else (index,)
    if not all(p is None or p == slice(None) for p in items) or not float_array(known.get(g.id)):
        return None
    if int(np.prod(shape)) != int(np.prod(g_shape)) or sum(p is not None for p in items) > len(
            shape):  # fmt: skip
        return None
    const = passes.constant(shape, node.loc, "shape")
    return [const, Node(lookup(np.reshape), [g, const.output], {}, [node.output], loc=node.loc)]


def _derived(node: Node) -> bool:
    """True for a node the transforms made (an adjoint's or a tangent's), not the user."""
    return node.output.role not in ("primal", "temp")


def _matmul_adjoint(node: Node, known: dict) -> list[Node] | None:
    """The adjoints of a 2-D `a @ b` written out: `g @ b.T` and `a.T @ g` (what the
    run-time helper does after looking at the dimensions, which are known here)."""
    g, a, b = node.inputs
    dims = [len(known[v.id][1]) if float_array(known.get(v.id)) else None for v in (g, a, b)]
    if node.op is MATMUL_LHS_ADJOINT and dims == [2, 2, 2]:
        left, right = g, b  # g @ b.T
    elif node.op is MATMUL_RHS_ADJOINT and dims[1] == 2 and dims[0] == dims[2]:
        left, right = a, g  # a.T @ g
    else:
        return None
    flip = Node(lookup(np.transpose), [right if left is g else left], {"axes": None},
                loc=node.loc)  # fmt: skip
    flip.outputs[0].role = "adjoint_temp"
    first, second = (left, flip.output) if left is g else (flip.output, right)
    product = Node(lookup(np.matmul), [first, second], {}, [node.output], loc=node.loc)
    return [flip, product]


def const_node(value, at: Node, replace: dict) -> Node:
    """`at`'s output as the constant `value` (its readers read it through `replace`)."""
    node = passes.constant(value, at.loc, at.output.hint, at.output.role)
    replace[at.output.id] = node.output
    return node


def _sum_node(x: Value, axes: tuple, keepdims: bool, at: Node) -> Node:
    axis = axes[0] if len(axes) == 1 else axes
    return Node(lookup(np.sum), [x], {"axis": axis, "keepdims": keepdims}, loc=at.loc)


def _product_of_shape(node: Node, i: int, want: tuple | None, known: dict) -> bool:
    """True if the other operand of elementwise `node` is a float64 array of shape
    `want`."""
    if not want:
        return False
    d = known.get(node.inputs[1 - i].id, ("",))
    return d[0] == "array" and d[1] == want and d[2] == np.dtype(np.float64).str
