"""numpy.linalg: decompositions and matrix functions, with NumPy's parameter names.

`inv`, `det`, `solve` and `norm` live in `adcompiler.ops.numpy_ops`. Functions
that return a tuple (``w, V = np.linalg.eigh(a)``) are registered as one operator
per element (`core.register_multi`); each has its own rules, and a function that
uses only ``w`` runs no rule of ``V``.

Every rule is built from operators that have rules themselves (matmul, solve,
tril, where, ...), so that grad of grad and Hessian-vector products work.
Matrices may come in batches (``(..., n, n)``); ``ᵀ`` swaps the last two axes.

Where a derivative does not exist the rules do not pretend: eigenvectors with a
repeated eigenvalue, singular vectors with a repeated or zero singular value, a
rank-deficient `pinv` (docs/operators.md).
"""

from __future__ import annotations

import ast

import numpy as np

from adcompiler import runtime
from adcompiler.ops.core import REGISTRY, adjoint, op_for, register_multi, register_parts, tangent
from adcompiler.ops.numpy_math import helper, required_attr
from adcompiler.ops.numpy_ops import _call, _mT, _sum_parts, defnondiff, defop


def _parts_spelling(name, index=None):
    """Spell an operator as ``np.linalg.<name>(a, kw=...)``, then ``[index]``."""

    def spelling(node, args):
        from adcompiler.codegen.to_source import constant_ast

        func = ast.parse(f"np.linalg.{name}", mode="eval").body
        keywords = [
            ast.keyword(arg=p.name, value=constant_ast(node.attrs[p.name]))
            for p in node.op.params
            if p.kind == "attr" and node.attrs.get(p.name, p.default) != p.default
        ]
        call = ast.Call(func, list(args), keywords)
        return call if index is None else ast.Subscript(call, ast.Constant(index), ast.Load())

    return spelling


def _part(name, fn, sig, index, **flags):
    """The operator for element `index` of the tuple ``np.linalg.<name>`` returns."""
    return defop(fn.__name__, fn, sig, _parts_spelling(name, index), **flags)


def _matrix(x):
    """A scalar per matrix, as a (..., 1, 1) array that broadcasts against the matrices."""
    return _call(np.expand_dims, x, axis=(-2, -1))


def _tril(x, k=0):
    return _call(np.tril, x, k=k)


def _triu(x, k=0):
    return _call(np.triu, x, k=k)


def _symmetric(t, lower):
    """The symmetric matrix a function reads from the lower (or upper) triangle of t."""
    return _tril(t) + _mT(_tril(t, -1)) if lower else _triu(t) + _mT(_triu(t, 1))


def _fold(g, lower):
    """The adjoint of `_symmetric`: g on the read triangle, plus gᵀ below (above) it."""
    return _tril(g) + _tril(_mT(g), -1) if lower else _triu(g) + _triu(_mT(g), 1)


def _solve_right(x, m):
    """x m⁻¹, as (m⁻ᵀ xᵀ)ᵀ."""
    return _mT(_call(np.linalg.solve, _mT(m), _mT(x)))


# ---------------------------------------------------------------------------
# slogdet: (sign, log|det a|); d log|det a| = tr(a⁻¹ da)
# ---------------------------------------------------------------------------


def slogdet_sign(a):
    return np.linalg.slogdet(a)[0]


def slogdet_logabsdet(a):
    return np.linalg.slogdet(a)[1]


SLOGDET_SIGN = defnondiff("slogdet_sign", slogdet_sign, "a", _parts_spelling("slogdet", 0))
SLOGDET_LOG = _part("slogdet", slogdet_logabsdet, "a", 1)
register_multi(np.linalg.slogdet, SLOGDET_SIGN, SLOGDET_LOG)
adjoint(slogdet_logabsdet)(lambda g, ans, a: (_matrix(g) * _mT(_call(np.linalg.inv, a)),))
tangent(slogdet_logabsdet)(
    lambda ts, ans, a: _call(np.trace, _call(np.linalg.solve, a, ts[0]), axis1=-2, axis2=-1)
)


# ---------------------------------------------------------------------------
# cholesky: a = L Lᵀ from the lower triangle of a (upper=True: U = Lᵀ, from the upper)
# dL = L Φ(L⁻¹ da L⁻ᵀ), Φ: the lower triangle with its diagonal halved
# ---------------------------------------------------------------------------

