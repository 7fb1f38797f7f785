"""Every NumPy function a model can call and that has a derivative has a rule (issue 14).

`DIFFERENTIABLE` lists, by name, the functions of NumPy's main namespace, of
numpy.linalg and (when SciPy is installed) of scipy.special that have rules; the
test fails if one has none. `PENDING` lists the differentiable functions that do
not have rules yet, each with the reason; a test fails when one of them gets a
rule (move it to `DIFFERENTIABLE`). `NOT_DIFFERENTIABLE` lists functions whose
derivative is zero wherever it exists (integer-, boolean- or piecewise-constant
valued). Every ufunc of NumPy with a floating-point loop must be in one of the
three lists, so a new NumPy ufunc cannot go unnoticed.
"""

from __future__ import annotations

import numpy as np
import pytest

import adcompiler as ad
from adcompiler.errors import UnsupportedSyntaxError
from adcompiler.ops.core import lookup, multi

DIFFERENTIABLE = """
    add subtract multiply divide true_divide power pow float_power mod remainder fmod
    negative positive exp exp2 expm1 log log2 log10 log1p sqrt cbrt square reciprocal abs
    absolute fabs sin cos tan arcsin arccos arctan arctan2 asin acos atan atan2 sinh cosh tanh
    arcsinh arccosh arctanh asinh acosh atanh deg2rad rad2deg degrees radians hypot logaddexp
    logaddexp2 maximum minimum fmax fmin copysign ldexp nextafter clip where sinc nan_to_num
    modf divmod
    sum prod mean var std max min amax amin ptp nansum nanmax nanmin nanmean cumsum cumprod
    diff trace take take_along_axis
    dot vdot inner outer matmul tensordot einsum kron cross vecdot matvec vecmat
    tril triu roll pad sort tile repeat copy full full_like arange asarray asanyarray
    concatenate concat stack hstack vstack column_stack row_stack dstack append
    cumulative_sum cumulative_prod
    reshape ravel squeeze expand_dims broadcast_to transpose permute_dims swapaxes
    moveaxis rollaxis flip flipud fliplr rot90 diagonal diag atleast_1d atleast_2d atleast_3d
    real split array_split hsplit vsplit dsplit matrix_transpose linalg.diagonal
    linalg.matrix_transpose lib.stride_tricks.sliding_window_view
    linalg.inv linalg.det linalg.slogdet linalg.solve linalg.cholesky linalg.eigh
    linalg.eigvalsh linalg.svd linalg.svdvals linalg.qr linalg.pinv linalg.norm
    linalg.matrix_power linalg.matmul linalg.tensordot linalg.vecdot linalg.matrix_norm
    linalg.vector_norm
""".split()

SCIPY_SPECIAL = """
    expit logit erf erfc gammaln digamma psi polygamma xlogy xlog1py logsumexp softmax
    log_softmax
""".split()

PENDING = {
    "unstack": "returns as many arrays as x.shape[axis], known only at run time: "
    "adcompiler needs the number of results when compiling (use np.split with a count)",
    "partition": "np.partition and np.argpartition need not order the other entries alike, "
    "so the adjoint could route them to the wrong place",
    "average": "not yet: weights= is a second array input",
    "median": "not yet (a sort and a mean of the middle entries)",
    "percentile": "not yet (interpolation between sorted entries)",
    "quantile": "not yet (interpolation between sorted entries)",
    "nanvar": "not yet",
    "nanstd": "not yet",
    "nanprod": "not yet",
    "nancumsum": "not yet",
    "nancumprod": "not yet",
    "nanmedian": "not yet",
    "nanpercentile": "not yet",
    "nanquantile": "not yet",
    "ediff1d": "not yet",
    "gradient": "not yet (returns a list for several axes)",
    "trapezoid": "not yet",
    "convolve": "not yet",
    "correlate": "not yet",
    "polyval": "not yet",
    "interp": "not yet",
    "compress": "not yet (use a boolean mask, x[mask])",
    "extract": "not yet (use a boolean mask, x[mask])",
    "choose": "not yet",
    "select": "not yet: two lists of arrays (use np.where)",
    "piecewise": "not yet: takes functions",
    "insert": "not yet",
    "delete": "not yet",
    "resize": "not yet",
    "block": "not yet: nested lists of arrays",
    "i0": "not yet",
    "conj": "complex arrays are not supported",
    "conjugate": "complex arrays are not supported",
    "angle": "complex arrays are not supported",
    "frexp": "not yet: a tuple of mantissa and integer exponent",
    "linspace": "not yet (differentiable in start and stop)",
    "logspace": "not yet",
    "geomspace": "not yet",
    "meshgrid": "not yet (returns a list)",
    "cov": "not yet",
    "corrcoef": "not yet",
    "linalg.eig": "complex eigenvalues and eigenvectors (use eigh for a symmetric matrix)",
    "linalg.eigvals": "complex eigenvalues (use eigvalsh for a symmetric matrix)",
    "linalg.lstsq": "not yet: a tuple with the rank and the singular values",
    "linalg.multi_dot": "not yet (use @)",
    "linalg.tensorsolve": "not yet",
    "linalg.tensorinv": "not yet",
    "linalg.cond": "not yet",
    "linalg.outer": "not yet (np.outer has a rule; linalg.outer refuses other than 1-D)",
    "linalg.cross": "not yet (np.cross has a rule; linalg.cross takes 3-vectors only)",
    "linalg.trace": "not yet (np.trace has a rule; linalg.trace reads the last two axes)",
}

