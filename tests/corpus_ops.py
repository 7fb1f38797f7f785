"""One small function per operator (and per interesting variant), for tests/test_rules.py.

Every function reduces the operator's output to a scalar by weighting each
output element with the last argument `w` (drawn by the test to match the
output's shape), so that every element of the output reaches the gradient.
"""

import numpy as np
from numpy import newaxis

from adcompiler.runtime import unbroadcast

IDX = np.array([0, 2, 2, 1])  # an integer-array index that repeats an element
IDX2 = np.array([[1, 0], [1, 1]])
# Tuple-valued static arguments, as module-level constants (see the *_literal functions)
AXES_0_2 = (0, 2)
AXES_0_NEG1 = (0, -1)
AXES_1_2 = (1, 2)
AXES_NEG1_0 = (-1, 0)
PERM_1_2_0 = (1, 2, 0)
PERM_2_0_1 = (2, 0, 1)
REPS_2_3 = (2, 3)
REPS_2_1_2 = (2, 1, 2)
COUNTS = [1, 0, 2]
AXES_1_2_PAIR = (2, 1)

# ---------------------------------------------------------------------------
# Arithmetic operators (binary ones are checked with every broadcasting pair)
# ---------------------------------------------------------------------------


def add(x, y, w):
    return np.sum((x + y) * w)


def sub(x, y, w):
    return np.sum((x - y) * w)


def mul(x, y, w):
    return np.sum(x * y * w)


def div(x, y, w):
    return np.sum(x / y * w)


def pow_(x, y, w):
    return np.sum(x**y * w)


def mod(x, y, w):
    return np.sum(x % y * w)


def matmul_op(x, y, w):
    return np.sum((x @ y) * w)


def np_add(x, y, w):
    return np.sum(np.add(x, y) * w)


def np_subtract(x, y, w):
    return np.sum(np.subtract(x, y) * w)


def np_multiply(x, y, w):
    return np.sum(np.multiply(x, y) * w)


def np_divide(x, y, w):
    return np.sum(np.divide(x, y) * w)


def np_power(x, y, w):
    return np.sum(np.power(x, y) * w)


def maximum(x, y, w):
    return np.sum(np.maximum(x, y) * w)


def minimum(x, y, w):
    return np.sum(np.minimum(x, y) * w)


def logaddexp(x, y, w):
    return np.sum(np.logaddexp(x, y) * w)


def pow_const(x, w):
    return np.sum((x**3 + x**0.5 - x**-1.5 + x**1) * w)


def pow_const_base(x, w):
    return np.sum(2.0**x * w)


def mod_const(x, w):
    return np.sum(x % 1.0 * w)


def neg(x, w):
    return np.sum(-x * w)


def pos(x, w):
    return np.sum(+x * w)


def rsub_rdiv(x, w):
    return np.sum((1.0 - x) * w + (2.0 / x) * w)