defop("cholesky", np.linalg.cholesky, "a, upper=False", "np.linalg.cholesky")


def _phi(x):
    return 0.5 * (_tril(x) + _tril(x, -1))


@tangent(np.linalg.cholesky)
def _(ts, ans, a, upper):
    low = _mT(ans) if upper else ans
    da = _symmetric(ts[0], not upper)
    m = _mT(_call(np.linalg.solve, low, _mT(_call(np.linalg.solve, low, da))))
    dl = low @ _phi(m)
    return _mT(dl) if upper else dl


@adjoint(np.linalg.cholesky)
def _(g, ans, a, upper):
    low, g_low = (_mT(ans), _mT(g)) if upper else (ans, g)
    p = _phi(_mT(low) @ g_low)
    s = _solve_right(_call(np.linalg.solve, _mT(low), p), low)  # L⁻ᵀ P L⁻¹
    return (_fold(s, not upper),)


# ---------------------------------------------------------------------------
# eigh: w ascending, V orthonormal; M = Vᵀ da V, dw = diag(M), dV = V (F ∘ M),
# F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it (undefined for repeated eigenvalues)
# ---------------------------------------------------------------------------


def eigh_vectors(a, UPLO="L"):  # noqa: N803 - NumPy's name
    return np.linalg.eigh(a, UPLO)[1]


EIGVALSH = defop("eigvalsh", np.linalg.eigvalsh, "a, UPLO='L'", "np.linalg.eigvalsh")
EIGH_VECTORS = _part("eigh", eigh_vectors, "a, UPLO='L'", 1)
register_multi(np.linalg.eigh, EIGVALSH, EIGH_VECTORS)


def _inverse_gaps(w, square=False):
    """F_ij = 1 / (w_j - w_i) (or 1 / (w_j² - w_i²)), and 0 where the two are equal."""
    if square:
        w = w * w
    gaps = _call(np.expand_dims, w, axis=-2) - _call(np.expand_dims, w, axis=-1)
    equal = gaps == 0.0
    return _call(np.where, equal, 0.0, 1.0 / _call(np.where, equal, 1.0, gaps))


@tangent(np.linalg.eigvalsh)
def _(ts, ans, a, UPLO):  # noqa: N803
    v = _call(eigh_vectors, a, UPLO=UPLO)
    da = _symmetric(ts[0], UPLO == "L")
    return _call(np.sum, v * (da @ v), axis=-2)


@adjoint(np.linalg.eigvalsh)
def _(g, ans, a, UPLO):  # noqa: N803
    v = _call(eigh_vectors, a, UPLO=UPLO)
    return (_fold((v * _call(np.expand_dims, g, axis=-2)) @ _mT(v), UPLO == "L"),)


@tangent(eigh_vectors)
def _(ts, ans, a, UPLO):  # noqa: N803
    w = _call(np.linalg.eigvalsh, a, UPLO=UPLO)
    da = _symmetric(ts[0], UPLO == "L")
    return ans @ (_inverse_gaps(w) * (_mT(ans) @ da @ ans))


@adjoint(eigh_vectors)
def _(g, ans, a, UPLO):  # noqa: N803
    w = _call(np.linalg.eigvalsh, a, UPLO=UPLO)
    inner = _inverse_gaps(w) * (_mT(ans) @ g)
    return (_fold(ans @ inner @ _mT(ans), UPLO == "L"),)


# ---------------------------------------------------------------------------
# svd: a = U diag(s) Vh. With P = Uᵀ da V (V = Vhᵀ), S = diag(s),
# F_ij = 1 / (s_j² - s_i²) off the diagonal:
#   ds = diag(P)
#   dU = U (F ∘ (P S + S Pᵀ)) + (I - U Uᵀ) da V S⁻¹
#   dV = V (F ∘ (S P + Pᵀ S)) + (I - V Vᵀ) daᵀ U S⁻¹
# The thin factors only: with full_matrices=True (the default), U and Vh need a square a.
# ---------------------------------------------------------------------------


def svd_u(a, full_matrices=True):
    return np.linalg.svd(a, full_matrices=full_matrices)[0]


