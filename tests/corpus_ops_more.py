"""More operators (issue 14): one small function per operator and variant.

Wired into tests/test_rules.py's `CASES` by `cases()`, so each function here goes
through every check the first corpus (tests/corpus_ops.py) does: the adjoint and
the tangent against central differences, forward against reverse
(tests/test_forward.py), and second derivatives, forward over reverse and reverse
over reverse (tests/test_higher.py). As there, the last argument `w` weights every
element of the output.
"""

import numpy as np

try:
    import scipy.special as sp
except ImportError:  # scipy is optional: its cases are left out
    sp = None

TAKE = np.array([1, 0, 1, 1])  # repeats: their adjoints add up
TAKE_ALONG = np.array([[0, 1, 1], [1, 0, 0]])
PAD_2_1 = ((2, 1), (0, 3))
SHIFTS = (1, -2)
AXES_0_1 = (0, 1)
TD_AXES = ((0, 2), (2, 0))

# The run-time helpers that only rules emit (tests/test_rules.py's INTERNAL)
INTERNAL = {
    "sinc_derivative",
    "sinc_second_derivative",
    "diff_adjoint",
    "unpad",
    "sort_adjoint",
    "sort_tangent",
    "tensordot_adjoint",
    "kron_adjoint",
    "cross_adjoint",
    "uncolumn_stack",
    "unappend",
    "square_matrices",
    "tall_matrices",
    "take_adjoint",
    "take_along_axis_adjoint",
    "undstack",
    "rollaxis_inverse",
    "diagonal_adjoint",
    "diag_adjoint",
    "sliding_window_adjoint",
    "split_put",
    "reshape_back",
}

# ---------------------------------------------------------------------------
# Elementwise
# ---------------------------------------------------------------------------


def log2(x, w):
    return np.sum(np.log2(x) * w)


def log10(x, w):
    return np.sum(np.log10(x) * w)


def exp2(x, w):
    return np.sum(np.exp2(x) * w)


def cbrt(x, w):
    return np.sum(np.cbrt(x) * w)


def arcsinh(x, w):
    return np.sum(np.arcsinh(x) * w)


def arccosh(x, w):
    return np.sum(np.arccosh(x) * w)


def arctanh(x, w):
    return np.sum(np.arctanh(x) * w)


def fabs(x, w):
    return np.sum(np.fabs(x) * w)


def deg2rad(x, w):
    return np.sum(np.deg2rad(x) * w + np.radians(x) * w)


def rad2deg(x, w):
    return np.sum(np.rad2deg(x) * w + np.degrees(x) * w)


def sinc(x, w):
    return np.sum(np.sinc(x) * w)


def sinc_near_zero(x, w):
    return np.sum(np.sinc(x * 1e-4) * w)


def nan_to_num(x, w):
    return np.sum(np.nan_to_num(x, nan=0.0, posinf=1.0) * w)


def nondiff_more(x, w):
    return np.sum((np.trunc(x) + np.fix(x) + np.isinf(x) + np.signbit(x) + x) * w)


def arctan2(x, y, w):
    return np.sum(np.arctan2(x, y) * w)


def hypot(x, y, w):
    return np.sum(np.hypot(x, y) * w)


def logaddexp2(x, y, w):
    return np.sum(np.logaddexp2(x, y) * w)


def fmax(x, y, w):
    return np.sum(np.fmax(x, y) * w)


def fmin(x, y, w):
    return np.sum(np.fmin(x, y) * w)


def float_power(x, y, w):
    return np.sum(np.float_power(x, y) * w)


def copysign(x, y, w):
    return np.sum(np.copysign(x, y) * w)


def fmod(x, y, w):
    return np.sum(np.fmod(x, y) * w)


def ldexp(x, w):
    return np.sum(np.ldexp(x, 3) * w)


def nondiff_spacing(x, w):
    return np.sum((np.spacing(x) + np.nextafter(x, 0.0) + x) * w)


def divmod_parts(x, y, w):
    q, r = divmod(x, y)
    q2, r2 = np.divmod(x, y)
    return np.sum((q + r + q2 * r2) * w)


def modf(x, w):
    fraction, integral = np.modf(x)
    return np.sum((fraction + integral) * w)


