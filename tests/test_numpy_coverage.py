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

from adcompiler.ops.core import lookup, multi

DIFFERENTIABLE = """
    add subtract multiply divide true_divide power pow float_power mod remainder fmod
    negative positive exp exp2 expm1 log log2 log10 log1p sqrt cbrt square reciprocal abs
    absolute fabs sin cos tan arcsin arccos arctan arctan2 asin acos atan atan2 sinh cosh tanh
    arcsinh arccosh arctanh asinh acosh atanh deg2rad rad2deg degrees radians hypot logaddexp
    logaddexp2 maximum minimum fmax fmin copysign ldexp nextafter clip where sinc nan_to_num
    modf divmod
    sum prod mean var std max min amax amin ptp nansum cumsum cumprod diff trace
    dot vdot inner outer matmul tensordot einsum kron cross vecdot matvec vecmat
    tril triu roll pad sort tile repeat copy
    concatenate concat stack hstack vstack column_stack row_stack append
    reshape ravel squeeze expand_dims broadcast_to transpose permute_dims swapaxes
    linalg.inv linalg.det linalg.slogdet linalg.solve linalg.cholesky linalg.eigh
    linalg.eigvalsh linalg.svd linalg.svdvals linalg.qr linalg.pinv linalg.norm
    linalg.matrix_power linalg.matmul linalg.tensordot linalg.vecdot
""".split()

SCIPY_SPECIAL = """
    expit logit erf erfc gammaln digamma psi polygamma xlogy xlog1py logsumexp softmax
    log_softmax
""".split()

_VIEW = "pending: view trait (returns a view of its input)"
PENDING = {
    # another engineer is adding a typed "view of input k" trait to Op
    **dict.fromkeys(
        """moveaxis rollaxis flip flipud fliplr rot90 diagonal atleast_1d atleast_2d atleast_3d
        real imag split array_split hsplit vsplit dsplit unstack matrix_transpose
        linalg.diagonal linalg.matrix_transpose""".split(),
        _VIEW,
    ),
    "diag": _VIEW + " for a 2-D input (the diagonal); a 1-D input builds a new matrix",
    "partition": "np.partition and np.argpartition need not order the other entries alike, "
    "so the adjoint could route them to the wrong place",
    "average": "not yet: weights= is a second array input",
    "median": "not yet (a sort and a mean of the middle entries)",
    "percentile": "not yet (interpolation between sorted entries)",
    "quantile": "not yet (interpolation between sorted entries)",
    "nanmean": "not yet",
    "nanvar": "not yet",
    "nanstd": "not yet",
    "nanmax": "not yet",
    "nanmin": "not yet",
    "nanprod": "not yet",
    "nancumsum": "not yet",
    "nancumprod": "not yet",
    "nanmedian": "not yet",
    "nanpercentile": "not yet",
    "nanquantile": "not yet",
    "cumulative_sum": "not yet (include_initial=)",
    "cumulative_prod": "not yet (include_initial=)",
    "ediff1d": "not yet",
    "gradient": "not yet (returns a list for several axes)",
    "trapezoid": "not yet",
    "convolve": "not yet",
    "correlate": "not yet",
    "polyval": "not yet",
    "interp": "not yet",
    "take": "not yet (use indexing, x[idx])",
    "take_along_axis": "not yet",
    "compress": "not yet (use a boolean mask, x[mask])",
    "extract": "not yet (use a boolean mask, x[mask])",
    "choose": "not yet",
    "select": "not yet: two lists of arrays (use np.where)",
    "piecewise": "not yet: takes functions",
    "insert": "not yet",
    "delete": "not yet",
    "resize": "not yet",
    "dstack": "not yet",
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
    "linalg.vector_norm": "not yet (use np.linalg.norm)",
    "linalg.matrix_norm": "not yet (use np.linalg.norm)",
    "linalg.outer": "not yet (np.outer has a rule; linalg.outer refuses other than 1-D)",
    "linalg.cross": "not yet (np.cross has a rule; linalg.cross takes 3-vectors only)",
    "linalg.trace": "not yet (np.trace has a rule; linalg.trace reads the last two axes)",
}

NOT_DIFFERENTIABLE = """
    ceil floor rint trunc fix sign spacing heaviside floor_divide signbit isnan isinf isfinite
    equal not_equal less less_equal greater greater_equal logical_and logical_or logical_not
    argmax argmin argsort zeros ones full zeros_like ones_like full_like eye arange round
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