def svd_s(a, full_matrices=True):
    return np.linalg.svd(a, full_matrices=full_matrices, compute_uv=False)


def svd_vh(a, full_matrices=True):
    return np.linalg.svd(a, full_matrices=full_matrices)[2]


def square_matrices(a):
    """`a`, if its matrices are square: the derivative of the full U or Vh of a
    rectangular matrix does not exist (their extra columns are arbitrary)."""
    if np.shape(a)[-1] != np.shape(a)[-2]:
        raise ValueError(
            f"the derivative of U and Vh of np.linalg.svd of a {np.shape(a)[-2]}x"
            f"{np.shape(a)[-1]} matrix needs full_matrices=False"
        )
    return a


SVD_U = _part("svd", svd_u, "a, full_matrices=True", 0)
SVD_S = _part("svd", svd_s, "a, full_matrices=True", 1)
SVD_VH = _part("svd", svd_vh, "a, full_matrices=True", 2)


def _svd_results(args, kwargs):
    """`np.linalg.svd(a)` is (U, s, Vh); with `compute_uv=False`, s alone (one result: a
    tuple, not a list). `compute_uv` must be a literal."""
    if len(args) > 2:
        return "pass `compute_uv` to `np.linalg.svd` by name"
    given = kwargs.pop("compute_uv", None)
    uv = True if given is None else getattr(given, "obj", None)
    if uv is False:
        return (SVD_S, {})
    if uv is not True:
        return "`compute_uv` of `np.linalg.svd` must be True or False when compiling"
    return [(SVD_U, {}), (SVD_S, {}), (SVD_VH, {})]


register_parts(np.linalg.svd, _svd_results)
helper(square_matrices, "a", same_shape=True)
adjoint(square_matrices)(lambda g, ans, a: (g,))
tangent(square_matrices)(lambda ts, ans, a: ts[0])


def _svd_parts(a, full_matrices):
    if full_matrices:
        a = _call(square_matrices, a)
    return tuple(_call(f, a, full_matrices=full_matrices) for f in (svd_u, svd_s, svd_vh))


def _rows(s):  # s as a row: scales the columns of what it multiplies
    return _call(np.expand_dims, s, axis=-2)


def _cols(s):  # s as a column: scales the rows
    return _call(np.expand_dims, s, axis=-1)


@tangent(svd_s)
def _(ts, ans, a, full_matrices):
    u, _, vh = _svd_parts(a, False)
    return _call(np.sum, u * (ts[0] @ _mT(vh)), axis=-2)


@adjoint(svd_s)
def _(g, ans, a, full_matrices):
    u, _, vh = _svd_parts(a, False)
    return ((u * _rows(g)) @ vh,)


@tangent(svd_u)
def _(ts, ans, a, full_matrices):
    u, s, vh = _svd_parts(a, full_matrices)
    dav = ts[0] @ _mT(vh)
    p = _mT(u) @ dav
    rotation = u @ (_inverse_gaps(s, square=True) * (p * _rows(s) + _cols(s) * _mT(p)))
    return rotation + (dav - u @ (_mT(u) @ dav)) / _rows(s)


@adjoint(svd_u)
def _(g, ans, a, full_matrices):
    u, s, vh = _svd_parts(a, full_matrices)
    utg = _mT(u) @ g
    rotation = u @ ((_inverse_gaps(s, square=True) * (utg - _mT(utg))) * _rows(s)) @ vh
    return (rotation + ((g - u @ utg) / _rows(s)) @ vh,)


@tangent(svd_vh)
def _(ts, ans, a, full_matrices):
    u, s, vh = _svd_parts(a, full_matrices)
    v = _mT(vh)
    datu = _mT(ts[0]) @ u
    p = _mT(u) @ ts[0] @ v
    rotation = v @ (_inverse_gaps(s, square=True) * (_cols(s) * p + _mT(p) * _rows(s)))
    return _mT(rotation + (datu - v @ (vh @ datu)) / _rows(s))


@adjoint(svd_vh)
def _(g, ans, a, full_matrices):
    u, s, vh = _svd_parts(a, full_matrices)
    v = _mT(vh)
    vtg = vh @ _mT(g)  # Vᵀ V̄, with V̄ = gᵀ
    rotation = u @ (_cols(s) * (_inverse_gaps(s, square=True) * (vtg - _mT(vtg)))) @ vh
    return (rotation + (u / _rows(s)) @ (g - (g @ v) @ vh),)