def vecdot(x, y, w):
    return np.sum(np.vecdot(x, y) * w)


def vecdot_axis(x, y, w):
    return np.sum(np.vecdot(x, y, axis=0) * w)


def matvec(x, y, w):
    return np.sum(np.matvec(x, y) * w)


def vecmat(x, y, w):
    return np.sum(np.vecmat(x, y) * w)


def concat(x, y, w):
    return np.sum(np.concat([x, y]) * w)


def linalg_matmul(x, y, w):
    return np.sum((np.linalg.matmul(x, y) + np.linalg.tensordot(x, y, axes=1)) * w)


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def ptp_all(x, w):
    return np.ptp(x) * w


def ptp_axis(x, w):
    return np.sum(np.ptp(x, axis=0, keepdims=True) * w)


def nanmax_min(x, w):
    return np.sum((np.nanmax(x, axis=0) + np.nanmin(x, axis=0)) * w)


def nanmean(x, w):
    return np.sum(np.nanmean(x, axis=-1, keepdims=True) * w) + np.nanmean(x)


def take_flat(x, w):
    return np.sum(np.take(x, TAKE) * w)


def take_axis(x, w):
    return np.sum(np.take(x, TAKE, axis=-1) * w)


def take_along_axis(x, w):
    return np.sum(np.take_along_axis(x, TAKE_ALONG, axis=0) * w)


def take_along_axis_broadcast(x, w):
    return np.sum(np.take_along_axis(x[:1], TAKE_ALONG, axis=1) * w)


def cumulative_sum(x, w):
    return np.sum(np.cumulative_sum(x, axis=-1) * w)


def cumulative_prod(x, w):
    return np.sum(np.cumulative_prod(x, axis=0) * w)


def cumulative_sum_1d(x, w):
    return np.sum((np.cumulative_sum(x) + np.cumulative_prod(x)) * w)


def nansum(x, w):
    return np.sum(np.nansum(x, axis=-1) * w) + np.nansum(x)


def var_all(x, w):
    return np.var(x) * w


def var_axis0(x, w):
    return np.sum(np.var(x, axis=0) * w)


def var_ddof_keep(x, w):
    return np.sum(np.var(x, axis=-1, ddof=1, keepdims=True) * w)


def var_axes_tuple(x, w):
    return np.sum(np.var(x, axis=AXES_0_1) * w)


def std_all(x, w):
    return np.std(x) * w


def std_axis1_ddof(x, w):
    return np.sum(np.std(x, 1, None, None, 1) * w)  # NumPy's positional order


def std_keepdims(x, w):
    return np.sum(np.std(a=x, axis=0, keepdims=True) * w)


def cumprod_flat(x, w):
    return np.sum(np.cumprod(x) * w)


def cumprod_axis(x, w):
    return np.sum(np.cumprod(x, axis=-1) * w)


def diff_last(x, w):
    return np.sum(np.diff(x) * w)


def diff_twice_axis0(x, w):
    return np.sum(np.diff(x, n=2, axis=0) * w)


# ---------------------------------------------------------------------------
# Triangles, rolls, padding, sorting
# ---------------------------------------------------------------------------


def tril(x, w):
    return np.sum(np.tril(x) * w)


def tril_k(x, w):
    return np.sum(np.tril(x, k=-1) * w)


def triu(x, w):
    return np.sum(np.triu(x, 1) * w)


def roll_flat(x, w):
    return np.sum(np.roll(x, 2) * w)


def roll_axis(x, w):
    return np.sum(np.roll(x, shift=-1, axis=1) * w)


def roll_tuple(x, w):
    return np.sum(np.roll(x, SHIFTS, axis=AXES_0_1) * w)


def pad_constant(x, w):
    return np.sum(np.pad(x, 1) * w)


def pad_widths_value(x, w):
    return np.sum(np.pad(x, PAD_2_1, constant_values=2.5) * w)


def pad_edge(x, w):
    return np.sum(np.pad(x, ((1, 2), (2, 0)), mode="edge") * w)


def pad_reflect(x, w):
    return np.sum(np.pad(x, 1, "reflect") * w)


def pad_symmetric(x, w):
    return np.sum(np.pad(x, ((2, 1), (1, 1)), mode="symmetric") * w)


