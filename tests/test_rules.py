"""Every derivative rule in the registry, checked against central finite differences.

Two parts:

- a walk over `adcompiler.ops.OPS`: every operator has an adjoint and a tangent
  rule or is marked non-differentiable; and every differentiable operator but the
  internal helpers listed in `INTERNAL` is used by
  some function of the corpus;
- one test per function of `tests/corpus_ops.py` (and per broadcasting pair for
  binary operators): `adcompiler.check_grad` at random float64 inputs.

An argument is described by a small spec: ``"n,m"`` is an array whose sizes are
drawn per case (letters) or fixed (digits), ``""`` a Python float; a suffix
says where to draw the values: ``:pos`` (0.5 to 2), ``:unit`` (-0.8 to 0.8),
``:mat`` (a well-conditioned square matrix, or a batch of them; ``:negmat``: with
a negative determinant), ``:spd`` (symmetric positive definite; ``:spdlow``: only
its lower triangle, noise above), ``:unit01`` (0.1 to 0.9), ``:modx`` and
``:mody`` (x % y away from its jumps). The weights `w` of the output are drawn
to match the output's shape, found by running the function once on a probe.
"""

from __future__ import annotations

import inspect
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import adcompiler as ad
from adcompiler import ops, passes
from adcompiler.frontend import lower_function
from adcompiler.ops import Builder, Sym
from adcompiler.ops.structure import build_index
from adcompiler.ssa import Node, Value
from tests import corpus_ops as C
from tests import corpus_ops_more as M

# Operators that only rules emit (no user writes them), so no corpus function
# uses them. Their own rules give second derivatives; tests/test_higher.py
# checks those against finite differences of the first derivative.
INTERNAL = {
    "prod_adjoint_tangent",
    "matmul_lhs_adjoint",
    "matmul_rhs_adjoint",
    "dot_lhs_adjoint",
    "dot_rhs_adjoint",
    "max_adjoint",
    "prod_adjoint",
    "cumsum_adjoint",
    "trace_adjoint",
    "einsum_adjoint",
    "untile",
    "unrepeat",
    "unjoin",
    "norm_adjoint",
    "det_adjoint",
    "solve_lhs_adjoint",
    *M.INTERNAL,
}


# ---------------------------------------------------------------------------
# The registry walk
# ---------------------------------------------------------------------------


def test_every_operator_has_an_adjoint_or_is_nondiff():
    missing = [
        op.name
        for op in ops.OPS
        if not op.nondiff
        and not op.regions  # if/for/while: handled by the transforms themselves
        and op.adjoint is None
    ]
    assert not missing, f"operators without an adjoint rule: {missing}"


def test_every_operator_has_a_tangent_or_is_nondiff():
    missing = [
        op.name
        for op in ops.OPS
        if not op.nondiff
        and not op.regions  # if/for/while: handled by the transforms themselves
        and op.tangent is None
    ]
    assert not missing, f"operators without a tangent rule: {missing}"


def test_internal_operators_are_registered_helpers():
    by_name = {op.name: op for op in ops.OPS}
    assert INTERNAL <= set(by_name), INTERNAL - set(by_name)
    from adcompiler import runtime

    for name in INTERNAL:
        assert by_name[name].impl is runtime.HELPERS[name], name


def test_every_differentiable_operator_is_in_the_corpus():
    used = set()
    for fn in {c.fn for c in CASES if not c.xfail}:
        used |= {node.op.name for node in lower_function(fn).body.nodes}
    differentiable = {
        op.name for op in ops.OPS if not op.nondiff and not op.regions and op.name not in INTERNAL
    }
    # `unindex` and `index_add` are emitted by the reverse transform, not written by users;
    # the run-time list operators are exercised by tests/test_control.py.
    lists = {"list", "list_append", "stack_list", "array_list", "sum_list", "unstack", "spread"}
    untested = differentiable - used - {"unindex", "index_add"} - lists
    assert not untested, f"operators no corpus function uses: {sorted(untested)}"


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    fn: object
    args: dict[str, str]
    wrt: tuple[str, ...]
    tol: dict = field(default_factory=dict)
    xfail: str = ""

    def param(self):
        marks = [pytest.mark.xfail(strict=True, reason=self.xfail)] if self.xfail else []
        return pytest.param(self, id=self.id, marks=marks)