def floordiv(x, w):
    return np.sum((x // 1.0 + x) * w)


# ---------------------------------------------------------------------------
# Elementwise functions
# ---------------------------------------------------------------------------


def exp(x, w):
    return np.sum(np.exp(x) * w)


def log(x, w):
    return np.sum(np.log(x) * w)


def log1p(x, w):
    return np.sum(np.log1p(x) * w)


def expm1(x, w):
    return np.sum(np.expm1(x) * w)


def sqrt(x, w):
    return np.sum(np.sqrt(x) * w)


def square(x, w):
    return np.sum(np.square(x) * w)


def reciprocal(x, w):
    return np.sum(np.reciprocal(x) * w)


def abs_(x, w):
    return np.sum(np.abs(x) * w)


def absolute(x, w):
    return np.sum(np.absolute(x) * w)


def builtin_abs(x, w):
    return np.sum(abs(x) * w)


def sin(x, w):
    return np.sum(np.sin(x) * w)


def cos(x, w):
    return np.sum(np.cos(x) * w)


def tan(x, w):
    return np.sum(np.tan(x) * w)


def arcsin(x, w):
    return np.sum(np.arcsin(x) * w)


def arccos(x, w):
    return np.sum(np.arccos(x) * w)


def arctan(x, w):
    return np.sum(np.arctan(x) * w)


def sinh(x, w):
    return np.sum(np.sinh(x) * w)


def cosh(x, w):
    return np.sum(np.cosh(x) * w)


def tanh(x, w):
    return np.sum(np.tanh(x) * w)


def negative(x, w):
    return np.sum(np.negative(x) * w)


def nondiff_mix(x, w):
    # sign, floor, comparisons and argmax are constant almost everywhere: no gradient
    # flows through them, but the rest of the expression still differentiates.
    s = np.sign(x) + np.floor(x) * 0.5 + (x > 0.3) - np.argmax(x) * 0.1
    return np.sum(s * x * w)


def nondiff_all(x, w):
    # every non-differentiable operator, inside a differentiated function
    m = np.ceil(x) + np.rint(x) + np.round(x) + np.isnan(x) + np.isfinite(x) + x // 0.7
    m = m + (x == 0.5) + (x != 0.5) + (x < 0.5) + (x <= 0.5) + (x >= 0.5)
    m = m + np.logical_and(x > 0, x < 1) + np.logical_or(x > 1, x < -1) + np.logical_not(x > 0)
    m = m + np.argmin(x) + np.argsort(x, axis=-1) + int(x.shape[0]) + len(x) + x.ndim + x.size
    return np.sum(m * x * w)


def where(x, y, w):
    return np.sum(np.where(x > 0.1, x, y) * w)


def where_scalar(x, w):
    return np.sum(np.where(x > 0.1, x * x, 0.0) * w)


def where_cond_only(x, y, w):
    return np.sum(np.where(y > 0, x, -x) * w)


def clip(x, w):
    return np.sum(np.clip(x, -0.5, 0.5) * w)


def clip_lower(x, w):
    return np.sum(np.clip(x, -0.5, None) * w)


def clip_upper(x, w):
    return np.sum(np.clip(x, None, 0.5) * w)


def clip_arrays(x, lo, hi, w):
    return np.sum(np.clip(x, lo, hi) * w)


# ---------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------


def sum_all(x, w):
    return np.sum(x) * w


def sum_axis0(x, w):
    return np.sum(np.sum(x, axis=0) * w)


def sum_axis1_keep(x, w):
    return np.sum(np.sum(x, axis=1, keepdims=True) * w)


def sum_axis_neg(x, w):
    return np.sum(np.sum(x, axis=-1) * w)


def sum_axes_tuple(x, w):
    return np.sum(np.sum(x, axis=AXES_0_2) * w)


def sum_axes_tuple_keep(x, w):
    return np.sum(np.sum(x, axis=AXES_0_NEG1, keepdims=True) * w)


def mean_all(x, w):
    return np.mean(x) * w


def mean_axis0(x, w):
    return np.sum(np.mean(x, axis=0) * w)


def mean_axis_neg_keep(x, w):
    return np.sum(np.mean(x, axis=-1, keepdims=True) * w)


def mean_axes_tuple(x, w):
    return np.sum(np.mean(x, axis=AXES_1_2) * w)


def prod_all(x, w):
    return np.prod(x) * w


def prod_axis0(x, w):
    return np.sum(np.prod(x, axis=0) * w)


def prod_axis_neg_keep(x, w):
    return np.sum(np.prod(x, axis=-1, keepdims=True) * w)


def prod_axes_tuple(x, w):
    return np.sum(np.prod(x, axis=AXES_0_2) * w)


def prod_with_zero(x, w):
    # one factor is exactly zero: the gradient of the others is still well defined
    z = x * (np.arange(x.size).reshape(x.shape) != 1)
    return np.sum(np.prod(z, axis=0) * w) + np.prod(z) * 0.5


def max_all(x, w):
    return np.max(x) * w


def max_axis0(x, w):
    return np.sum(np.max(x, axis=0) * w)


def max_axis_neg_keep(x, w):
    return np.sum(np.max(x, axis=-1, keepdims=True) * w)


def max_axes_tuple(x, w):
    return np.sum(np.max(x, axis=AXES_0_2) * w)


def amax(x, w):
    return np.sum(np.amax(x, axis=1) * w)


def min_all(x, w):
    return np.min(x) * w


def min_axis1(x, w):
    return np.sum(np.min(x, axis=1) * w)


def min_axes_tuple_keep(x, w):
    return np.sum(np.min(x, axis=AXES_NEG1_0, keepdims=True) * w)


def amin(x, w):
    return np.sum(np.amin(x, axis=0) * w)


def cumsum_flat(x, w):
    return np.sum(np.cumsum(x) * w)


def cumsum_axis0(x, w):
    return np.sum(np.cumsum(x, axis=0) * w)


def cumsum_axis_neg(x, w):
    return np.sum(np.cumsum(x, axis=-1) * w)


def trace(x, w):
    return np.trace(x) * w


def trace_axes(x, w):
    return np.sum(np.trace(x, 1, axis1=2, axis2=0) * w)


def trace_offset(x, w):
    return np.trace(x, offset=-1) * w


def trace_nonsquare(x, w):
    return np.trace(x @ x.T + x[:, :1]) * w


# ---------------------------------------------------------------------------
# Products
# ---------------------------------------------------------------------------


def dot(x, y, w):
    return np.sum(np.dot(x, y) * w)


def outer(x, y, w):
    return np.sum(np.outer(x, y) * w)


def vdot(x, y, w):
    return np.vdot(x, y) * np.vdot(x, x) * w


def einsum_matmul(x, y, w):
    return np.sum(np.einsum("ij,jk->ik", x, y) * w)


def einsum_implicit(x, y, w):
    return np.sum(np.einsum("ij,jk", x, y) * w)


def einsum_implicit_transpose(x, w):
    return np.sum(np.einsum("ji", x) * w)


def einsum_inner(x, y, w):
    return np.einsum("ij,ij->", x, y) * w


def einsum_batched(x, y, w):
    return np.sum(np.einsum("bij,bjk->bik", x, y) * w)


def einsum_outer(x, y, w):
    return np.sum(np.einsum("i,jk->ijk", x, y) * w)


def einsum_only_in_one(x, y, w):
    # k appears only in y and not in the output: summed out of y alone
    return np.sum(np.einsum("ij,jk->i", x, y) * w)


def einsum_trace(x, w):
    return np.einsum("ii->", x) * w


def einsum_diag(x, w):
    return np.sum(np.einsum("ii->i", x) * w)


def einsum_three(x, y, z, w):
    return np.sum(np.einsum("ij,jk,k->i", x, y, z) * w)


def einsum_ellipsis(x, y, w):
    return np.sum(np.einsum("...ij,...jk->...ik", x, y) * w)


# ---------------------------------------------------------------------------
# Shape manipulation
# ---------------------------------------------------------------------------


def transpose(x, w):
    return np.sum(np.transpose(x) * w)


def transpose_axes(x, w):
    return np.sum(np.transpose(x, PERM_1_2_0) * w)


def transpose_axes_kw(x, w):
    return np.sum(np.transpose(x, axes=PERM_2_0_1) * w)


def swapaxes(x, w):
    return np.sum(np.swapaxes(x, 0, 2) * w)


def reshape(x, w):
    return np.sum(np.reshape(x, (2, -1)) * w)


def reshape_flat(x, w):
    return np.sum(np.reshape(x, -1) * w)


def ravel(x, w):
    return np.sum(np.ravel(x) * w)


def asarray(x, w):
    return np.sum(np.asarray(x) * np.asanyarray(x) * w)


def squeeze(x, w):
    return np.sum(np.squeeze(x) * w)


def squeeze_axis(x, w):
    return np.sum(np.squeeze(x, axis=1) * w)


def expand_dims(x, w):
    return np.sum(np.expand_dims(x, 1) * w)


def expand_dims_neg(x, w):
    return np.sum(np.expand_dims(x, axis=-1) * w)


def expand_dims_tuple(x, w):
    return np.sum(np.expand_dims(x, axis=AXES_0_2) * w)


def concatenate(x, y, w):
    return np.sum(np.concatenate([x, y]) * w)


def concatenate_axis1(x, y, w):
    return np.sum(np.concatenate([x, y, x], axis=1) * w)


def concatenate_axis_neg(x, y, w):
    return np.sum(np.concatenate((y, x), axis=-1) * w)


def stack(x, y, w):
    return np.sum(np.stack([x, y]) * w)


def stack_axis1(x, y, w):
    return np.sum(np.stack([x, y, x * 2], axis=1) * w)


def stack_axis_neg(x, y, w):
    return np.sum(np.stack((x, y), axis=-1) * w)


def hstack(x, y, w):
    return np.sum(np.hstack([x, y]) * w)


def vstack(x, y, w):
    return np.sum(np.vstack([x, y]) * w)


def r_(x, y, w):
    return np.sum(np.r_[x, y, x] * w)


def c_(x, y, w):
    return np.sum(np.c_[x, y] * w)


def full_fill(x, w):
    """The fill value (a scalar, or a row broadcast to the shape) carries the gradient."""
    return np.sum(np.full((2, 3), x) * w)


def full_like_fill(x, y, w):
    return np.sum(np.full_like(y, x) * w)


def arange_start(x, w):
    """np.arange(x, x + 2.5, 0.5): 5 values that move with the start."""
    return np.sum(np.arange(x, x + 2.5, 0.5) * w)


def bool_or(x, y, w):
    """`x or y` is x where x is true (non-zero), else y: the derivative follows."""
    return (x or y) * w + (x * 0.0 or y) * w


def bool_and(x, y, w):
    return (x and y) * w + (x * 0.0 and y) * w


def astype_int(x, w):
    """A cast to integers is piecewise constant: no derivative flows through it."""
    return np.sum(x.astype(int) * x * w)


def list_literal_sum(x, y, w):
    """NumPy converts the list to an array: derivatives flow through its items."""
    return np.sum([1.0, x * y, 2.0]) * w


def list_literal_mean(x, y, w):
    return np.sum(np.mean([x, y + 2.0], axis=0) * w)


def list_literal_norm(x, y, w):
    return np.linalg.norm([x, x * y]) * w


def list_literal_ufunc(x, y, w):
    return np.sum(np.exp((x, y)) * w)


def list_literal_operand(x, y, w):
    return np.sum(x * [[1.0, 2.0], [y, 3.0]] * w)


def broadcast_to(x, w):
    return np.sum(np.broadcast_to(x, (3, 4)) * w)


def tile(x, w):
    return np.sum(np.tile(x, 3) * w)


def tile_tuple(x, w):
    return np.sum(np.tile(x, REPS_2_3) * w)


def tile_more_reps(x, w):
    return np.sum(np.tile(x, REPS_2_1_2) * w)


def repeat_flat(x, w):
    return np.sum(np.repeat(x, 3) * w)


def repeat_axis0(x, w):
    return np.sum(np.repeat(x, 2, axis=0) * w)


def repeat_axis_neg(x, w):
    return np.sum(np.repeat(x, 3, axis=-1) * w)


def repeat_counts(x, w):
    return np.sum(np.repeat(x, COUNTS, axis=0) * w)


def copy(x, w):
    return np.sum(np.copy(x) * w)


# ---------------------------------------------------------------------------
# Linear algebra
# ---------------------------------------------------------------------------


def norm(x, w):
    return np.linalg.norm(x) * w


def norm_axis0(x, w):
    return np.sum(np.linalg.norm(x, axis=0) * w)


def norm_axis_neg_keep(x, w):
    return np.sum(np.linalg.norm(x, axis=-1, keepdims=True) * w)


def norm_ord2_vector(x, w):
    return np.linalg.norm(x, ord=2) * w


def norm_ord1_vector(x, w):
    return np.linalg.norm(x, 1) * w


def norm_ord3_vector(x, w):
    return np.linalg.norm(x, ord=3) * w


def norm_inf_vector(x, w):
    return np.linalg.norm(x, ord=np.inf) * w


def norm_fro(x, w):
    return np.linalg.norm(x, "fro") * w


def norm_nuc(x, w):
    return np.linalg.norm(x, ord="nuc") * w


def norm_ord2_matrix(x, w):
    return np.linalg.norm(x, ord=2) * w


def norm_ord1_axis(x, w):
    return np.sum(np.linalg.norm(x, ord=1, axis=1) * w)


def norm_ord1_matrix(x, w):
    return np.linalg.norm(x, ord=1) * w


def norm_inf_matrix(x, w):
    return np.linalg.norm(x, np.inf) * w


def norm_neg_inf_matrix(x, w):
    return np.linalg.norm(x, -np.inf) * w


def norm_neg2_matrix(x, w):
    return np.linalg.norm(x, -2) * w


def norm_nuc_axis_pair(x, w):
    return np.sum(np.linalg.norm(x, "nuc", axis=AXES_1_2_PAIR) * w)


def norm_fro_axis_pair(x, w):
    return np.sum(np.linalg.norm(x, axis=AXES_1_2_PAIR, keepdims=True) * w)


def norm_neg_inf_vector(x, w):
    return np.linalg.norm(x, -np.inf) * w


def norm_ord0_vector(x, w):
    return np.linalg.norm(x, 0) * w + np.sum(x * x)


def norm_at_zero(x, w):
    return np.linalg.norm(x - x) * w + np.sum(x)


def inv(x, w):
    return np.sum(np.linalg.inv(x) * w)


def inv_batched(x, w):
    return np.sum(np.linalg.inv(x) * w)


def det(x, w):
    return np.linalg.det(x) * w


def det_batched(x, w):
    return np.sum(np.linalg.det(x) * w)


def solve(a, b, w):
    return np.sum(np.linalg.solve(a, b) * w)


# ---------------------------------------------------------------------------
# Arrays built from scalars, indexing
# ---------------------------------------------------------------------------


def array_from_scalars(a, b, w):
    return np.sum(np.array([a, b * 2.0, a * b]) * w)


def array_nested(a, b, w):
    return np.sum(np.array([[a, b], [b * b, 1.0], [np.sin(a), a]]) * w)


def array_from_elements(x, w):
    return np.sum(np.array([x[0], np.sum(x), x[-1] * x[1]]) * w)


def index_int(x, w):
    return np.sum(x[1] * w)


def index_negative(x, w):
    return np.sum(x[-1] * w)


def index_two_ints(x, w):
    return x[1, -2] * w


def index_slice(x, w):
    return np.sum(x[1:3] * w)


def index_slice_step(x, w):
    return np.sum(x[::2] * w)


def index_slice_reverse(x, w):
    return np.sum(x[::-1] * w)


def index_slice_tuple(x, w):
    return np.sum(x[1:, ::2] * w)


def index_slice_negative_step(x, w):
    return np.sum(x[-1:0:-2, 1:] * w)


def index_none(x, w):
    return np.sum(x[None, :] * w)


def index_newaxis(x, w):
    return np.sum(x[:, np.newaxis] * w)


def index_newaxis_imported(x, w):
    return np.sum(x[newaxis, 1:, newaxis] * w)


def index_ellipsis(x, w):
    return np.sum(x[..., 1] * w)


def index_int_array(x, w):
    return np.sum(x[IDX] * w)


def index_int_array_2d(x, w):
    return np.sum(x[IDX2] * w)


def index_int_list(x, w):
    return np.sum(x[[0, 2, 0]] * w)


def index_int_array_and_slice(x, w):
    return np.sum(x[IDX, 1:] * w)


def index_int_array_column(x, w):
    return np.sum(x[:, IDX[:2]] * w)


def index_bool_mask(x, w):
    return np.sum(x[x > 0] ** 2) * w


def index_bool_mask_rows(x, w):
    return np.sum(x[np.sum(x, axis=1) > 0] * w)


def index_dynamic_int(x, w):
    i = x.shape[0] - 1
    return np.sum(x[i] * w)


# ---------------------------------------------------------------------------
# Array methods and builtins
# ---------------------------------------------------------------------------


def method_sum(x, w):
    return np.sum(x.sum(axis=0) * w)


def method_T(x, w):  # noqa: N802 - named after the attribute
    return np.sum(x.T * w)


def method_reshape_varargs(x, w):
    return np.sum(x.reshape(3, -1) * w)


def method_reshape_tuple(x, w):
    return np.sum(x.reshape((2, -1)) * w)


def method_transpose(x, w):
    return np.sum(x.transpose() * w)


def method_transpose_axes(x, w):
    return np.sum(x.transpose(1, 0, 2) * w)


def method_dot(x, y, w):
    return np.sum(x.dot(y) * w)


def method_astype(x, w):
    return np.sum(x.astype(float) * w)


def method_astype_float64(x, w):
    return np.sum(x.astype(np.float64) * w)


def method_copy(x, w):
    return np.sum(x.copy() * w)


def method_mean(x, w):
    return x.mean() * w


def method_max(x, w):
    return x.max() * w


def method_min_axis(x, w):
    return np.sum(x.min(axis=1) * w)


def method_prod(x, w):
    return x.prod() * w


def method_cumsum(x, w):
    return np.sum(x.cumsum(axis=1) * w)


def method_ravel(x, w):
    return np.sum(x.ravel() * w)


def method_flatten(x, w):
    return np.sum(x.flatten() * w)


def method_squeeze(x, w):
    return np.sum(x.squeeze() * w)


def method_clip(x, w):
    return np.sum(x.clip(-0.5, 0.5) * w)


def method_trace(x, w):
    return x.trace() * w


def method_repeat(x, w):
    return np.sum(x.repeat(2, axis=1) * w)


def setitem_rows(x, y, w):
    z = x.copy()
    z[1] = y * 2.0
    z[:, 0] += np.sum(y)
    return np.sum(z * z * w)


def builtin_min_max(x, w):
    a, b = np.sum(x * w), np.sum(x * x)
    return max(a, b, 0.5) - 2.0 * min(a, b)


def builtin_float(x, w):
    return float(np.sum(x * w)) * 2.0


def builtin_float_element(x, w):
    return float(x[1]) * w + float(x[0] ** 2)


# ---------------------------------------------------------------------------
# Constructors: no gradient flows through them
# ---------------------------------------------------------------------------


def constructors(x, w):
    n = x.shape[0]
    a = x + np.ones_like(x) + np.zeros_like(x) + np.full_like(x, 2.0)
    b = np.zeros((n, 3)) + np.ones((n, 3)) * 2.0 + np.full((n, 3), 0.5)
    c = np.eye(n) @ a + np.arange(3) * a
    return np.sum(c * w) + np.sum(b) * np.sum(x)


def constructor_eye(x, w):
    n, m = x.shape
    return np.sum((np.eye(n, m) + np.eye(n, m, k=1) + np.eye(m, dtype=float)[0]) * x * w)


def constructor_only(x, w):
    # the result does not depend on x at all: a zero gradient, not an error
    return np.sum(np.ones_like(x) * w)


def constructor_dtype(x, w):
    z = np.zeros(x.shape, dtype=np.float64) + np.ones(x.shape[1], dtype=float)
    return np.sum((x + z) * w)


# ---------------------------------------------------------------------------
# Tuple and list literals as static arguments (the same functions as above)
# ---------------------------------------------------------------------------


def sum_axes_tuple_literal(x, w):
    return np.sum(np.sum(x, axis=(0, 2)) * w)


def max_axes_tuple_literal(x, w):
    return np.sum(np.max(x, axis=(0, -1), keepdims=True) * w)


def transpose_axes_literal(x, w):
    return np.sum(np.transpose(x, (1, 2, 0)) * w)


def expand_dims_tuple_literal(x, w):
    return np.sum(np.expand_dims(x, axis=(0, 2)) * w)


def tile_tuple_literal(x, w):
    return np.sum(np.tile(x, (2, 3)) * w)


def repeat_counts_literal(x, w):
    return np.sum(np.repeat(x, [1, 0, 2], axis=0) * w)


# ---------------------------------------------------------------------------
# Common idioms and corners
# ---------------------------------------------------------------------------


def relu(x, w):
    return np.sum(np.maximum(x, 0.0) * w)


def softplus(x, w):
    return np.sum(np.logaddexp(0.0, x) * w)


def where_broadcast_cond(c, x, y, w):
    return np.sum(np.where(c > 0, x, y) * w)


def sum_keepdims_all(x, w):
    return np.sum(np.sum(x, keepdims=True) * w)


def mean_keepdims_all(x, w):
    return np.sum(np.mean(x, keepdims=True) * w)


def max_keepdims_all(x, w):
    return np.sum(np.max(x, keepdims=True) * w)


def sum_axis_neg2(x, w):
    return np.sum(np.sum(x, axis=-2) * w)


def reduce_scalar(a, w):
    return (np.sum(a) + np.mean(a) + np.max(a) + np.prod(a)) * w


def reshape_like(x, y, w):
    return np.sum(np.reshape(x, y.shape) * y * w)


def squeeze_expand(x, w):
    return np.sum(np.squeeze(np.expand_dims(x, 0), axis=0) * w)


def concatenate_flat(x, y, w):
    return np.sum(np.concatenate([x, y], axis=None) * w)


def vstack_scalars(a, b, w):
    return np.sum(np.vstack([a, b]) * w)


def dot_nd(x, y, w):
    return np.sum(np.dot(x, y) * w)


def einsum_repeated_other(x, y, w):
    return np.sum(np.einsum("ii,j->j", x, y) * w)


def einsum_scalar_operand(a, x, w):
    return np.sum(np.einsum(",ij->ij", a, x) * w)


def einsum_spaces(x, y, w):
    return np.sum(np.einsum("ij, jk -> ki", x, y) * w)


def solve_batched(a, b, w):
    return np.sum(np.linalg.solve(a, b) * w)


def index_dynamic_slice(x, w):
    n = x.shape[0] // 2
    return np.sum(x[:n, n - 1 :] * w)


def transpose_1d(x, w):
    return np.sum(x.T * w)


def int_exponent_array(x, w):
    return np.sum(x ** np.arange(x.shape[-1]) * w)


def chain(x, y, w):
    h = np.tanh(x @ y + 1.0)
    z = np.exp(-h) / (1.0 + np.sum(h**2, axis=1, keepdims=True))
    return np.sum(z * w) + np.max(np.abs(h)) * np.mean(y)


def reuse(x, w):
    # one value read by many operators: contributions add up
    y = x * x
    return np.sum((y + np.sin(y) * y - y / (1.0 + y)) * w)


def unbroadcast_op(x, y, w):
    # the reverse transform's own operator, called directly: its rules matter for grad of grad
    return np.sum(unbroadcast(x * y, y.shape) * w)


def random_location_scale(x, s, w):
    # draws from a generator made from a seed: the same values on every call, so finite
    # differences see the sampled objective (adcompiler/ops/random.py)
    rng = np.random.default_rng(0)
    scale = s * s + 0.5
    y = rng.normal(x, scale) * rng.uniform(x, x + scale) + rng.exponential(scale)
    y = y + rng.laplace(x, scale) + rng.logistic(x, scale) + rng.gumbel(x, scale)
    y = y + rng.lognormal(x * 0.1, scale * 0.1) + x * rng.standard_normal(x.shape)
    return np.sum(y * w)


def random_global_state(x, s, w):
    np.random.seed(0)  # the legacy global state, reseeded in the function
    y = np.random.normal(x, s * s + 0.5) * np.random.uniform(s, s + 1.0, size=x.shape)
    return np.sum(y * w)