def pad_wrap(x, w):
    return np.sum(np.pad(x, 2, mode="wrap") * w)


def sort_last(x, w):
    return np.sum(np.sort(x) * w)


def sort_axis0(x, w):
    return np.sum(np.sort(x, axis=0) * w)


def sort_flat(x, w):
    return np.sum(np.sort(x, axis=None) * w)


# ---------------------------------------------------------------------------
# Products
# ---------------------------------------------------------------------------


def tensordot(x, y, w):
    return np.sum(np.tensordot(x, y) * w)


def tensordot_int(x, y, w):
    return np.sum(np.tensordot(x, y, axes=1) * w)


def tensordot_pairs(x, y, w):
    return np.sum(np.tensordot(x, y, axes=TD_AXES) * w)


def tensordot_outer(x, y, w):
    return np.sum(np.tensordot(x, y, 0) * w)


def inner(x, y, w):
    return np.sum(np.inner(x, y) * w)


def kron(x, y, w):
    return np.sum(np.kron(x, y) * w)


def cross(x, y, w):
    return np.sum(np.cross(x, y) * w)


def einsum_sublists(x, y, w):
    return np.sum(np.einsum(x, [0, 1], y, [1, 2], [0, 2]) * w)


def einsum_sublists_implicit(x, y, w):
    return np.sum(np.einsum(x, [Ellipsis, 1], y, [1, 2]) * w)


def methods_more(x, w):
    return np.sum((x.var(axis=0) + x.std(ddof=1) + x.cumprod(axis=0)[0]) * w)


# ---------------------------------------------------------------------------
# Joining
# ---------------------------------------------------------------------------


def column_stack(x, y, w):
    return np.sum(np.column_stack([x, y]) * w)


def row_stack(x, y, w):
    return np.sum(np.vstack((x, y)) * w)


def dstack(x, y, w):
    return np.sum(np.dstack([x, y, x]) * w)


def dstack_1d(x, y, w):
    return np.sum(np.dstack((x, y)) * w)


def append_flat(x, y, w):
    return np.sum(np.append(x, y) * w)


def append_axis(x, y, w):
    return np.sum(np.append(x, y, axis=1) * w)


# ---------------------------------------------------------------------------
# numpy.linalg
# ---------------------------------------------------------------------------


def slogdet(a, w):
    sign, logdet = np.linalg.slogdet(a)
    return np.sum(sign * logdet * w)


def slogdet_tuple(a, w):
    return np.linalg.slogdet(a)[1] * w


def cholesky(a, w):
    return np.sum(np.linalg.cholesky(a) * w)


def cholesky_upper(a, w):
    return np.sum(np.linalg.cholesky(a, upper=True) * w)


def eigh(a, w):
    vals, vecs = np.linalg.eigh(a)
    return np.sum(vecs * vecs * w) + np.sum(vals**3)


def eigh_upper(a, w):
    vals, vecs = np.linalg.eigh(a, UPLO="U")
    return np.sum(vecs * vecs * w) + np.sum(vals**3)


def eigvalsh(a, w):
    return np.sum(np.linalg.eigvalsh(a) * w)


def svd_thin(a, w):
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    return np.sum(u * u * w) + np.sum(s**3) + np.sum(vh**4)


def svd_square(a, w):
    u, s, vh = np.linalg.svd(a)
    return np.sum(u * u * w) + np.sum(s**3) + np.sum(vh**4)


def svd_values(a, w):
    return np.sum(np.linalg.svd(a)[1] * w)


def qr(a, w):
    q, r = np.linalg.qr(a)
    return np.sum(q * w) + np.sum(r * r)


def matrix_norm(a, w):
    return np.sum(np.linalg.matrix_norm(a) * w) + np.linalg.matrix_norm(a[0], ord=1)


def vector_norm(a, w):
    return np.sum(np.linalg.vector_norm(a, axis=-1) * w) + np.linalg.vector_norm(a)


def vector_norm_ord(a, w):
    return np.sum(np.linalg.vector_norm(a, ord=np.inf, axis=0, keepdims=True) * w) + np.sum(
        np.linalg.vector_norm(a, ord=1, keepdims=True)
    )


def norm_nuc_last_axes(a, w):
    return np.sum(np.linalg.norm(a, "nuc", axis=(-2, -1)) * w)


