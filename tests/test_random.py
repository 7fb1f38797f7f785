"""Random draws inside the differentiated function (issue 19): the generated code draws from
the same generator, in the same order, with the same arguments as the function, so for a
given state its value is the function's and its gradient is that of the sampled objective.

Gradients are checked against central differences of the function with the generator
reseeded identically for each evaluation. The suite runs with ADCOMPILER_CHECK=1: the
specialized versions are compared with the generic one, and the streams must still be
consumed exactly once per call."""

from __future__ import annotations

import numpy as np
import pytest

import adcompiler as ad
from adcompiler.errors import UnsupportedSyntaxError

RNG = np.random.default_rng(11)
RS = np.random.RandomState(12)


def _fd(f, args, i, reseed, h=1e-6):
    """Central differences of f in args[i], calling `reseed()` before each evaluation."""
    x = np.asarray(args[i], dtype=float)
    out = np.zeros_like(x)
    for k in range(x.size):
        vals = []
        for sign in (1, -1):
            xk = x.copy()
            xk.flat[k] += sign * h
            a = list(args)
            a[i] = xk
            reseed()
            vals.append(f(*a))
        out.flat[k] = (vals[0] - vals[1]) / (2 * h)
    return out


def _fresh(seed):
    return lambda: np.random.default_rng(seed)


def _fd_with(f, x, make):
    """Central differences of `f(x, make())`: a generator made afresh for each evaluation."""
    return _fd(lambda v: f(v, make()), [x], 0, lambda: 0)


# ---------------------------------------------------------------------------
# Each form of draw: value equals the primal's, gradient equals central differences
# ---------------------------------------------------------------------------


def legacy_global(x):
    a = np.random.normal(size=x.shape)
    b = np.random.randn(3)
    c = np.random.rand(3)
    d = np.random.uniform(-1.0, 1.0, size=x.shape)
    e = np.random.standard_normal(x.shape)
    k = np.random.randint(0, 3)
    p = np.random.permutation(x.shape[0])
    j = np.random.choice(3)
    return np.sum(x * (a + b + d + e) * x[p]) + np.sum(c) * x[k] * x[j]


def legacy_object(x, rs):
    a = rs.randn(3)
    b = rs.normal(x, 0.5)
    k = rs.randint(0, 3)
    return np.sum(np.sin(x) * a) + np.sum(b**2) + x[k]


def generator_argument(x, rng):
    a = rng.standard_normal(x.shape)
    b = rng.normal(x, np.exp(x))
    c = rng.uniform(x, x + 2.0)
    d = rng.exponential(x * x + 1.0)
    k = rng.integers(0, 3)
    i = rng.choice(3, size=2)
    p = rng.permutation(3)
    u = rng.random(x.shape)
    return np.sum(a * x**2) + np.sum(b * c * d) + x[k] * np.sum(x[i]) * np.sum(u * x[p])


def module_global(x):
    return np.sum(x * RNG.standard_normal(x.shape)) + np.sum(RNG.normal(x, 2.0) ** 2)


def module_global_legacy(x):
    return np.sum(np.cos(x) * RS.randn(3)) + np.sum(RS.uniform(x, 3.0))


def made_inside(x, seed):
    rng = np.random.default_rng(seed)
    rs = np.random.RandomState(seed)
    return np.sum(x * rng.standard_normal(3)) + np.sum(np.exp(rs.normal(x, 0.1)))


X = np.array([0.3, -0.7, 1.1])


def test_legacy_global_state():
    g = ad.value_and_grad(legacy_global)
    for seed in range(4):  # generic, probed + specialized, checked
        np.random.seed(seed)
        value, grad = g(X)
        np.random.seed(seed)
        assert _close(value, legacy_global(X))
        after = np.random.get_state(legacy=False)
        np.random.seed(seed)
        legacy_global(X)
        assert _same(np.random.get_state(legacy=False), after)  # drawn exactly once
        expect = _fd(legacy_global, [X], 0, lambda s=seed: np.random.seed(s))
        np.testing.assert_allclose(grad, expect, rtol=1e-6, atol=1e-6)