NOT_DIFFERENTIABLE = """
    ceil floor rint trunc fix sign spacing heaviside floor_divide signbit isnan isinf isfinite
    equal not_equal less less_equal greater greater_equal logical_and logical_or logical_not
    argmax argmin argsort zeros ones zeros_like ones_like eye round imag
    linalg.matrix_rank
""".split()


def resolve(name: str):
    """The NumPy (or scipy.special) function called `name` (None if this version has none)."""
    obj = np
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def has_rule(fn) -> bool:
    return lookup(fn) is not None or multi(fn) is not None


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_every_differentiable_numpy_function_has_a_rule(name):
    fn = resolve(name)
    if fn is None:
        pytest.skip(f"this NumPy has no {name}")
    assert has_rule(fn), f"np.{name} has no rule: add one, or move it to PENDING with a reason"
    op = lookup(fn)
    assert op is None or not op.nondiff, f"np.{name} is marked non-differentiable"


@pytest.mark.parametrize("name", SCIPY_SPECIAL)
def test_scipy_special_functions_have_rules(name):
    special = pytest.importorskip("scipy.special")
    op = lookup(getattr(special, name))
    assert op is not None and not op.nondiff, name


@pytest.mark.parametrize("name", sorted(PENDING))
def test_pending_functions_have_no_rule_yet(name):
    fn = resolve(name)
    if fn is None:
        pytest.skip(f"this NumPy has no {name}")
    assert not has_rule(fn), f"np.{name} has a rule now: move it to DIFFERENTIABLE"


@pytest.mark.parametrize("name", NOT_DIFFERENTIABLE)
def test_non_differentiable_functions_are_marked(name):
    fn = resolve(name)
    if fn is None:
        pytest.skip(f"this NumPy has no {name}")
    op = lookup(fn)
    assert op is None or op.nondiff, f"np.{name} is piecewise constant but has derivative rules"


def test_the_lists_do_not_overlap():
    lists = [set(DIFFERENTIABLE), set(PENDING), set(NOT_DIFFERENTIABLE)]
    for i, a in enumerate(lists):
        for b in lists[i + 1 :]:
            assert not a & b, a & b


def test_every_floating_point_ufunc_is_classified():
    float_loops = {"d->d", "dd->d", "d->dd", "dd->dd", "d->di", "di->d", "dl->d", "dq->d"}
    known = set(DIFFERENTIABLE) | set(PENDING) | set(NOT_DIFFERENTIABLE)
    missing = sorted(
        name
        for name in dir(np)
        if isinstance(getattr(np, name), np.ufunc)
        and float_loops & set(getattr(np, name).types)
        and name not in known
    )
    assert not missing, f"NumPy ufuncs with float loops in none of the lists: {missing}"


def test_coverage_counts():
    """The numbers docs/operators.md quotes (printed with -s)."""
    present = [n for n in DIFFERENTIABLE if resolve(n) is not None]
    pending = [n for n in PENDING if resolve(n) is not None]
    print(f"\ncovered: {len(present)} NumPy functions with rules, {len(pending)} pending")
    assert len(present) > 3 * len(pending) / 2


# ---------------------------------------------------------------------------
# NumPy's own signatures: parameter names, defaults, what is refused
# ---------------------------------------------------------------------------

rng = np.random.default_rng(14)


def clip_keywords(x):
    return np.sum(np.clip(x, a_min=-0.5, a_max=0.5) ** 2) + np.sum(x.clip(min=0.2) ** 2)


def clip_one_bound(x):
    return (
        np.sum(np.clip(x, None, 0.3) ** 2)
        + np.sum(np.clip(x, max=0.1) ** 2)
        + np.sum(x.clip(-0.1) ** 2)
    )