def case(fn, *, wrt=None, id=None, tol=None, xfail="", **args) -> Case:
    return Case(id or fn.__name__, fn, args, tuple(wrt or args), tol or {}, xfail)


BROADCAST_PAIRS = [
    ("n,m", "n,m"),
    ("n,m", "m"),
    ("m", "n,m"),
    ("n,m", "n,1"),
    ("1,m", "n,m"),
    ("n,1", "1,m"),
    ("n,m", ""),
    ("", "n,m"),
    ("", ""),
    ("k,1,m", "n,1"),
]

BINARY = [
    (C.add, "", ""),
    (C.sub, "", ""),
    (C.mul, "", ""),
    (C.div, "", ":pos"),
    (C.pow_, ":pos", ""),
    (C.mod, ":modx", ":mody"),
    (C.np_add, "", ""),
    (C.np_subtract, "", ""),
    (C.np_multiply, "", ""),
    (C.np_divide, "", ":pos"),
    (C.np_power, ":pos", ""),
    (C.maximum, "", ""),
    (C.minimum, "", ""),
    (C.logaddexp, "", ""),
    (C.where, "", ""),
]


def _binary_cases():
    for fn, xkind, ykind in BINARY:
        for xs, ys in BROADCAST_PAIRS:
            yield case(
                fn,
                id=f"{fn.__name__}[{xs or 'scalar'}|{ys or 'scalar'}]",
                x=xs + xkind,
                y=ys + ykind,
            )


UNARY = [
    (C.exp, ""),
    (C.log, ":pos"),
    (C.log1p, ":pos"),
    (C.expm1, ""),
    (C.sqrt, ":pos"),
    (C.square, ""),
    (C.reciprocal, ":pos"),
    (C.abs_, ""),
    (C.absolute, ""),
    (C.builtin_abs, ""),
    (C.sin, ""),
    (C.cos, ""),
    (C.tan, ":unit"),
    (C.arcsin, ":unit"),
    (C.arccos, ":unit"),
    (C.arctan, ""),
    (C.sinh, ""),
    (C.cosh, ""),
    (C.tanh, ""),
    (C.negative, ""),
    (C.neg, ""),
    (C.pos, ""),
    (C.pow_const, ":pos"),
    (C.pow_const_base, ""),
    (C.mod_const, ":modx"),
    (C.rsub_rdiv, ":pos"),
    (C.floordiv, ":modx"),
    (C.nondiff_mix, ""),
    (C.where_scalar, ""),
    (C.clip, ""),
    (C.clip_lower, ""),
    (C.clip_upper, ""),
]


def _unary_cases():
    for fn, kind in UNARY:
        yield case(fn, id=f"{fn.__name__}[n,m]", x="n,m" + kind)
        yield case(fn, id=f"{fn.__name__}[scalar]", x=kind)


REDUCTIONS_3D = [
    C.sum_all, C.sum_axis0, C.sum_axis1_keep, C.sum_axis_neg, C.sum_axes_tuple,
    C.sum_axes_tuple_keep, C.mean_all, C.mean_axis0, C.mean_axis_neg_keep, C.mean_axes_tuple,
    C.prod_all, C.prod_axis0, C.prod_axis_neg_keep, C.prod_axes_tuple, C.prod_with_zero,
    C.max_all, C.max_axis0, C.max_axis_neg_keep, C.max_axes_tuple, C.amax, C.min_all,
    C.min_axis1, C.min_axes_tuple_keep, C.amin, C.cumsum_flat, C.cumsum_axis0,
    C.cumsum_axis_neg,
]  # fmt: skip


def _reduction_cases():
    for fn in REDUCTIONS_3D:
        yield case(fn, id=f"{fn.__name__}[k,n,m]", x="k,n,m")
        if "tuple" not in fn.__name__ and "axis1" not in fn.__name__ and fn is not C.amax:
            yield case(fn, id=f"{fn.__name__}[n]", x="n")
        if "tuple" not in fn.__name__:
            yield case(fn, id=f"{fn.__name__}[n,m]", x="n,m")


DOT_RANKS = ["", "n", "n,m"]