# ---------------------------------------------------------------------------
# qr (mode 'reduced', m >= n): X = Qᵀ da R⁻¹, Ω = tril(X, -1) - tril(X, -1)ᵀ,
# dR = (X - Ω) R, dQ = da R⁻¹ - Q (X - Ω)
# ---------------------------------------------------------------------------


def qr_q(a):
    return np.linalg.qr(a)[0]


def qr_r(a):
    return np.linalg.qr(a)[1]


def tall_matrices(a):
    """`a`, if its matrices have at least as many rows as columns (for np.linalg.qr's rules:
    with fewer rows, R is not square and the rules do not apply)."""
    if np.shape(a)[-2] < np.shape(a)[-1]:
        raise ValueError(
            f"no derivative of np.linalg.qr of a {np.shape(a)[-2]}x{np.shape(a)[-1]} matrix "
            f"(fewer rows than columns) is implemented"
        )
    return a


QR_Q = _part("qr", qr_q, "a", 0)
QR_R = _part("qr", qr_r, "a", 1)
register_multi(np.linalg.qr, QR_Q, QR_R)
helper(tall_matrices, "a", same_shape=True)
adjoint(tall_matrices)(lambda g, ans, a: (g,))
tangent(tall_matrices)(lambda ts, ans, a: ts[0])


def _qr_z(da, a):
    """Z = X - Ω (upper triangular) and B = da R⁻¹ for a tangent da."""
    checked = _call(tall_matrices, a)
    q, r = _call(qr_q, checked), _call(qr_r, checked)
    b = _solve_right(da, r)
    x = _mT(q) @ b
    low = _tril(x, -1)
    return x - (low - _mT(low)), b, q, r


def _qr_adjoint(a, z_bar, b_bar):
    """Ā from the adjoints of Z and of B (either may be None)."""
    checked = _call(tall_matrices, a)
    q, r = _call(qr_q, checked), _call(qr_r, checked)
    parts = [] if b_bar is None else [b_bar]
    if z_bar is not None:
        x_bar = z_bar - _tril(z_bar - _mT(z_bar), -1)
        parts.append(q @ x_bar)
    return _solve_right(_sum_parts(parts), _mT(r))  # B̄ R⁻ᵀ


@tangent(qr_r)
def _(ts, ans, a):
    z, _, _, r = _qr_z(ts[0], a)
    return z @ r


@tangent(qr_q)
def _(ts, ans, a):
    z, b, q, _ = _qr_z(ts[0], a)
    return b - q @ z


adjoint(qr_r)(lambda g, ans, a: (_qr_adjoint(a, g @ _mT(ans), None),))
adjoint(qr_q)(lambda g, ans, a: (_qr_adjoint(a, -(_mT(ans) @ g), g),))


# ---------------------------------------------------------------------------
# pinv (where the rank does not change): with P = pinv(a),
# dP = -P da P + P Pᵀ daᵀ (I - a P) + (I - P a) daᵀ Pᵀ P
# ---------------------------------------------------------------------------

defop("pinv", np.linalg.pinv, "a, rcond=None, hermitian=False", "np.linalg.pinv")


@tangent(np.linalg.pinv)
def _(ts, ans, a, rcond, hermitian):
    da, p = ts[0], ans
    dat = _mT(da)
    return -(p @ da @ p) + p @ _mT(p) @ (dat - (dat @ a) @ p) + (dat - p @ (a @ dat)) @ _mT(p) @ p


@adjoint(np.linalg.pinv)
def _(g, ans, a, rcond, hermitian):
    p, gt = ans, _mT(g)
    return (
        -(_mT(p) @ g @ _mT(p))
        + (gt - a @ (p @ gt)) @ p @ _mT(p)
        + _mT(p) @ p @ (gt - (gt @ p) @ a),
    )


# ---------------------------------------------------------------------------
# matrix_power(a, n), n a static integer: d(aⁿ) = Σ_k a^k da a^(n-1-k)
# (n < 0: the same with a⁻¹, and d(a⁻¹) = -a⁻¹ da a⁻¹)
# ---------------------------------------------------------------------------