def test_clip_takes_numpys_keyword_names():
    x = rng.normal(size=(3, 4))
    ad.check_grad(clip_keywords, [x])
    ad.check_grad(clip_one_bound, [x])
    expected = 2 * np.clip(x, -0.5, 0.5) * (np.abs(x) <= 0.5) + 2 * np.clip(x, 0.2, None) * (
        x >= 0.2
    )
    np.testing.assert_allclose(ad.grad(clip_keywords)(x), expected)


def test_clip_error_names_numpys_parameters():
    def f(x):
        return np.sum(np.clip(x, lo=0.0))

    with pytest.raises(UnsupportedSyntaxError, match="lo"):
        ad.grad(f)(np.ones(3))


def keywords_as_numpy_spells_them(x):
    return (
        np.var(a=x, ddof=1)
        + np.sum(np.roll(x, shift=1, axis=0) ** 2)
        + np.sum(np.tril(m=x, k=-1) ** 2)
        + np.sum(np.pad(x, pad_width=((1, 0), (0, 2)), mode="edge") ** 2)
        + np.sum(np.linalg.matrix_power(x[:, :3], n=2) ** 2)
    )


def test_keyword_names_as_numpy_spells_them():
    ad.check_grad(keywords_as_numpy_spells_them, [rng.normal(size=(3, 4))])


def refused_svd_hermitian(x):
    return np.sum(np.linalg.svd(x, hermitian=True)[1])


def refused_qr_mode(x):
    return np.sum(np.linalg.qr(x, mode="r"))  # R alone: not a tuple


def refused_diff_prepend(x):
    return np.sum(np.diff(x, prepend=0.0))


def refused_roll_without_shift(x):
    return np.sum(np.roll(x))


def refused_clip_one_bound(x):
    return np.sum(np.clip(x, a_max=1.0))  # NumPy refuses it too


@pytest.mark.parametrize(
    "f, word",
    [
        (refused_svd_hermitian, "hermitian"),
        (refused_qr_mode, "mode"),
        (refused_diff_prepend, "prepend"),
        (refused_roll_without_shift, "shift"),
        (refused_clip_one_bound, "a_min"),
    ],
)
def test_arguments_whose_rules_are_missing_are_refused_before_running(f, word):
    with pytest.raises(UnsupportedSyntaxError, match=word):
        ad.grad(f)(rng.normal(size=(3, 3)))


def svd_u_full(x):
    return np.sum(np.linalg.svd(x)[0] ** 3)


def qr_q_only(x):
    return np.sum(np.linalg.qr(x)[0] ** 3)


def test_derivatives_that_do_not_exist_raise_at_run_time():
    with pytest.raises(ValueError, match="full_matrices=False"):
        ad.grad(svd_u_full)(rng.normal(size=(4, 3)))
    ad.check_grad(svd_u_full, [rng.normal(size=(3, 3))])
    with pytest.raises(ValueError, match="fewer rows than columns"):
        ad.grad(qr_q_only)(rng.normal(size=(2, 3)))


def pad_mean(x):
    return np.sum(np.pad(x, 1, mode="mean"))


def test_pad_modes_without_a_rule_are_refused():
    with pytest.raises(NotImplementedError, match="mode='mean'"):
        ad.grad(pad_mean)(np.ones((2, 2)))


def uses_only_eigenvalues(a):
    w, v = np.linalg.eigh(a)
    return np.sum(w**2)


def test_a_tuple_result_runs_only_the_rules_of_the_parts_used():
    a = rng.normal(size=(3, 3))
    a = a + a.T
    source = ad.source(ad.grad(uses_only_eigenvalues))
    assert "eigh(a)[1]" in source  # V, for the adjoint of w
    assert "eigvalsh" in source
    ad.check_grad(uses_only_eigenvalues, [a])
    # eigh reads the lower triangle: sum(w²) = Σ a_ii² + 2 Σ_{i>j} a_ij²
    expected = 4 * np.tril(a, -1) + 2 * np.diag(np.diag(a))
    np.testing.assert_allclose(ad.grad(uses_only_eigenvalues)(a), expected, atol=1e-10)


def divmod_both(x, y):
    q, r = divmod(x, y)
    return np.sum(r * r + q)


def test_divmod_is_floor_divide_and_mod():
    x, y = rng.uniform(2.2, 2.8, size=4), rng.uniform(0.97, 1.03, size=4)
    ad.check_grad(divmod_both, [x, y], wrt=("x", "y"))


def test_sort_follows_the_permutation_away_from_ties():
    def f(x):
        return np.sum(np.sort(x) * np.arange(4.0))

    x = np.array([0.3, -1.0, 2.0, 0.1])
    np.testing.assert_allclose(ad.grad(f)(x), [2.0, 0.0, 3.0, 1.0])