def _dot_cases():
    shape = {"": "", "n": "m", "n,m": "m,k"}
    for a in DOT_RANKS:
        for b in DOT_RANKS:
            left = {"": "", "n": "m", "n,m": "n,m"}[a]
            right = shape[b] if a else {"": "", "n": "m", "n,m": "m,k"}[b]
            yield case(C.dot, id=f"dot[{left or 'scalar'}|{right or 'scalar'}]", x=left, y=right)
            yield case(
                C.method_dot,
                id=f"method_dot[{left or 'scalar'}|{right or 'scalar'}]",
                x=left or "m",
                y=right,
            )


MATMUL_PAIRS = [
    ("m", "m"),
    ("m", "m,k"),
    ("n,m", "m"),
    ("n,m", "m,k"),
    ("b,n,m", "b,m,k"),
    ("b,n,m", "m,k"),
    ("n,m", "b,m,k"),
    ("2,1,n,m", "b,m,k"),
    ("m", "b,m,k"),
    ("b,n,m", "m"),
]


def _matmul_cases():
    for fn in (C.matmul_op, C.einsum_ellipsis):
        for xs, ys in MATMUL_PAIRS:
            if fn is C.einsum_ellipsis and (len(xs) < 3 or len(ys) < 3):
                continue
            yield case(fn, id=f"{fn.__name__}[{xs}|{ys}]", x=xs, y=ys)


