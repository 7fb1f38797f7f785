"""The public API: grad, value_and_grad, vjp, decorators, wrt, caching, errors."""

import time

import numpy as np
import pytest

import adcompiler as ad
from adcompiler.errors import DifferentiationTypeError, SourceUnavailableError, WrtError
from tests import corpus_models as m

rng = np.random.default_rng(0)


def test_grad_matches_finite_differences_on_models():
    w, b = rng.normal(size=5), 0.3
    x, y = rng.normal(size=(20, 5)), (rng.random(20) > 0.5).astype(float)
    ad.check_grad(m.logistic_regression, (w, b, x, y), wrt=("w", "b"))
    W1, b1 = rng.normal(size=(4, 6)), rng.normal(size=6)
    W2, b2 = rng.normal(size=(6, 3)), rng.normal(size=3)
    x = rng.normal(size=(7, 4))
    y = np.eye(3)[rng.integers(0, 3, 7)]
    ad.check_grad(m.mlp, (W1, b1, W2, b2, x, y), wrt=("W1", "b1", "W2", "b2", "x"))
    a, bb, c = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(3, 1))
    ad.check_grad(m.broadcast_reduce, (a, bb, c), wrt=(0, 1, 2))


@pytest.mark.parametrize(
    "fn, args",
    [
        (m.import_styles, (rng.normal(size=4),)),
        (m.reads_global, (rng.normal(size=3),)),
        (m.calls_helper, (rng.normal(size=3), rng.normal(size=3))),
        (m.with_default, (rng.normal(size=3),)),
    ],
)
def test_name_resolution_and_calls(fn, args):
    ad.check_grad(fn, args)


def test_control_flow_models():
    rng = np.random.default_rng(3)
    Wh, Wx, b = rng.normal(size=(3, 3)) * 0.5, rng.normal(size=(3, 2)), rng.normal(size=3)
    xs, h0 = rng.normal(size=(5, 2)), rng.normal(size=3)
    ad.check_grad(m.rnn, (Wh, Wx, b, xs, h0), wrt=("Wh", "Wx", "b", "xs", "h0"))
    ad.check_grad(m.damped_until_small, (rng.normal(size=3), 0.7), wrt=("x", "rate"))


def test_indexing_forms():
    x = rng.normal(size=(4, 5))
    idx = np.array([0, 2, 2, 3])
    ad.check_grad(m.indexing, (x, idx))


def test_value_and_grad_returns_value_and_tuple():
    x = rng.normal(size=(3, 4))
    a, bb, c = x, rng.normal(size=4), rng.normal(size=(3, 1))
    value, (ga, gb) = ad.value_and_grad(m.broadcast_reduce, wrt=("a", "b"))(a, bb, c)
    assert value == pytest.approx(m.broadcast_reduce(a, bb, c))
    assert ga.shape == a.shape and gb.shape == bb.shape


def test_single_wrt_returns_array_not_tuple():
    g = ad.grad(m.with_default)(np.ones(3))
    assert isinstance(g, np.ndarray) and g.shape == (3,)
    np.testing.assert_allclose(g, 2.0)


def test_defaults_and_keywords_follow_the_signature():
    g = ad.grad(m.with_default)
    np.testing.assert_allclose(g(np.ones(2), scale=5.0), 5.0)
    np.testing.assert_allclose(g(np.ones(2)), 2.0)


def test_keyword_only_arguments_stay_keyword_only():
    import inspect

    def f(x, *, scale=2.0):
        return np.sum(x * scale)

    g = ad.grad(f)
    assert str(inspect.signature(g)) == "(x, *, scale=2.0)"
    np.testing.assert_allclose(g(np.ones(3), scale=3.0), 3.0)
    np.testing.assert_allclose(g(np.ones(3)), 2.0)


def test_decorator_forms():
    @ad.grad(wrt="w")
    def dloss(w, x):
        return np.sum((x @ w) ** 2)

    w, x = rng.normal(size=3), rng.normal(size=(4, 3))
    np.testing.assert_allclose(dloss(w, x), 2 * x.T @ (x @ w))

    @ad.grad
    def dsquare(v):
        return np.sum(v * v)

    np.testing.assert_allclose(dsquare(np.arange(3.0)), 2 * np.arange(3.0))


def test_vjp_with_tuple_output():
    x, y = rng.normal(size=3), rng.normal(size=3)
    f = ad.vjp(m.tuple_output, wrt=("x", "y"))
    (s, doubled), (gx, gy) = f(x, y, (1.0, np.ones(3)))  # one cotangent, shaped like the output
    assert s == pytest.approx(np.sum(x * y))
    np.testing.assert_allclose(gx, y + 2.0)
    np.testing.assert_allclose(gy, x)


def test_vjp_of_vector_function():
    x, v = rng.normal(size=4), rng.normal(size=4)
    value, g = ad.vjp(m.vector_output)(x, v)
    np.testing.assert_allclose(value, np.sin(x))
    np.testing.assert_allclose(g, v * np.cos(x))


def test_cached_second_call_is_fast_and_identical():
    first = ad.grad(m.mlp, wrt=("W1", "b1"))
    start = time.perf_counter()
    for _ in range(1000):
        again = ad.grad(m.mlp, wrt=("W1", "b1"))
    per_call = (time.perf_counter() - start) / 1000
    assert again is first
    assert per_call < 1e-3  # a dictionary lookup, not a compilation (generous bound)


def test_grad_of_non_scalar_output_is_a_clear_error():
    with pytest.raises(TypeError, match="return a scalar"):
        ad.grad(m.vector_output)(np.ones(3))
    with pytest.raises(DifferentiationTypeError, match="returns a tuple"):
        ad.grad(m.tuple_output)


def test_wrt_errors_name_the_choices():
    with pytest.raises(WrtError, match="choose from: w, b, x, y"):
        ad.grad(m.logistic_regression, wrt="weights")
    with pytest.raises(WrtError, match="out of range"):
        ad.grad(m.logistic_regression, wrt=7)


def test_integer_argument_is_refused_with_advice():
    with pytest.raises(TypeError, match=r"'n'.*integers.*astype\(float\)"):
        ad.grad(m.integer_wrt)(3, np.ones(2))
    ad.grad(m.integer_wrt, wrt="x")(3, np.ones(2))  # integers elsewhere are fine


def test_unreadable_source_is_a_one_line_error():
    namespace = {"np": np}
    exec("def made(x):\n    return np.sum(x)\n", namespace)
    with pytest.raises(SourceUnavailableError, match="cannot read the source"):
        ad.grad(namespace["made"])
    with pytest.raises(SourceUnavailableError, match="Python functions written with `def`"):
        ad.grad(np.sum)