def test_legacy_random_state_argument():
    g = ad.value_and_grad(legacy_object)
    for seed in range(4):
        value, grad = g(X, np.random.RandomState(seed))
        assert _close(value, legacy_object(X, np.random.RandomState(seed)))
        expect = _fd_with(legacy_object, X, lambda s=seed: np.random.RandomState(s))
        np.testing.assert_allclose(grad, expect, rtol=1e-6, atol=1e-6)


def test_generator_argument_value_gradient_and_stream():
    g = ad.value_and_grad(generator_argument)
    rng, twin = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(4):
        before = np.random.default_rng(5)
        before.bit_generator.state = rng.bit_generator.state
        value, grad = g(X, rng)
        assert _close(value, generator_argument(X, twin))  # the same draws, once per call
        assert rng.bit_generator.state == twin.bit_generator.state
        state = before.bit_generator.state

        def again(s=state):
            r = np.random.default_rng()
            r.bit_generator.state = s
            return r

        expect = _fd(lambda x: generator_argument(x, again()), [X], 0, lambda: 0)
        np.testing.assert_allclose(grad, expect, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("f", [module_global, module_global_legacy])
def test_generator_held_in_a_module_global(f):
    g = ad.value_and_grad(f)
    gen = RNG if f is module_global else RS
    for _ in range(4):
        saved = _state(gen)
        value, grad = g(X)
        after = _state(gen)
        _restore(gen, saved)
        assert _close(value, f(X))
        assert _same(_state(gen), after)
        expect = _fd(f, [X], 0, lambda s=saved: _restore(gen, s))
        np.testing.assert_allclose(grad, expect, rtol=1e-6, atol=1e-6)
        _restore(gen, after)


def test_generator_made_inside_from_a_seed():
    g = ad.value_and_grad(made_inside)
    for seed in (0, 1, 2, 3):
        value, grad = g(X, seed)
        assert _close(value, made_inside(X, seed))
        expect = _fd(lambda x, seed=seed: made_inside(x, seed), [X], 0, lambda: 0)
        np.testing.assert_allclose(grad, expect, rtol=1e-6, atol=1e-6)


def _close(a, b):
    """Equal up to the order of sums (a specialized version may sum in another order): a
    different draw would differ in the first digits."""
    return np.allclose(a, b, rtol=1e-13, atol=0)


def _state(gen):
    return gen.get_state(legacy=False) if isinstance(gen, np.random.RandomState) else (
        gen.bit_generator.state)  # fmt: skip


def _restore(gen, s):
    if isinstance(gen, np.random.RandomState):
        gen.set_state(s)
    else:
        gen.bit_generator.state = s


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(np.array_equal(a, b))


# ---------------------------------------------------------------------------
# Reparameterization: NumPy's normal(loc, scale) is loc + scale * z, z from the same stream
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", [np.random.default_rng, np.random.RandomState])
def test_numpy_draws_location_scale_from_one_stream(make):
    loc, scale = np.array([[0.5], [2.0]]), np.array([0.1, 3.0, 7.0])
    z = make(3).standard_normal((2, 3))
    assert np.array_equal(make(3).normal(loc, scale), loc + scale * z)
    u = make(3).random_sample((2, 3)) if make is np.random.RandomState else make(3).random((2, 3))
    assert np.array_equal(make(3).uniform(loc, scale + 3), loc + (scale + 3 - loc) * u)


def normal_params(mu, log_sigma, rng):
    return np.sum(np.tanh(rng.normal(mu, np.exp(log_sigma), size=(4, 2))))


def other_location_scale(mu, rng):
    s = mu * mu + 0.5
    return np.sum(
        rng.laplace(mu, s) + rng.logistic(mu, s) ** 2 + rng.gumbel(mu, s) + rng.lognormal(mu, s)
    )


@pytest.mark.parametrize("f", [normal_params, other_location_scale])
def test_location_scale_parameters_reverse_and_forward(f):
    mu, ls = np.array([0.2, -0.4]), np.array([-0.5, 0.3])
    args = [mu, ls] if f is normal_params else [mu]
    wrt = tuple(range(len(args)))
    grads = ad.grad(f, wrt=wrt)(*args, np.random.default_rng(7))
    for i in wrt:
        expect = _fd(lambda *a: f(*a, np.random.default_rng(7)), args, i, lambda: 0)
        np.testing.assert_allclose(grads[i], expect, rtol=1e-5, atol=1e-6)
        direction = np.array([0.3, -1.2])
        tangents = tuple(direction if j == i else np.zeros(2) for j in wrt)
        _, jvp = ad.jvp(f, wrt=wrt)(*args, np.random.default_rng(7), tangents)
        np.testing.assert_allclose(jvp, grads[i] @ direction, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------
# Effects: never merged, never dropped, never reordered, never drawn twice
# ---------------------------------------------------------------------------


def two_equal_draws(x, rng):
    a = rng.normal()
    b = rng.normal()
    return x * a - x * b


def unused_draw(x, rng):
    rng.standard_normal(3)  # thrown away: still advances the stream
    _ = rng.normal(size=2)
    return np.sum(x * rng.normal(size=3))


def order_matters(x, rng):
    a = rng.standard_normal(3)
    b = rng.standard_normal(3)
    return np.sum(x * b) + np.sum(a)  # a is read after b in the adjoint: not inlined there


@pytest.mark.parametrize("f", [two_equal_draws, unused_draw, order_matters])
def test_draws_are_effects(f):
    x = 1.5 if f is two_equal_draws else X
    g = ad.value_and_grad(f)
    for seed in range(4):
        value, grad = g(x, np.random.default_rng(seed))
        assert _close(value, f(x, np.random.default_rng(seed)))
        expect = _fd(lambda v, seed=seed: f(v, np.random.default_rng(seed)), [x], 0, lambda: 0)
        np.testing.assert_allclose(grad, expect, rtol=1e-6, atol=1e-6)
    assert "normal" in ad.source(g) or "standard_normal" in ad.source(g)


def test_unused_draw_is_kept_in_the_generated_code():
    code = [ln for ln in ad.source(ad.grad(unused_draw)).splitlines() if "#" not in ln]
    assert sum("= rng.standard_normal(3)" in ln for ln in code) == 1
    assert sum("= rng.normal(size=2)" in ln for ln in code) == 1


def in_loop_and_if(x, rng):
    total = 0.0
    for _ in range(3):
        eps = rng.standard_normal(x.shape)
        if eps[0] > 0:
            total = total + np.sum(x * eps) * rng.uniform()
        else:
            total = total + np.sum(x**2 * eps)
    k = 0
    while k < 2:
        total = total + np.sum(rng.normal(x, 1.0) ** 2)
        k = k + 1
    return total


def test_draws_in_loops_and_branches():
    g = ad.value_and_grad(in_loop_and_if)
    for seed in range(5):
        value, grad = g(X, np.random.default_rng(seed))
        assert np.isclose(value, in_loop_and_if(X, np.random.default_rng(seed)), rtol=1e-14)
        expect = _fd_with(in_loop_and_if, X, _fresh(seed))
        np.testing.assert_allclose(grad, expect, rtol=1e-6, atol=1e-6)


def draw_in_helper(x, rng):
    return np.sum(x * rng.standard_normal(x.shape))


def calls_helper(x, rng):
    return draw_in_helper(x, rng) ** 2 + draw_in_helper(x * 2, rng)


def test_draws_in_helpers():
    g = ad.value_and_grad(calls_helper)
    for seed in range(4):
        value, grad = g(X, np.random.default_rng(seed))
        assert _close(value, calls_helper(X, np.random.default_rng(seed)))
        expect = _fd_with(calls_helper, X, _fresh(seed))
        np.testing.assert_allclose(grad, expect, rtol=1e-6, atol=1e-6)


def random_index(x):
    k = np.random.randint(0, 3)  # an integer: never folded into a specialized version
    return x[k] * 2.0


def test_random_integer_is_not_folded_by_specialization():
    g = ad.grad(random_index)
    for seed in range(8):
        np.random.seed(seed)
        k = np.random.randint(0, 3)
        np.random.seed(seed)
        assert np.array_equal(g(X), 2.0 * np.eye(3)[k])


def test_hvp_hessian_and_jacobian_see_one_sample():
    def f(x, rng):
        return np.sum(np.sin(x) * rng.standard_normal(x.shape)) * np.sum(x * x)

    def values(x, rng):
        return np.sin(x) * rng.standard_normal(x.shape)

    rng = np.random.default_rng(3)
    h = ad.hessian(f)(X, rng)
    assert rng.bit_generator.state == _advanced(3, 3)  # drawn once, as one call of f
    grad = ad.grad(f)

    def g_of(x):
        return grad(x, np.random.default_rng(3))

    fd = np.stack([(g_of(X + e) - g_of(X - e)) / 2e-6 for e in np.eye(3) * 1e-6], axis=-1)
    np.testing.assert_allclose(h, fd, rtol=1e-5, atol=1e-6)
    v = np.array([1.0, 0.5, -2.0])
    hv = ad.hvp(f)(X, np.random.default_rng(3), v)
    np.testing.assert_allclose(hv, h @ v, rtol=1e-9, atol=1e-12)
    z = np.random.default_rng(3).standard_normal(3)
    for mode in ("reverse", "forward"):
        rng = np.random.default_rng(3)
        jac = ad.jacobian(values, mode=mode)(X, rng)
        np.testing.assert_allclose(jac, np.diag(np.cos(X) * z), rtol=1e-12, atol=1e-15)
        assert rng.bit_generator.state == _advanced(3, 3)


def _advanced(seed, n):
    r = np.random.default_rng(seed)
    r.standard_normal(n)
    return r.bit_generator.state


# ---------------------------------------------------------------------------
# Black-box variational inference with the reparameterization trick
# ---------------------------------------------------------------------------

DATA = np.random.default_rng(0).normal(1.5, 0.7, size=40)


def log_joint(theta):
    # a normal model for DATA with unknown mean theta[0] and log-std theta[1]; N(0, 3) prior
    mean, log_std = theta[..., 0], theta[..., 1]
    z = (DATA[:, None] - mean) / np.exp(log_std)
    like = np.sum(-0.5 * z**2 - log_std, axis=0)
    return like - 0.5 * np.sum(theta**2, axis=-1) / 9.0


def negative_elbo(params, rng, samples=16):
    mu, log_sigma = params[:2], params[2:]
    eps = rng.standard_normal((samples, 2))
    theta = mu + np.exp(log_sigma) * eps  # reparameterization
    entropy = np.sum(log_sigma)
    return -(np.mean(log_joint(theta)) + entropy)


def test_black_box_vi_gradient_and_training():
    params = np.array([0.0, 0.0, -1.0, -1.0])
    grad = ad.grad(negative_elbo)
    got = grad(params, np.random.default_rng(1))
    expect = _fd(lambda p: negative_elbo(p, np.random.default_rng(1)), [params], 0, lambda: 0)
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)
    rng = np.random.default_rng(2)
    start = negative_elbo(params, np.random.default_rng(99), samples=2000)
    for _ in range(300):
        params = params - 0.01 * grad(params, rng)
    end = negative_elbo(params, np.random.default_rng(99), samples=2000)
    assert end < start - 10
    assert abs(params[0] - DATA.mean()) < 0.2  # the posterior mean of the mean
    assert abs(np.exp(params[1]) - DATA.std()) < 0.2


# ---------------------------------------------------------------------------
# Refused with a located error (never a derivative taken as zero)
# ---------------------------------------------------------------------------


def gamma_shape(a, rng):
    return np.sum(rng.gamma(a))


def choice_of_values(x, rng):
    return np.sum(rng.choice(x, size=2))


def permute_values(x, rng):
    return np.sum(rng.permutation(x) * np.arange(3.0))


def shuffles(x, rng):
    y = x * 1.0
    rng.shuffle(y)
    return np.sum(y)


def shuffles_global(x, rng):
    y = x * 1.0
    np.random.shuffle(y)
    return np.sum(y)


def writes_out(x, rng):
    z = np.zeros(3)
    rng.standard_normal(3, out=z)
    return np.sum(x * z)


@pytest.mark.parametrize(
    "f, words",
    [
        (gamma_shape, "`gamma` have no derivative rule"),
        (choice_of_values, "x[rng.integers(0, len(x), size=k)]"),
        (permute_values, "x[rng.permutation(len(x))]"),
        (shuffles, "rng.permutation"),
        (shuffles_global, "changes its argument"),
        (writes_out, "`out=`"),
    ],
)
def test_refused_with_a_located_error(f, words):
    with pytest.raises(UnsupportedSyntaxError) as err:
        ad.grad(f)(np.array([1.0, 2.0, 3.0]), np.random.default_rng(0))
    assert words in str(err.value)
    assert "test_random.py:" in str(err.value)


def test_refused_in_forward_mode_too():
    with pytest.raises(UnsupportedSyntaxError, match="`gamma` have no derivative rule"):
        ad.jvp(gamma_shape)(np.array([1.0, 2.0]), np.random.default_rng(0), np.ones(2))


def test_draw_with_inactive_parameters_of_a_refused_kind_is_fine():
    def f(x, rng):
        return np.sum(x * rng.gamma(2.0, size=x.shape)) + np.sum(rng.choice(np.ones(3)))

    g = ad.grad(f)
    expect = np.random.default_rng(1).gamma(2.0, size=3)
    assert np.array_equal(g(X, np.random.default_rng(1)), expect)


def unseeded(x):
    rng = np.random.default_rng()  # seeded from the system: two runs differ
    return np.sum(x * rng.standard_normal(x.shape))


def test_generator_seeded_by_the_system():
    # ADCOMPILER_CHECK cannot compare two runs of it (each draws other values): not compared
    g = ad.value_and_grad(unseeded)
    for _ in range(4):
        value, grad = g(X)
        assert np.isclose(value, np.sum(X * grad), rtol=1e-12)


def test_check_grad_evaluates_one_sample():
    mu, ls = np.array([0.2, -0.4]), np.array([-0.5, 0.3])
    rng, twin = np.random.default_rng(8), np.random.default_rng(8)
    ad.check_grad(normal_params, [mu, ls, rng], wrt=(0, 1))
    normal_params(mu, ls, twin)
    assert rng.bit_generator.state == twin.bit_generator.state  # as one call
    np.random.seed(3)
    ad.check_grad(module_global_legacy, [X])
    ad.check_grad(legacy_global, [X])


def second(x, rng):
    return np.sin(rng.normal(x, np.exp(x))) * rng.standard_normal()


def test_grad_of_grad_draws_once_and_is_the_second_derivative():
    # a function reading `rng.<method>` gets a dispatcher for records (api.Structured);
    # grad of it used to copy the inner dispatcher's state and return the first gradient
    g = ad.grad(second)
    gg = ad.grad(g)
    x = 0.3
    fd = (g(x + 1e-6, np.random.default_rng(0)) - g(x - 1e-6, np.random.default_rng(0))) / 2e-6
    for _ in range(3):
        np.testing.assert_allclose(gg(x, np.random.default_rng(0)), fd, rtol=1e-6)
    np.testing.assert_allclose(ad.hvp(second)(x, np.random.default_rng(0), 1.0), fd, rtol=1e-6)