OTHER = [
    case(C.where, id="where[cond scalar-only]", x="n,m", y="n,m"),
    case(C.where_cond_only, x="n,m", y="n,m"),
    case(C.where_cond_only, id="where_cond_only[broadcast]", x="m", y="n,m"),
    case(C.clip_arrays, x="n,m", lo="n,m", hi="n,m", id="clip_arrays[same]"),
    case(C.clip_arrays, x="n,m", lo="m", hi="n,1", id="clip_arrays[broadcast]"),
    case(C.clip_arrays, x="m", lo="n,m", hi="", id="clip_arrays[x broadcast]"),
    case(C.trace, x="n,n"),
    case(C.trace, id="trace[n,m]", x="n,m"),
    case(C.trace_nonsquare, x="n,m"),
    case(C.trace_axes, x="k,n,m"),
    case(C.trace_offset, x="n,m"),
    case(C.outer, x="n", y="m"),
    case(C.outer, id="outer[2d]", x="n,2", y="m"),
    case(C.outer, id="outer[scalar]", x="", y="m"),
    case(C.vdot, x="n,m", y="n,m"),
    case(C.vdot, id="vdot[reshaped]", x="n,m", y="m,n"),
    case(C.einsum_matmul, x="n,m", y="m,k"),
    case(C.einsum_implicit, x="n,m", y="m,k"),
    case(C.einsum_implicit_transpose, x="n,m"),
    case(C.einsum_inner, x="n,m", y="n,m"),
    case(C.einsum_batched, x="b,n,m", y="b,m,k"),
    case(C.einsum_outer, x="n", y="m,k"),
    case(C.einsum_only_in_one, x="n,m", y="m,k"),
    case(C.einsum_trace, x="n,n"),
    case(C.einsum_diag, x="n,n"),
    case(C.einsum_three, x="n,m", y="m,k", z="k"),
    case(C.transpose, x="n,m"),
    case(C.transpose, id="transpose[k,n,m]", x="k,n,m"),
    case(C.transpose_axes, x="k,n,m"),
    case(C.transpose_axes_kw, x="k,n,m"),
    case(C.swapaxes, x="k,n,m"),
    case(C.reshape, x="2,3,m"),
    case(C.reshape_flat, x="n,m"),
    case(C.ravel, x="n,m"),
    case(C.asarray, x="n,m"),
    case(C.squeeze, x="n,1,m,1"),
    case(C.squeeze_axis, x="n,1,m"),
    case(C.expand_dims, x="n,m"),
    case(C.expand_dims_neg, x="n"),
    case(C.expand_dims_tuple, x="n,m"),
    case(C.concatenate, x="n,m", y="k,m"),
    case(C.concatenate, id="concatenate[1d]", x="n", y="m"),
    case(C.concatenate_axis1, x="n,m", y="n,k"),
    case(C.concatenate_axis_neg, x="k,n,m", y="k,n,2"),
    case(C.stack, x="n,m", y="n,m"),
    case(C.stack, id="stack[1d]", x="n", y="n"),
    case(C.stack, id="stack[scalars]", x="", y=""),
    case(C.stack_axis1, x="n,m", y="n,m"),
    case(C.stack_axis_neg, x="n,m", y="n,m"),
    case(C.hstack, x="n", y="m"),
    case(C.hstack, id="hstack[2d]", x="n,m", y="n,k"),
    case(C.hstack, id="hstack[scalars]", x="", y=""),
    case(C.vstack, x="m", y="m"),
    case(C.vstack, id="vstack[2d]", x="n,m", y="k,m"),
    case(C.vstack, id="vstack[1d and 2d]", x="m", y="k,m"),
    case(C.r_, x="n", y="m"),
    case(C.r_, id="r_[scalars]", x="", y=""),
    case(C.r_, id="r_[2d]", x="n,m", y="k,m"),
    case(C.c_, x="n", y="n"),
    case(C.c_, id="c_[2d and 1d]", x="n,m", y="n"),
    case(C.c_, id="c_[scalars]", x="", y=""),
    case(C.full_fill, x=""),
    case(C.full_fill, id="full_fill[row]", x="3"),
    case(C.full_like_fill, x="", y="n,m"),
    case(C.full_like_fill, id="full_like_fill[row]", x="m", y="n,m"),
    case(C.arange_start, x=""),
    case(C.bool_or, x="", y=""),
    case(C.bool_and, x="", y=""),
    case(C.astype_int, x="n,m"),
    case(C.list_literal_sum, x="", y=""),
    case(C.list_literal_mean, x="m", y="m"),
    case(C.list_literal_norm, x="", y=""),
    case(C.list_literal_ufunc, x="m", y="m"),
    case(C.list_literal_operand, x="2,2", y=""),
    case(C.broadcast_to, x="4"),
    case(C.broadcast_to, id="broadcast_to[3,1]", x="3,1"),
    case(C.broadcast_to, id="broadcast_to[scalar]", x=""),
    case(C.tile, x="n"),
    case(C.tile, id="tile[n,m]", x="n,m"),
    case(C.tile_tuple, x="n"),
    case(C.tile_tuple, id="tile_tuple[n,m]", x="n,m"),
    case(C.tile_more_reps, x="n,m"),
    case(C.repeat_flat, x="n,m"),
    case(C.repeat_axis0, x="n,m"),
    case(C.repeat_axis_neg, x="n,m"),
    case(C.repeat_counts, x="3,m"),
    case(C.copy, x="n,m"),
    case(C.norm, x="n"),
    case(C.norm, id="norm[n,m]", x="n,m"),
    case(C.norm_axis0, x="n,m"),
    case(C.norm_axis_neg_keep, x="k,n,m"),
    case(C.norm_ord2_vector, x="n"),
    case(C.norm_ord1_vector, x="n"),
    case(C.norm_ord3_vector, x="n"),
    case(C.norm_inf_vector, x="n"),
    case(C.norm_fro, x="n,m"),
    case(C.norm_nuc, x="n,m"),
    case(C.norm_ord2_matrix, x="n,m"),
    case(C.norm_ord1_axis, x="n,m"),
    case(C.norm_ord1_matrix, x="n,m"),
    case(C.norm_inf_matrix, x="n,m"),
    case(C.norm_neg_inf_matrix, x="n,m"),
    case(C.norm_neg2_matrix, x="n,m"),
    case(C.norm_nuc_axis_pair, x="k,n,m"),
    case(C.norm_fro_axis_pair, x="k,n,m"),
    case(C.norm_neg_inf_vector, x="n"),
    case(C.norm_ord0_vector, x="n"),
    case(C.norm_at_zero, x="n"),
    case(C.inv, x="n,n:mat"),
    case(C.inv_batched, x="b,n,n:mat"),
    case(C.det, x="n,n:mat"),
    case(C.det_batched, x="b,n,n:mat"),
    case(C.solve, id="solve[vector]", a="n,n:mat", b="n"),
    case(C.solve, id="solve[matrix]", a="n,n:mat", b="n,k"),
    case(C.array_from_scalars, a="", b=""),
    case(C.array_nested, a="", b=""),
    case(C.array_from_elements, x="n"),
    case(C.index_int, x="n,m"),
    case(C.index_int, id="index_int[n]", x="n"),
    case(C.index_negative, x="n,m"),
    case(C.index_two_ints, x="n,m"),
    case(C.index_slice, x="4,m"),
    case(C.index_slice_step, x="5,m"),
    case(C.index_slice_reverse, x="n,m"),
    case(C.index_slice_tuple, x="n,5"),
    case(C.index_slice_negative_step, x="5,m"),
    case(C.index_none, x="n,m"),
    case(C.index_newaxis, x="n,m"),
    case(C.index_newaxis_imported, x="n,m"),
    case(C.index_ellipsis, x="k,n,m"),
    case(C.index_int_array, x="3,m"),
    case(C.index_int_array, id="index_int_array[1d]", x="3"),
    case(C.index_int_array_2d, x="2,m"),
    case(C.index_int_list, x="3,m"),
    case(C.index_int_array_and_slice, x="3,m"),
    case(C.index_int_array_column, x="n,3"),
    case(C.index_bool_mask, x="n,m"),
    case(C.index_bool_mask_rows, x="5,m"),
    case(C.index_dynamic_int, x="n,m"),
    case(C.method_sum, x="n,m"),
    case(C.method_T, x="n,m"),
    case(C.method_reshape_varargs, x="3,n,2"),
    case(C.method_reshape_tuple, x="n,2"),
    case(C.method_transpose, x="k,n,m"),
    case(C.method_transpose_axes, x="k,n,m"),
    case(C.method_astype, x="n,m"),
    case(C.method_astype_float64, x="n,m"),
    case(C.method_copy, x="n,m"),
    case(C.method_mean, x="n,m"),
    case(C.method_max, x="n,m"),
    case(C.method_min_axis, x="n,m"),
    case(C.method_prod, x="n,m"),
    case(C.method_cumsum, x="n,m"),
    case(C.method_ravel, x="n,m"),
    case(C.method_flatten, x="n,m"),
    case(C.method_squeeze, x="1,n"),
    case(C.method_clip, x="n,m"),
    case(C.method_trace, x="n,n"),
    case(C.method_repeat, x="n,m"),
    case(C.builtin_float, x="n,m"),
    case(C.builtin_min_max, x="n,m"),
    case(C.setitem_rows, x="3,m", y="m"),
    case(C.builtin_float_element, x="n"),
    case(C.constructors, x="n,3"),
    case(C.constructor_only, x="n,m"),
    case(C.constructor_eye, x="m,m"),
    case(C.constructor_dtype, x="n,m"),
    case(C.random_location_scale, x="n,m", s="m"),
    case(C.random_global_state, x="n,m", s="n,1"),
]