required_attr(
    defop("matrix_power", np.linalg.matrix_power, "a, n=1", "np.linalg.matrix_power"), "n"
)
op_power = np.linalg.matrix_power


def _power_terms(base, n, d, transpose):
    """Σ_k base^k d base^(n-1-k) (of the transposed base, for the adjoint)."""
    m = _mT(base) if transpose else base
    powers = [None] + [_call(op_power, m, n=k) for k in range(1, n)]
    parts = []
    for k in range(n):
        term = d if k == 0 else powers[k] @ d
        parts.append(term if n - 1 - k == 0 else term @ powers[n - 1 - k])
    return _sum_parts(parts)


@tangent(np.linalg.matrix_power)
def _(ts, ans, a, n):
    if n == 0:
        return None
    if n > 0:
        return _power_terms(a, n, ts[0], False)
    inv = _call(np.linalg.inv, a)
    return _power_terms(inv, -n, -(inv @ ts[0] @ inv), False)


@adjoint(np.linalg.matrix_power)
def _(g, ans, a, n):
    if n == 0:
        return (None,)
    if n > 0:
        return (_power_terms(a, n, g, True),)
    inv_t = _mT(_call(np.linalg.inv, a))
    return (-(inv_t @ _power_terms(_mT(inv_t), -n, g, True) @ inv_t),)


# np.linalg.svdvals(x): the singular values, as np.linalg.svd(x)[1]
REGISTRY[np.linalg.svdvals] = SVD_S
SVD_S.aliases.append(np.linalg.svdvals)


# ---------------------------------------------------------------------------
# matrix_norm, vector_norm: np.linalg.norm's rules, over the axes each means
# ---------------------------------------------------------------------------

NORM = op_for(np.linalg.norm)
defop("matrix_norm", np.linalg.matrix_norm, "x, keepdims=False, ord='fro'",
      "np.linalg.matrix_norm")  # fmt: skip
adjoint(np.linalg.matrix_norm)(
    lambda g, ans, x, keepdims, ord: NORM.adjoint(
        g, ans, x, ord=ord, axis=(-2, -1), keepdims=keepdims
    )
)
tangent(np.linalg.matrix_norm)(
    lambda ts, ans, x, keepdims, ord: NORM.tangent(
        ts, ans, x, ord=ord, axis=(-2, -1), keepdims=keepdims
    )
)
defop("vector_norm", np.linalg.vector_norm, "x, axis=None, keepdims=False, ord=2",
      "np.linalg.vector_norm")  # fmt: skip


def _as_vector_norm(axis, ord):
    """norm's `ord` for a vector norm (2 is None: the same, and smooth to second order)."""
    if axis is not None and not isinstance(axis, int):
        raise NotImplementedError("no derivative rule for vector_norm over several axes")
    return None if ord == 2 else ord


@adjoint(np.linalg.vector_norm)
def _(g, ans, x, axis, keepdims, ord):
    ord = _as_vector_norm(axis, ord)
    if axis is not None:
        return NORM.adjoint(g, ans, x, ord=ord, axis=axis, keepdims=keepdims)
    flat = _call(np.ravel, x)  # all axes: the norm of the flattened array
    scalar = [_call(np.reshape, v, ()) for v in (g, ans)]
    (part,) = NORM.adjoint(*scalar, flat, ord=ord, axis=None, keepdims=False)
    return (_call(np.reshape, part, x.shape),)


@tangent(np.linalg.vector_norm)
def _(ts, ans, x, axis, keepdims, ord):
    ord = _as_vector_norm(axis, ord)
    if axis is not None:
        return NORM.tangent(ts, ans, x, ord=ord, axis=axis, keepdims=keepdims)
    flat, flat_t = _call(np.ravel, x), _call(np.ravel, ts[0])
    t = NORM.tangent([flat_t], _call(np.reshape, ans, ()), flat, ord=ord, axis=None,
                     keepdims=False)  # fmt: skip
    return _call(np.reshape, t, ans.shape)


