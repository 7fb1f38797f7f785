"""dtypes as NumPy keeps them (issue 14): float32 in, float32 derivatives out, in the
generic and the specialized versions (ADCOMPILER_CHECK=1 compares them); mixed inputs
follow NumPy's promotion; complex inputs are refused; an output of one element (shape
(1,) or (1, 1)) is a scalar loss."""

import zlib

import numpy as np
import pytest

import adcompiler as ad
from tests import test_rules as R

# Where a float32 input still gives a float64 gradient, and why
FLOAT64_GRADIENT = {
    "digamma": "scipy.special.polygamma computes in float64",
}


def _f32(a):
    if isinstance(a, float):
        return np.float32(a)
    if isinstance(a, np.ndarray) and a.dtype.kind == "f":
        return a.astype(np.float32)
    return a


def _f64(a):
    if isinstance(a, np.floating):
        return float(a)
    if isinstance(a, np.ndarray) and a.dtype.kind == "f":
        return a.astype(np.float64)
    return a


def _directional(fn, args, names, wrt, directions, eps=1e-6):
    """The float64 central difference of `fn` at `args` along `directions`."""

    def at(sign):
        moved = list(args)
        for n, d in zip(wrt, directions):
            i = names.index(n)
            moved[i] = moved[i] + sign * eps * d
            moved[i] = float(moved[i]) if np.ndim(moved[i]) == 0 else moved[i]
        return float(np.sum(fn(*moved)))

    return (at(1) - at(-1)) / (2 * eps)


@pytest.mark.parametrize("c", [c.param() for c in R.CASES if not c.xfail])
def test_float32_in_float32_gradient_out(c):
    import inspect

    names = list(inspect.signature(c.fn).parameters)
    args64 = R.inputs(c)
    args = [_f32(a) for a in args64]
    exact = [_f64(a) for a in args]  # the float32 point, in float64
    g = ad.value_and_grad(c.fn, wrt=c.wrt)
    for _ in range(3):  # the generic version, then the specialized one (checked against it)
        value, grads = g(*args)
    grads = grads if isinstance(grads, tuple) else (grads,)
    if np.result_type(value) == np.float32:  # else the function itself promotes: np.ones(3)
        base = c.fn.__name__
        want = np.float64 if base in FLOAT64_GRADIENT else np.float32
        for n, gx in zip(c.wrt, grads):
            x = args[names.index(n)]
            if isinstance(x, (np.ndarray, np.floating)):
                assert np.result_type(gx) == want, (n, np.result_type(gx))
    rng = np.random.default_rng(zlib.crc32(c.id.encode()))
    directions = [rng.normal(size=np.shape(exact[names.index(n)])) for n in c.wrt]
    got = sum(float(np.sum(np.asarray(gx, dtype=float) * d)) for gx, d in zip(grads, directions))
    want = _directional(c.fn, exact, names, c.wrt, directions)
    scale = sum(float(np.sum(np.abs(gx))) * np.max(np.abs(d), initial=0)
                for gx, d in zip(grads, directions))  # fmt: skip
    assert abs(got - want) <= 2e-3 * (abs(want) + scale) + 1e-3, (got, want)


def _loss(x, w):
    h = np.tanh(x @ w + 1.0)
    return np.sum(h**2) + np.mean(x) * 2.0 + np.max(h)


def _vector(x, w):
    return np.tanh(x @ w)


def _f32_args(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)