CORNERS = [
    case(C.unbroadcast_op, x="k,n,m", y="n,1"),
    case(C.unbroadcast_op, id="unbroadcast_op[same]", x="n,m", y="n,m"),
    case(C.nondiff_all, x="n,m"),
    case(C.relu, x="n,m"),
    case(C.softplus, x="n,m"),
    case(C.where_broadcast_cond, c="n,1", x="m", y=""),
    case(C.sum_keepdims_all, x="n,m"),
    case(C.mean_keepdims_all, x="n,m"),
    case(C.max_keepdims_all, x="n,m"),
    case(C.sum_axis_neg2, x="k,n,m"),
    case(C.reduce_scalar, a=""),
    case(C.reshape_like, x="n,m", y="m,n"),
    case(C.squeeze_expand, x="n,m"),
    case(C.concatenate_flat, x="n,m", y="k"),
    case(C.vstack_scalars, a="", b=""),
    case(C.dot_nd, id="dot_nd[b,n,m|m,k]", x="b,n,m", y="m,k"),
    case(C.dot_nd, id="dot_nd[n,m|b,m,k]", x="n,m", y="b,m,k"),
    case(C.dot_nd, id="dot_nd[b,n,m|k,m,2]", x="b,n,m", y="k,m,2"),
    case(C.dot_nd, id="dot_nd[m|b,m,k]", x="m", y="b,m,k"),
    case(C.dot_nd, id="dot_nd[b,n,m|m]", x="b,n,m", y="m"),
    case(C.einsum_repeated_other, x="n,n", y="m"),
    case(C.einsum_scalar_operand, a="", x="n,m"),
    case(C.einsum_spaces, x="n,m", y="m,k"),
    case(C.solve_batched, a="b,n,n:mat", b="b,n,k"),
    case(C.index_dynamic_slice, x="4,m"),
    case(C.transpose_1d, x="n"),
    case(C.int_exponent_array, x="n,m"),
    case(C.chain, x="n,m", y="m,k"),
    case(C.reuse, x="n,m"),
]