# ---------------------------------------------------------------------------
# Second derivatives of np.linalg.norm beyond those of adcompiler/ops/numpy_ops.py:
# the rules of its helper `norm_adjoint` for the nuclear norm (through the rules of
# svd's U and Vh) and for the p-norms of vectors. The other orders go to the rules
# numpy_ops.py gives it.
# ---------------------------------------------------------------------------

NORM_ADJOINT = op_for(runtime.norm_adjoint)
_MATRIX_ORDS = (None, "fro", "nuc", 0, 1, -1, 2, -2, np.inf, -np.inf)


def _p_norm(ord, axis):
    """True for a vector p-norm (an order no matrix norm has, so never ambiguous)."""
    return isinstance(ord, (int, float)) and not isinstance(ord, bool) and ord not in _MATRIX_ORDS


def _nuclear(ord, axis):
    return ord == "nuc" and axis in (None, (-2, -1), (-1, -2))


def _polar_parts(x):
    u = _call(svd_u, x, full_matrices=False)
    vh = _call(svd_vh, x, full_matrices=False)
    return u, vh


def _matrix_scale(g, axis, keepdims):  # g, broadcasting against the matrices
    return g if axis is None or keepdims else _matrix(g)


def _p_slope(g, m, x, ord, axis, keepdims):
    """d norm_adjoint / dx along each entry: g (p-1) |x|^(p-2) / m^(p-1), for a p-norm."""
    from adcompiler.ops.numpy_math import _expand

    scale = _expand(g, axis, keepdims) / _expand(m, axis, keepdims) ** (ord - 1)
    return scale * (ord - 1) * _call(np.abs, x) ** (ord - 2)


_norm_adjoint_tangent = NORM_ADJOINT.tangent
_norm_adjoint_adjoint = NORM_ADJOINT.adjoint


@tangent(runtime.norm_adjoint)
def _(ts, ans, g, m, x, ord, axis, keepdims):
    from adcompiler.ops.numpy_math import _expand

    attrs = {"ord": ord, "axis": axis, "keepdims": keepdims}
    if not (_p_norm(ord, axis) or _nuclear(ord, axis)):
        return _norm_adjoint_tangent(ts, ans, g, m, x, **attrs)
    parts = [] if ts[0] is None else [_call(runtime.norm_adjoint, ts[0], m, x, **attrs)]
    if _nuclear(ord, axis):  # ans = g U Vh
        if ts[2] is not None:
            u, vh = _polar_parts(x)
            du = op_for(svd_u).tangent([ts[2]], u, x, full_matrices=False)
            dvh = op_for(svd_vh).tangent([ts[2]], vh, x, full_matrices=False)
            parts.append(_matrix_scale(g, axis, keepdims) * (du @ vh + u @ dvh))
        return _sum_parts(parts) if parts else None
    if ts[2] is not None:  # ans = g sign(x) |x|^(p-1) / m^(p-1)
        parts.append(_p_slope(g, m, x, ord, axis, keepdims) * ts[2])
    if ts[1] is not None:
        parts.append(-(ord - 1) * ans * _expand(ts[1], axis, keepdims) / _expand(m, axis, keepdims))
    return _sum_parts(parts) if parts else None


@adjoint(runtime.norm_adjoint)
def _(G, ans, g, m, x, ord, axis, keepdims):
    attrs = {"ord": ord, "axis": axis, "keepdims": keepdims}
    if not (_p_norm(ord, axis) or _nuclear(ord, axis)):
        return _norm_adjoint_adjoint(G, ans, g, m, x, **attrs)
    reduce = {"axis": axis, "keepdims": keepdims}
    ones = _call(np.ones_like, g)
    g_part = _call(np.sum, G * _call(runtime.norm_adjoint, ones, m, x, **attrs), **reduce)
    if _nuclear(ord, axis):
        u, vh = _polar_parts(x)
        w = _matrix_scale(g, axis, keepdims) * G
        (from_u,) = op_for(svd_u).adjoint(w @ _mT(vh), u, x, full_matrices=False)
        (from_vh,) = op_for(svd_vh).adjoint(_mT(u) @ w, vh, x, full_matrices=False)
        return g_part, None, from_u + from_vh
    m_part = -(ord - 1) * _call(np.sum, G * ans, **reduce) / m
    return g_part, m_part, G * _p_slope(g, m, x, ord, axis, keepdims)