def norm_p_axis(a, w):
    return np.sum(np.linalg.norm(a, ord=3.5, axis=-1, keepdims=True) * w) + np.linalg.norm(
        a[0], ord=-3
    )


def pinv(a, w):
    return np.sum(np.linalg.pinv(a) * w)


def matrix_power(a, w):
    return np.sum(np.linalg.matrix_power(a, 3) * w)


def matrix_power_negative(a, w):
    return np.sum(np.linalg.matrix_power(a, n=-2) * w)


def matrix_power_zero(a, w):
    return np.sum((np.linalg.matrix_power(a, 0) + a) * w)


# ---------------------------------------------------------------------------
# scipy.special
# ---------------------------------------------------------------------------


def expit(x, w):
    return np.sum(sp.expit(x) * w)


def logit(x, w):
    return np.sum(sp.logit(x) * w)


def erf(x, w):
    return np.sum(sp.erf(x) * w)


def erfc(x, w):
    return np.sum(sp.erfc(x) * w)


def gammaln(x, w):
    return np.sum(sp.gammaln(x) * w)


def digamma(x, w):
    return np.sum((sp.digamma(x) + sp.psi(x)) * w)


def polygamma(x, w):
    return np.sum(sp.polygamma(1, x) * w)


def xlogy(x, y, w):
    return np.sum(sp.xlogy(x, y) * w)


def xlog1py(x, y, w):
    return np.sum(sp.xlog1py(x, y) * w)


def logsumexp_all(x, w):
    return sp.logsumexp(x) * w


def logsumexp_axis(x, w):
    return np.sum(sp.logsumexp(x, axis=-1) * w)


def logsumexp_keep(x, w):
    return np.sum(sp.logsumexp(x, axis=0, keepdims=True) * w)


def softmax(x, w):
    return np.sum(sp.softmax(x, axis=-1) * w)


def softmax_all(x, w):
    return np.sum(sp.softmax(x) * w)


def log_softmax(x, w):
    return np.sum(sp.log_softmax(x, axis=0) * w)


# ---------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# Views (adcompiler/ops/views.py)
# ---------------------------------------------------------------------------


def moveaxis(x, w):
    return np.sum(np.moveaxis(x, 0, -1) ** 2 * w)


def rollaxis(x, w):
    return np.sum(np.rollaxis(x, -1, 1) ** 2 * w)


def mtranspose(x, w):
    return np.sum((np.matrix_transpose(x) + x.mT) ** 2 * w)


def flips(x, w):
    return np.sum((np.flip(x, axis=-1) + np.flipud(x) * np.fliplr(x)) * w)


def rot90(x, w):
    return np.sum(np.rot90(x, -1) * x[0, 0] * w)


def diagonal(x, w):
    return np.sum(np.diagonal(x, 1, 0, -1) ** 2 * w)


def linalg_diagonal(x, w):
    return np.sum(np.linalg.diagonal(x, offset=-1) ** 2 * w)


def diag(x, w):
    return np.sum(np.diag(x, 1) ** 2 * w)


def atleast(x, w):
    extra = np.sum(np.atleast_2d(x) ** 3) + np.sum(np.sin(np.atleast_3d(x)))
    return np.sum(np.atleast_1d(x) ** 2 * w) + extra


def atleast_write(x, w):
    y = x * 1.0
    v = np.atleast_2d(y)
    v[0, 0] = 2.0 * y[1] ** 2  # y[0]
    u = np.expand_dims(y, 1)
    u[1] *= y[-1]  # y[1]
    return np.sum(y * w)


def real_imag(x, w):
    return np.sum((np.real(x) ** 2 + np.imag(x)) * w)


def sliding_window(x, w):
    return np.sum(np.lib.stride_tricks.sliding_window_view(x, 2, axis=0) ** 2 * w)


def splits(x, w):
    a, b = np.split(x, 2, axis=-1)
    c = np.array_split(x, [1], axis=0)[1]
    return np.sum((a * b) * w) + np.sum(c**2) + np.sum(np.hsplit(x, 2)[0] ** 3)