LITERALS = [
    case(C.sum_axes_tuple_literal, x="k,n,m"),
    case(C.max_axes_tuple_literal, x="k,n,m"),
    case(C.transpose_axes_literal, x="k,n,m"),
    case(C.expand_dims_tuple_literal, x="n,m"),
    case(C.tile_tuple_literal, x="n,m"),
    case(C.repeat_counts_literal, x="3,m"),
]

CASES = [
    *_binary_cases(),
    *_unary_cases(),
    *_reduction_cases(),
    *_dot_cases(),
    *_matmul_cases(),
    *OTHER,
    *CORNERS,
    *LITERALS,
    *M.cases(case, BROADCAST_PAIRS),
]


# ---------------------------------------------------------------------------
# Drawing inputs
# ---------------------------------------------------------------------------


def draw(spec: str, dims: dict[str, int], rng: np.random.Generator):
    """An input for `spec` (see the module docstring)."""
    text, _, kind = spec.partition(":")
    shape = tuple(dims[d] if d.isalpha() else int(d) for d in text.split(",") if d)
    if kind == "mat":
        x = rng.normal(size=shape) + shape[-1] * np.eye(shape[-1])
    elif kind == "pos":
        x = rng.uniform(0.5, 2.0, size=shape)
    elif kind == "negmat":  # well-conditioned, with a negative determinant
        x = rng.normal(size=shape) + shape[-1] * np.eye(shape[-1])
        x[..., 0, :] *= -1
    elif kind in ("spd", "spdlow"):  # symmetric positive definite (spdlow: below the diagonal
        m = rng.normal(size=shape)  # and on it; what is above it is noise)
        x = m @ np.swapaxes(m, -1, -2) / shape[-1] + np.eye(shape[-1])
        if kind == "spdlow":
            x = np.tril(x) + np.triu(rng.normal(size=shape), 1)
    elif kind == "unit":
        x = rng.uniform(-0.8, 0.8, size=shape)
    elif kind == "unit01":
        x = rng.uniform(0.1, 0.9, size=shape)
    elif kind == "modx":
        x = rng.uniform(2.2, 2.8, size=shape)
    elif kind == "mody":
        x = rng.uniform(0.97, 1.03, size=shape)
    else:
        x = rng.normal(size=shape)
    return float(x) if shape == () else x


class ShapeProbe:
    """Stands in for the weights: records the shape of what it multiplies."""

    __array_ufunc__ = None  # NumPy defers `array * probe` to `probe.__rmul__`

    def __init__(self):
        self.shape = None

    def __mul__(self, other):
        self.shape = np.shape(other)
        return other

    __rmul__ = __mul__


def inputs(c: Case):
    rng = np.random.default_rng(zlib.crc32(c.id.encode()))
    dims = dict(zip("nmkb", rng.integers(2, 5, size=4).tolist()))
    args = [draw(spec, dims, rng) for spec in c.args.values()]
    probe = ShapeProbe()
    c.fn(*args, probe)
    assert probe.shape is not None, f"{c.fn.__name__} never multiplies by w"
    w = rng.normal(size=probe.shape)
    return [*args, float(w) if probe.shape == () else w]


@pytest.mark.parametrize("c", [c.param() for c in CASES])
def test_adjoint_matches_finite_differences(c: Case):
    ad.check_grad(c.fn, inputs(c), wrt=c.wrt, **c.tol)


# ---------------------------------------------------------------------------
# Tangent rules, through a small forward-mode interpreter of the IR
# ---------------------------------------------------------------------------
# Forward mode has no transform yet; this evaluates each primal node and the
# nodes its tangent rule emits, so that the tangent rules are checked against
# a directional finite difference on the same corpus.


def evaluate(node, env):
    """Run one IR node on the values in `env` (value id -> array)."""
    op = node.op
    args = [env[v.id] if v.id in env else v.const for v in node.inputs]
    if op.name == "const":
        return node.attrs["value"]
    if op.name == "einsum":
        return np.einsum(node.attrs["subscripts"], *args)
    if op.name == "unindex":
        return op.impl(args[0], args[1], build_index(node.attrs["index"], args[2:]))
    positional, rest = [], list(args)
    for p in op.params:
        if p.kind == "in":
            positional.append(rest.pop(0))
        elif p.kind == "seq":
            positional, rest = [*positional, rest], []
        elif p.kind == "varargs":
            positional, rest = [*positional, *rest], []
    attrs = {
        p.name: node.attrs[p.name]
        for p in op.params
        if p.kind == "attr"
        and p.name in node.attrs
        and (node.attrs[p.name] != p.default or _required(op.impl, p.name))
    }
    return op.impl(*positional, **attrs)