def test_every_transform_keeps_float32():
    x, w = _f32_args()
    for _ in range(3):
        assert ad.grad(_loss)(x, w).dtype == np.float32
        assert ad.hvp(_loss)(x, w, np.ones_like(x)).dtype == np.float32
        value, tangent = ad.jvp(_vector)(x, w, np.ones_like(x))
        assert value.dtype == tangent.dtype == np.float32
        value, cotangent = ad.vjp(_vector, wrt=("x", "w"))(x, w, np.ones((3, 2), np.float32))
        assert [c.dtype for c in cotangent] == [np.float32, np.float32]
        assert ad.jacobian(_vector)(x, w).dtype == np.float32
        assert ad.jacobian(_vector, mode="forward")(x, w).dtype == np.float32
        assert ad.hessian(_loss)(x[:1], w).dtype == np.float32
    # and the values are the float64 ones, to float32's precision
    x64, w64 = x.astype(float), w.astype(float)
    np.testing.assert_allclose(ad.grad(_loss)(x, w), ad.grad(_loss)(x64, w64), rtol=1e-4,
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(
        ad.jacobian(_vector)(x, w), ad.jacobian(_vector, mode="forward")(x64, w64), rtol=1e-4,
        atol=1e-5,
    )  # fmt: skip


def test_float64_specialized_code_keeps_the_constant_seed():
    x, w = (a.astype(float) for a in _f32_args(1))
    g = ad.grad(_loss)
    assert "one_like(" in ad.source(g, generic=True)
    g(x, w)
    g(x, w)
    assert "one_like(" not in ad.source(g)  # seeded with 1.0, folded as before
    x32, w32 = _f32_args(1)
    g(x32, w32)
    assert g(x32, w32).dtype == np.float32
    assert "one_like(" in ad.source(g)  # a float32 loss: 1 in float32


def test_mixed_float32_and_float64_follow_numpy_promotion():
    def f(x, y):
        return np.sum(x * y)

    x = np.arange(1.0, 4.0, dtype=np.float32)
    y = np.arange(2.0, 5.0)
    for _ in range(3):
        value, (gx, gy) = ad.value_and_grad(f, wrt=("x", "y"))(x, y)
        assert np.result_type(value) == np.float64  # float32 * float64 is float64
        assert gx.dtype == np.float64 and gy.dtype == np.float64
    np.testing.assert_allclose(gx, y)
    # a Python float is weak (NEP 50): float32 stays float32
    for _ in range(3):
        assert ad.grad(lambda x, s: np.sum(x * s))(x, 2.5).dtype == np.float32


def test_complex_arguments_are_refused_by_name():
    def f(x, c):
        return np.sum(np.abs(x * c))

    x = np.array([0.3, 0.7])
    with pytest.raises(TypeError, match="'x'.*complex|complex.*'x'"):
        ad.grad(f)(x + 1j, np.ones(2))
    with pytest.raises(TypeError, match="'c' is complex"):
        ad.grad(f)(x, np.array([1 + 2j, 3j]))  # was [-1.34, -3]: d|xc|/dx is |c| = [2.24, 3]
    with pytest.raises(TypeError, match="'c' is complex"):
        ad.hvp(f)(x, np.array([1 + 2j, 3j]), np.ones(2))


def test_a_complex_output_is_refused():
    def f(x):
        return np.sum(x * (1 + 2j))

    with pytest.raises(TypeError, match="complex output"):
        ad.grad(f)(np.array([0.3, 0.7]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1,), (1, 1)])
def test_an_output_of_one_element_is_a_scalar_loss(shape, dtype):
    def f(x, w):
        return np.reshape(np.sum(np.tanh(x) * w), shape) * 3.0

    rng = np.random.default_rng(5)
    x, w = rng.normal(size=4).astype(dtype), rng.normal(size=4).astype(dtype)
    want = 3.0 * w.astype(float) * (1 - np.tanh(x.astype(float)) ** 2)
    g, vg = ad.grad(f), ad.value_and_grad(f)
    for _ in range(3):
        got = g(x, w)
        assert got.shape == (4,) and got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12)
        value, again = vg(x, w)
        assert np.shape(value) == shape
        np.testing.assert_array_equal(again, got)
    ad.check_grad(f, [x.astype(float), w.astype(float)], wrt=("x", "w"))


def test_other_non_scalar_outputs_keep_the_clear_error():
    def f(x):
        return np.tanh(x) * 2.0

    for shape in [(2,), (1, 2), (3, 1)]:
        with pytest.raises(TypeError, match="return a scalar, but it returned shape"):
            ad.grad(f)(np.ones(shape))