UNARY = [
    (log2, ":pos"), (log10, ":pos"), (exp2, ""), (cbrt, ":pos"), (arcsinh, ""),
    (arccosh, ":modx"), (arctanh, ":unit"), (fabs, ""), (deg2rad, ""), (rad2deg, ""),
    (sinc, ""), (sinc_near_zero, ""), (nan_to_num, ""), (nondiff_more, ""), (ldexp, ""),
    (nondiff_spacing, ""), (modf, ""),
]  # fmt: skip
BINARY = [
    (arctan2, "", ":pos"), (hypot, ":pos", ""), (logaddexp2, "", ""), (fmax, "", ""),
    (fmin, "", ""), (float_power, ":pos", ""), (copysign, "", ""), (fmod, ":modx", ":mody"),
    (divmod_parts, ":modx", ":mody"),
]  # fmt: skip
SCIPY_UNARY = [
    ("expit", ""), ("logit", ":unit01"), ("erf", ""), ("erfc", ""), ("gammaln", ":pos"),
    ("digamma", ":pos"), ("polygamma", ":pos"),
]  # fmt: skip
SCIPY_BINARY = [("xlogy", "", ":pos"), ("xlog1py", "", ":pos")]


def cases(case, broadcast_pairs):
    """The cases, made with tests/test_rules.py's `case`."""
    out = []
    g = globals()
    unary = list(UNARY) + ([(g[n], k) for n, k in SCIPY_UNARY] if sp else [])
    binary = list(BINARY) + ([(g[n], kx, ky) for n, kx, ky in SCIPY_BINARY] if sp else [])
    for fn, kind in unary:
        out.append(case(fn, id=f"{fn.__name__}[n,m]", x="n,m" + kind))
        out.append(case(fn, id=f"{fn.__name__}[scalar]", x=kind))
    for fn, xkind, ykind in binary:
        for xs, ys in broadcast_pairs:
            out.append(
                case(fn, id=f"{fn.__name__}[{xs or 'scalar'}|{ys or 'scalar'}]",
                     x=xs + xkind, y=ys + ykind)
            )  # fmt: skip
    for fn in (var_all, var_axis0, var_ddof_keep, std_all, std_axis1_ddof, std_keepdims,
               cumprod_flat, cumprod_axis, diff_last, diff_twice_axis0, tril, tril_k, triu,
               roll_flat, roll_axis, roll_tuple, pad_constant, pad_widths_value, pad_edge,
               pad_reflect, pad_symmetric, pad_wrap, sort_last, sort_axis0, sort_flat):  # fmt: skip
        kind = ":pos" if fn.__name__.startswith("cumprod") else ""
        out.append(case(fn, id=f"{fn.__name__}[n,m]", x="n,4" + kind))
        if fn not in (std_axis1_ddof, roll_tuple, pad_widths_value, pad_edge, pad_symmetric):
            out.append(case(fn, id=f"{fn.__name__}[k,n,m]", x="k,n,4" + kind))
    out += [
        case(var_all, id="var_all[n]", x="n"),
        case(ptp_all, x="n,m"),
        case(ptp_axis, x="k,n,m"),
        case(nansum, x="n,m"),
        case(nanmax_min, x="n,m"),
        case(nanmean, x="k,n,m"),
        case(take_flat, x="n,m"),
        case(take_axis, x="k,n,2"),
        case(take_along_axis, x="2,3"),
        case(take_along_axis_broadcast, x="2,2"),
        case(vecdot, x="n,m", y="m"),
        case(vecdot_axis, x="n,m", y="n,1"),
        case(matvec, x="b,n,m", y="m"),
        case(matvec, id="matvec[batch vectors]", x="n,m", y="b,m"),
        case(vecmat, x="n", y="b,n,m"),
        case(concat, x="n,m", y="k,m"),
        case(linalg_matmul, x="n,m", y="m,k"),
        case(var_axes_tuple, x="k,n,m"),
        case(std_all, id="std_all[n]", x="n"),
        case(cumprod_flat, id="cumprod_flat[n]", x="n:pos"),
        case(tensordot, x="k,n,m", y="n,m,3"),
        case(tensordot_int, x="n,m", y="m,k"),
        case(tensordot_pairs, x="k,n,m", y="m,3,k"),
        case(tensordot_outer, x="n", y="m,k"),
        case(inner, x="n,m", y="k,m"),
        case(inner, id="inner[1d]", x="m", y="m"),
        case(inner, id="inner[scalar]", x="", y="n,m"),
        case(einsum_sublists, x="n,m", y="m,k"),
        case(einsum_sublists_implicit, x="b,n,m", y="m,k"),
        case(methods_more, x="n,m:pos"),
        case(kron, x="n,m", y="k,2"),
        case(kron, id="kron[1d|2d]", x="n", y="k,m"),
        case(kron, id="kron[3d|1d]", x="2,n,m", y="k"),
        case(cross, x="n,3", y="n,3"),
        case(cross, id="cross[broadcast]", x="3", y="n,3"),
        case(column_stack, x="n", y="n,m"),
        case(column_stack, id="column_stack[2d]", x="n,k", y="n,m"),
        case(row_stack, x="m", y="n,m"),
        case(append_flat, x="n,m", y="k"),
        case(dstack, x="n,m", y="n,m,2"),
        case(dstack_1d, x="m", y="m"),
        case(cumulative_sum, x="n,m"),
        case(cumulative_prod, x="n,m:pos"),
        case(cumulative_sum_1d, x="n:pos"),
        case(matrix_norm, a="b,n,m"),
        case(norm_nuc_last_axes, a="b,n,m"),
        case(norm_p_axis, a="n,m:pos"),
        case(vector_norm, a="n,m"),
        case(vector_norm_ord, a="n,m:pos"),
        case(append_axis, x="n,m", y="n,k"),
        case(slogdet, a="n,n:mat"),
        case(slogdet, id="slogdet[batch]", a="b,n,n:mat"),
        case(slogdet, id="slogdet[negative det]", a="n,n:negmat"),
        case(slogdet_tuple, a="n,n:mat"),
        case(cholesky, a="n,n:spd"),
        case(cholesky, id="cholesky[batch]", a="b,n,n:spd"),
        case(cholesky, id="cholesky[lower triangle only]", a="n,n:spdlow"),
        case(cholesky_upper, a="n,n:spd"),
        case(eigh, a="n,n:spd"),
        case(eigh, id="eigh[batch]", a="b,n,n:spd"),
        case(eigh, id="eigh[lower triangle only]", a="n,n:spdlow"),
        case(eigh_upper, a="n,n:spd"),
        case(eigvalsh, a="n,n:spdlow"),
        case(svd_thin, a="5,3"),
        case(svd_thin, id="svd_thin[wide]", a="2,4"),
        case(svd_thin, id="svd_thin[batch]", a="b,4,3"),
        case(svd_square, a="n,n"),
        case(svd_values, a="n,m"),
        case(qr, a="5,3"),
        case(qr, id="qr[square batch]", a="b,n,n:mat"),
        case(pinv, a="5,3"),
        case(pinv, id="pinv[wide]", a="2,4"),
        case(matrix_power, a="n,n:mat", tol=dict(rtol=1e-4)),
        case(matrix_power_negative, a="n,n:mat"),
        case(matrix_power_zero, a="n,n"),
        case(moveaxis, x="k,n,m"),
        case(rollaxis, x="k,n,m"),
        case(mtranspose, x="k,n,m"),
        case(flips, x="n,m"),
        case(flips, id="flips[k,n,m]", x="k,n,m"),
        case(rot90, x="n,m"),
        case(diagonal, x="n,k,m"),
        case(linalg_diagonal, x="b,n,m"),
        case(diag, x="n,m"),
        case(diag, id="diag[vector]", x="n"),
        case(atleast, x=""),
        case(atleast, id="atleast[n]", x="n"),
        case(atleast, id="atleast[n,m]", x="n,m"),
        case(atleast_write, x="n"),
        case(real_imag, x="n,m"),
        case(sliding_window, x="3,m"),
        case(splits, x="2,4"),
        case(splits, id="splits[3d]", x="2,4,2"),
    ]
    if sp:
        for fn in (logsumexp_all, logsumexp_axis, logsumexp_keep, softmax, softmax_all,
                   log_softmax):  # fmt: skip
            out.append(case(fn, id=f"{fn.__name__}[n,m]", x="n,m"))
            out.append(case(fn, id=f"{fn.__name__}[k,n,m]", x="k,n,m"))
    return out