def _required(impl, name: str) -> bool:
    """True if `impl` has a parameter `name` without a default (np.swapaxes's axis1)."""
    try:
        param = inspect.signature(impl).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is inspect.Parameter.empty


def demand(value, emitted, env):
    """The value of `value`, running only the emitted nodes it depends on (as DCE would)."""
    if value.id not in env and value.id in emitted:
        node = emitted[value.id]
        for v in node.inputs:
            demand(v, emitted, env)
        env[value.id] = evaluate(node, env)
    return env[value.id] if value.id in env else value.const


def jvp(fn, args, wrt, directions):
    """The derivative of `fn` at `args` along `directions` (one per `wrt` name)."""
    ir = passes.dce(lower_function(fn))  # as the transforms see it: `svd(a)[1]` needs no U
    names = list(inspect.signature(fn).parameters)
    env = {p.id: a for p, a in zip(ir.params, args)}
    tangent = {ir.params[names.index(n)].id: d for n, d in zip(wrt, directions)}
    for node in ir.body.nodes:
        env[node.output.id] = evaluate(node, env)
        ts = [tangent.get(v.id) for v in node.inputs]
        if node.op.nondiff or all(t is None for t in ts):
            continue
        b = Builder(role="tangent")
        t_values = [None if t is None else Value("t", role="tangent") for t in ts]
        env.update({v.id: t for v, t in zip(t_values, ts) if v is not None})
        syms = [None if v is None else Sym(b, v) for v in t_values]
        out = node.op.tangent(
            syms, Sym(b, node.output), *(Sym(b, v) for v in node.inputs), **node.attrs
        )
        if out is None:  # the rule says the tangent is zero (np.full_like(x, 2.0))
            continue
        out = out.value if isinstance(out, Sym) else out
        tangent[node.output.id] = demand(out, {n.output.id: n for n in b.nodes}, env)
    result = ir.results[0]
    return tangent.get(result.id, 0.0)


@pytest.mark.parametrize("c", [c.param() for c in CASES])
def test_tangent_matches_finite_differences(c: Case):
    args = inputs(c)
    names = list(inspect.signature(c.fn).parameters)
    rng = np.random.default_rng(7)
    directions = [rng.normal(size=np.shape(args[names.index(n)])) for n in c.wrt]
    got = jvp(c.fn, args, c.wrt, directions)
    eps = 1e-6

    def shifted(sign):
        moved = list(args)
        for n, d in zip(c.wrt, directions):
            i = names.index(n)
            moved[i] = moved[i] + sign * eps * d
            moved[i] = float(moved[i]) if np.ndim(moved[i]) == 0 else moved[i]
        return float(c.fn(*moved))

    expected = (shifted(1) - shifted(-1)) / (2 * eps)
    assert np.shape(got) == (), f"tangent of a scalar output has shape {np.shape(got)}"
    assert np.isclose(got, expected, rtol=1e-5, atol=1e-6), (got, expected)


def test_runtime_helpers_are_self_contained():
    """Emitted files copy helpers by source: a helper may use only NumPy and its DEPENDS."""
    from adcompiler import runtime

    for name, helper in runtime.HELPERS.items():
        used = _free_names(helper) - {"np"}
        assert used <= set(runtime.DEPENDS.get(name, ())), (name, used)
        for dep in runtime.DEPENDS.get(name, ()):
            assert dep in runtime.HELPERS, (name, dep)


def _free_names(fn) -> set[str]:
    """Names `fn` reads that are neither its locals nor builtins."""
    import ast
    import builtins
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name)]
    bound = {n.id for n in names if isinstance(n.ctx, ast.Store)}
    bound |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    read = {n.id for n in names if isinstance(n.ctx, ast.Load)}
    return read - bound - set(dir(builtins))


STRUCTURAL = {"const", "tuple", "tuple_get", "check_float", "check_scalar"}


def test_docs_list_every_operator():
    docs = (Path(__file__).parent.parent / "docs" / "operators.md").read_text()
    missing = [
        op.name for op in ops.OPS if op.name not in STRUCTURAL and f"`{op.name}`" not in docs
    ]
    assert not missing, f"docs/operators.md does not mention: {missing}"


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), {i for i in ids if ids.count(i) > 1}


# ---------------------------------------------------------------------------
# Kinks: the subgradient each rule picks (docs/operators.md)
# ---------------------------------------------------------------------------


def test_max_and_min_share_the_adjoint_among_ties():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]])
    w = np.array([[1.0], [2.0]])
    ad.check_grad(C.max_axis_neg_keep, [x, w])  # a two-way tie: central differences give 1/2
    got = ad.grad(C.min_all)(np.array([1.0, 1.0, 1.0, 2.0]), 3.0)
    np.testing.assert_allclose(got, [1.0, 1.0, 1.0, 0.0])


def test_prod_is_exact_at_zeros():
    x = np.array([[0.0, 2.0], [0.0, 3.0], [5.0, 0.0]])
    ad.check_grad(C.prod_axis0, [x, np.array([1.5, -2.0])])
    ad.check_grad(C.prod_all, [x, 1.0])  # two zeros: the gradient is zero everywhere
    np.testing.assert_array_equal(ad.grad(C.prod_all)(x, 1.0), np.zeros_like(x))


def test_kinks_at_zero_pick_zero():
    x = np.array([0.0, 1.0, -2.0])
    np.testing.assert_array_equal(ad.grad(C.abs_)(x, np.ones(3)), [0.0, 1.0, -1.0])
    np.testing.assert_array_equal(ad.grad(C.norm)(np.zeros(3), 1.0), np.zeros(3))


def test_maximum_and_minimum_give_ties_to_the_first_argument():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 4.0])
    gx, gy = ad.grad(C.maximum, wrt=("x", "y"))(x, y, np.ones(3))
    np.testing.assert_array_equal(gx, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(gy, [0.0, 0.0, 1.0])
    gx, gy = ad.grad(C.minimum, wrt=("x", "y"))(x, y, np.ones(3))
    np.testing.assert_array_equal(gx, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(gy, [0.0, 1.0, 0.0])


# ---------------------------------------------------------------------------
# Rules of operators that no user writes, checked one node at a time
# ---------------------------------------------------------------------------


def rule_outputs(node, env, ts=None, g=None):
    """Run `node`'s adjoint (given `g`) or tangent (given `ts`) rule on the values in `env`."""
    b = Builder()
    env[node.output.id] = evaluate(node, env)
    ins = [Sym(b, v) for v in node.inputs]
    if g is not None:
        g_value = Value("g")
        env[g_value.id] = g
        outs = node.op.adjoint(Sym(b, g_value), Sym(b, node.output), *ins, **node.attrs)
    else:
        t_values = [None if t is None else Value("t") for t in ts]
        env.update({v.id: t for v, t in zip(t_values, ts) if v is not None})
        syms = [None if v is None else Sym(b, v) for v in t_values]
        outs = [node.op.tangent(syms, Sym(b, node.output), *ins, **node.attrs)]
    emitted = {n.output.id: n for n in b.nodes}
    return [None if o is None else demand(o.value, emitted, env) for o in outs]


@pytest.mark.parametrize(
    "index",
    [((1,), True), ((slice(None, None, 2), 0), False), ((np.array([0, 2, 2]),), True)],
    ids=["int", "slice-int", "int-array"],
)
def test_unindex_rules(index):
    from adcompiler.ops.structure import UNINDEX

    rng = np.random.default_rng(3)
    shape = (3, 4)
    part = np.zeros(shape)[build_index(index, [])]
    gx = rng.normal(size=part.shape)
    x_value, shape_value = Value("gx"), Value("shape")
    node = Node(UNINDEX, [x_value, shape_value], {"index": index})
    env = {x_value.id: gx, shape_value.id: shape}
    g = rng.normal(size=shape)  # unindex is linear: its adjoint is the transposed map
    (adjoint,) = rule_outputs(node, dict(env), g=g)
    np.testing.assert_allclose(np.sum(adjoint * gx), np.sum(g * evaluate(node, env)))
    t = rng.normal(size=gx.shape)
    (tangent,) = rule_outputs(node, dict(env), ts=[t, None])
    np.testing.assert_allclose(tangent, evaluate(node, {**env, x_value.id: t}))
