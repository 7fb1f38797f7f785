"""Higher order as composition: hvp, hessian, jacobian, grad of grad.

Second derivatives are checked against central differences of the first
derivative (which tests/test_rules.py checks against differences of f):

- forward over reverse (`ad.hvp`) on every operator case of tests/test_rules.py,
  which runs the tangent rule of every helper that an adjoint rule emits;
- reverse over reverse (`ad.vjp` of `ad.grad`) on the same cases, which runs
  the adjoint rule of every such helper;
- `ad.hessian`, `ad.jacobian` in both modes, and `ad.grad(ad.grad(f))`.
"""

from __future__ import annotations

import functools
import inspect
import multiprocessing
import operator
import pickle

import numpy as np
import pytest

import adcompiler as ad
from adcompiler import ops, runtime
from tests import corpus_models as m
from tests.test_forward import (
    MODELS,
    control_args,
    control_cases,
    directions,
    inner,
    model_args,
    moved,
)
from tests.test_rules import CASES, inputs

# The differentiable helpers that rules emit (astype is what users' `x.astype` becomes).
INTERNAL = {
    op.name
    for op in ops.OPS
    if not op.nondiff
    and not op.regions
    and runtime.HELPERS.get(op.name) is op.impl
    # unstack, spread: run-time lists, exercised by tests/test_control.py
    and op.name not in ("astype", "unstack", "spread")
}

# Second derivatives that are not implemented: the helper's rule says so at compile time.
NOT_TWICE = {
    "norm_ord2_matrix": "spectral norm",
    "norm_neg2_matrix": "spectral norm",
    "norm_nuc_axis_pair": "nuclear norm over axes not known to be the last two",
    "norm_ord2_vector": "ord=2 with axis None may be a matrix norm",
}
# Kinks that a central difference of the gradient straddles (the gradient jumps there),
# and the norm at zero, where no second derivative exists.
KINKED = {"mod", "mod_const", "floordiv", "norm_at_zero"}


def grad_along(f, args, wrt, vs, eps=1e-5):
    """Central difference of the gradient of f along vs: H·v, by finite differences."""
    names = list(inspect.signature(f).parameters)
    g = ad.grad(f, wrt=tuple(wrt))

    def moved(sign):
        a = list(args)
        for w, v in zip(wrt, vs):
            i = names.index(w)
            a[i] = a[i] + sign * eps * v
        return g(*a)

    return [(np.asarray(u) - np.asarray(d)) / (2 * eps) for u, d in zip(moved(1), moved(-1))]


def second_order_params():
    out = []
    for c in CASES:
        marks = list(c.param().marks)
        reason = NOT_TWICE.get(c.fn.__name__)
        if reason:
            marks.append(pytest.mark.xfail(raises=NotImplementedError, strict=True, reason=reason))
        if c.fn.__name__ in KINKED:
            continue
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


def check_hvp(f, args, wrt, rtol=1e-4, atol=1e-6):
    wrt = tuple(wrt)
    vs = directions(f, args, wrt, seed=3)
    single = len(wrt) == 1
    hv = ad.hvp(f, wrt=wrt[0] if single else wrt)(*args, vs[0] if single else tuple(vs))
    hv = [hv] if single else list(hv)
    for got, expected in zip(hv, grad_along(f, args, wrt, vs)):
        assert np.shape(got) == np.shape(expected)
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)
    return hv


def check_grad_of_grad(f, args, wrt, rtol=1e-4, atol=1e-6):
    """Reverse over reverse: the vjp of the gradient along v is H·v (H is symmetric)."""
    wrt = tuple(wrt)
    vs = directions(f, args, wrt, seed=3)
    single = len(wrt) == 1
    g = ad.grad(f, wrt=wrt[0] if single else wrt)
    _, hv = ad.vjp(g, wrt=wrt[0] if single else wrt)(*args, vs[0] if single else tuple(vs))
    hv = [hv] if single else list(hv)
    for got, expected in zip(hv, grad_along(f, args, wrt, vs)):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("c", second_order_params())
def test_hvp_of_every_operator(c):
    check_hvp(c.fn, inputs(c), c.wrt)


@pytest.mark.parametrize("c", second_order_params())
def test_grad_of_grad_of_every_operator(c):
    check_grad_of_grad(c.fn, inputs(c), c.wrt)


def test_every_helper_that_rules_emit_is_differentiated_by_the_cases():
    """The cases above reach every helper, so each one's rules were run."""
    reached = set()
    for c in CASES:
        if c.xfail or c.fn.__name__ in NOT_TWICE:
            continue
        g = ad.grad(c.fn, wrt=c.wrt)
        reached |= {n.op.name for n in g.__adcompiler_ir__.body.nodes}
    by_name = {op.name: op for op in ops.OPS}
    # only tangent rules (forward mode, second derivatives) emit these
    assert INTERNAL - reached <= {"prod_adjoint_tangent", "sort_tangent", "sinc_second_derivative"}
    for name in INTERNAL:
        assert by_name[name].adjoint is not None and by_name[name].tangent is not None, name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_hvp_of_every_model(name):
    fn, wrt, _ = MODELS[name]
    check_hvp(fn, model_args(name), wrt)
    check_grad_of_grad(fn, model_args(name), wrt)


def test_hessian_matches_finite_differences():
    name = "broadcast_reduce"
    fn, _, _ = MODELS[name]
    args = model_args(name)
    h = ad.hessian(fn, wrt="a")(*args)
    assert h.shape == (3, 4, 3, 4)
    eps = 1e-5
    g = ad.grad(fn, wrt="a")
    for k in range(12):
        e = np.zeros(12)
        e[k] = 1.0
        e = e.reshape(3, 4)
        column = (g(args[0] + eps * e, *args[1:]) - g(args[0] - eps * e, *args[1:])) / (2 * eps)
        np.testing.assert_allclose(h[..., k // 4, k % 4], column, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(h.reshape(12, 12), h.reshape(12, 12).T, atol=1e-10)


def test_hessian_blocks_for_a_tuple_wrt():
    args = model_args("logistic_regression")
    (hww, hwb), (hbw, hbb) = ad.hessian(m.logistic_regression, wrt=("w", "b"))(*args)
    assert hww.shape == (3, 3) and hwb.shape == (3,) and hbw.shape == (3,) and hbb.shape == ()
    np.testing.assert_allclose(hwb, hbw, atol=1e-12)
    x = args[2]
    p = 1 / (1 + np.exp(-(x @ args[0] + args[1])))
    expected = x.T @ (x * (p * (1 - p))[:, None]) / len(x) + 0.02 * np.eye(3)
    np.testing.assert_allclose(hww, expected, rtol=1e-10)



def assert_same_blocks(got, expected):
    """The same nesting of tuples, the same arrays."""
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for a, c in zip(got, expected):
            assert_same_blocks(a, c)
    else:
        np.testing.assert_array_equal(got, expected)


def test_hessian_and_jacobian_pickle_by_reference_to_a_spawn_pool():
    """What hessian and jacobian return pickles like grad's: by reference to the function
    and the options. A spawn process (which shares no memory with this one) makes the same
    transform and computes the same blocks."""
    w, b, x, y = model_args("logistic_regression")
    made = [
        (ad.hessian(m.logistic_regression, wrt=("w", "b")), (w, b, x, y)),
        (ad.hessian(functools.partial(m.logistic_regression, x=x, y=y), wrt="w"), (w, b)),
        (ad.jacobian(m.vector_output, mode="forward"), (w,)),
        (ad.jacobian(ad.grad(m.logistic_regression), mode="reverse"), (w, b, x, y)),
    ]
    for fn, _ in made:
        assert pickle.loads(pickle.dumps(fn)).__name__ == fn.__name__
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        there = pool.starmap(operator.call, [(fn, *args) for fn, args in made])
    for (fn, args), got in zip(made, there):
        assert_same_blocks(got, fn(*args))
    p = 1 / (1 + np.exp(-(x @ w + b)))
    hww = x.T @ (x * (p * (1 - p))[:, None]) / len(x) + 0.02 * np.eye(3)
    np.testing.assert_allclose(there[0][0][0], hww, rtol=1e-10)
    np.testing.assert_allclose(there[1], hww, rtol=1e-10)  # the partial: the same block
    np.testing.assert_allclose(there[3], hww, rtol=1e-10)  # reverse over reverse
    np.testing.assert_allclose(there[2], np.diag(np.cos(w)), rtol=1e-12)


def matrix_function(a, b):
    return np.tanh(a @ b) * np.sum(a, axis=1, keepdims=True)


def test_jacobian_forward_and_reverse_agree_with_finite_differences():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(3, 2)), rng.normal(size=(2, 4))
    jf = ad.jacobian(matrix_function, wrt=("a", "b"), mode="forward")(a, b)
    jr = ad.jacobian(matrix_function, wrt=("a", "b"), mode="reverse")(a, b)
    assert jf[0].shape == (3, 4, 3, 2) and jf[1].shape == (3, 4, 2, 4)
    eps = 1e-6
    for x_index, (jfx, jrx) in enumerate(zip(jf, jr)):
        np.testing.assert_allclose(jfx, jrx, rtol=1e-10, atol=1e-12)
        x = (a, b)[x_index]
        for k in range(x.size):
            e = np.zeros(x.size)
            e[k] = eps
            moved = [list((a, b)), list((a, b))]
            moved[0][x_index] = x + e.reshape(x.shape)
            moved[1][x_index] = x - e.reshape(x.shape)
            column = (matrix_function(*moved[0]) - matrix_function(*moved[1])) / (2 * eps)
            np.testing.assert_allclose(
                jfx[..., *np.unravel_index(k, x.shape)], column, rtol=1e-5, atol=1e-8
            )


def test_jacobian_of_a_vector_function():
    x = np.array([0.1, -0.7, 1.3])
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(ad.jacobian(m.vector_output, mode=mode)(x), np.diag(np.cos(x)))
    with pytest.raises(ValueError, match="mode"):
        ad.jacobian(m.vector_output, mode="sideways")


def scalar_function(x):
    return np.sin(x) * x**3


def test_grad_of_grad():
    d2 = ad.grad(ad.grad(scalar_function))
    x = 0.7
    expected = -np.sin(x) * x**3 + 6 * np.cos(x) * x**2 + 6 * np.sin(x) * x
    assert d2(x) == pytest.approx(expected, rel=1e-12)
    d3 = ad.grad(d2)
    eps = 1e-5
    assert d3(x) == pytest.approx((d2(x + eps) - d2(x - eps)) / (2 * eps), rel=1e-6)
    assert "def scalar_function_grad_grad(x):" in ad.source(d2)


def test_hvp_source_names_tangents_of_adjoints():
    source = ad.source(ad.hvp(m.mlp, wrt="W1"))
    assert "def mlp_hvp(W1, b1, W2, b2, x, y, W1_dot):" in source
    assert "h_bar_dot = " in source and "return W1_bar_dot" in source


# ---------------------------------------------------------------------------
# Forward over reverse through control flow: tapes of saved values get tangent tapes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", control_cases())
def test_hvp_through_control_flow(case):
    import copy

    args, wrt, single, names, g, vs = control_setup(case)
    hv = ad.hvp(case.fn, wrt=case.wrt)(*copy.deepcopy(args), vs[0] if single else tuple(vs))
    expected = gradient_difference(g, args, wrt, vs, names)
    assert_same_tree(hv, expected)


def control_setup(case):
    """A control-flow case's arguments, `wrt` as a tuple, whether it is one name, the
    parameter names, its gradient (xfail if reverse mode fails) and directions."""
    import copy

    args = control_args(case)
    wrt = tuple(case.wrt) if isinstance(case.wrt, (tuple, list)) else (case.wrt,)
    single = not isinstance(case.wrt, (tuple, list))
    names = list(inspect.signature(case.fn).parameters)
    try:
        g = ad.grad(case.fn, wrt=case.wrt)
        g(*copy.deepcopy(args))
    except Exception as err:  # noqa: BLE001 - reverse mode must work first
        pytest.xfail(f"reverse mode fails: {type(err).__name__}")
    return args, wrt, single, names, g, directions(case.fn, args, wrt, seed=3)


def gradient_difference(g, args, wrt, vs, names, eps=1e-5):
    """H·v by a central difference of the gradient `g` along `vs` (xfail where the
    gradient is not finite there)."""
    import copy

    def grad_at(sign):
        shifted = copy.deepcopy(args)
        for w, v in zip(wrt, vs):
            shifted[names.index(w)] = moved(shifted[names.index(w)], sign * eps, v)
        return g(*shifted)

    expected = scaled(moved(grad_at(1), -1.0, grad_at(-1)), 1 / (2 * eps))
    if not np.isfinite(inner(expected, expected)):
        pytest.xfail("the gradient is not finite here")
    return expected


def scaled(x, factor):
    if isinstance(x, dict):
        return {k: scaled(v, factor) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(scaled(v, factor) for v in x)
    return np.asarray(x) * factor


def assert_same_tree(got, expected):
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected)
        for k in expected:
            assert_same_tree(got[k], expected[k])
    elif isinstance(expected, (list, tuple)):
        assert type(got) is type(expected) and len(got) == len(expected)
        for a, b in zip(got, expected):
            assert_same_tree(a, b)
    else:
        assert np.shape(got) == np.shape(expected)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def loop_function(x):
    h = x
    for _ in range(3):
        h = np.sin(h) * x
    return np.sum(h)


def test_second_derivatives_through_a_loop():
    x = np.array([0.7, -0.4])
    eps = 1e-5
    g = ad.grad(loop_function)
    expected = np.stack([(g(x + eps * e) - g(x - eps * e)) / (2 * eps) for e in np.eye(2)], axis=-1)
    np.testing.assert_allclose(ad.hessian(loop_function)(x), expected, rtol=1e-6)
    jacobian_of_gradient = ad.jacobian(g, mode="forward")(x)  # forward over reverse
    np.testing.assert_allclose(jacobian_of_gradient, expected, rtol=1e-6)
    by_reverse = ad.jacobian(g, mode="reverse")(x)  # reverse over reverse
    np.testing.assert_allclose(by_reverse, expected, rtol=1e-6)
    d1 = ad.grad(lambda_free_scalar_loop)
    d2 = ad.grad(d1)  # through the tapes of the gradient's loops
    assert d2(0.7) == pytest.approx((d1(0.7 + eps) - d1(0.7 - eps)) / (2 * eps), rel=1e-7)


def lambda_free_scalar_loop(x):
    h = x
    for _ in range(3):
        h = np.sin(h) * x
    return h


def test_third_derivative_by_forward_over_hvp():
    x, v = np.array([0.3, -0.5]), np.array([1.0, 2.0])
    product = ad.hvp(loop_function)
    third = ad.jvp(product)(x, v, v)[1]  # the tangent parameter is x_2_dot next to x_dot
    eps = 1e-4
    expected = (product(x + eps * v, v) - product(x - eps * v, v)) / (2 * eps)
    np.testing.assert_allclose(third, expected, rtol=1e-6)
    assert "def loop_function_hvp_jvp(x, x_dot, x_2_dot):" in ad.source(ad.jvp(product))


def test_tangent_parameter_names_never_collide():
    def f(x, x_dot):
        return np.sum(x * x_dot)

    value, dot = ad.jvp(f, wrt="x")(np.ones(2), np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    assert dot == pytest.approx(11.0)


def loop_saving_nothing_that_varies(x):
    s = x * x
    for _ in range(3):
        s = s * 2.0 + x
    return s


def test_grad_of_grad_through_a_loop_whose_adjoint_needs_no_saved_values():
    d2 = ad.grad(ad.grad(loop_saving_nothing_that_varies))
    assert d2(0.7) == pytest.approx(16.0)


# ---------------------------------------------------------------------------
# Reverse over reverse through control flow: each tape of saved values that vary gets
# an adjoint tape. The adjoint of the gradient's adjoint loop (forwards in time) writes
# slot t (`h_saved_bar[t] = h_bar`), the adjoint of its primal loop (backwards) reads it.
# ---------------------------------------------------------------------------


def _structured(case, args) -> bool:
    names = list(inspect.signature(case.fn).parameters)
    wrt = case.wrt if isinstance(case.wrt, (tuple, list)) else (case.wrt,)
    return any(isinstance(args[names.index(w)], (dict, list, tuple)) for w in wrt)


@pytest.mark.parametrize("case", control_cases())
def test_grad_of_grad_through_control_flow(case):
    """The vjp of the gradient along v is H·v: against central differences of the
    gradient and against forward over reverse (`ad.hvp`), on every control-flow case."""
    import copy

    args, wrt, single, names, g, vs = control_setup(case)
    try:
        _, hv = ad.vjp(g, wrt=case.wrt)(*copy.deepcopy(args), vs[0] if single else tuple(vs))
    except NotImplementedError as err:
        if "recursive helper" not in str(err):
            raise
        pytest.xfail(str(err))
    except (TypeError, ad.UnsupportedSyntaxError):
        if not _structured(case, args):
            raise
        pytest.xfail("vjp of a gradient with respect to a dict argument")
    expected = gradient_difference(g, args, wrt, vs, names)
    by_forward = ad.hvp(case.fn, wrt=case.wrt)(*copy.deepcopy(args), vs[0] if single else tuple(vs))
    if _structured(case, args):  # vjp takes a list of arrays as one array: compare leaves
        hv, expected, by_forward = (_leaves_of(t) for t in (hv, expected, by_forward))
    assert_same_tree(hv, expected)
    assert_same_tree(hv, by_forward)


def _leaves_of(tree) -> np.ndarray:
    if isinstance(tree, dict):
        return np.concatenate([_leaves_of(tree[k]) for k in sorted(tree)])
    if isinstance(tree, (list, tuple)):
        return np.concatenate([_leaves_of(t) for t in tree])
    return np.ravel(np.asarray(tree, dtype=float))


def check_reverse_over_reverse(f, args, wrt, v, eps=1e-6, rtol=1e-6, atol=1e-9):
    """vjp(grad(f)) along v against central differences of the gradient and ad.hvp."""
    names = list(inspect.signature(f).parameters)
    i = names.index(wrt)
    g = ad.grad(f, wrt=wrt)
    _, hv = ad.vjp(g, wrt=wrt)(*args, v)
    up, down = list(args), list(args)
    up[i], down[i] = args[i] + eps * v, args[i] - eps * v
    by_differences = (g(*up) - g(*down)) / (2 * eps)
    np.testing.assert_allclose(hv, by_differences, rtol=100 * rtol, atol=100 * atol)
    np.testing.assert_allclose(hv, ad.hvp(f, wrt=wrt)(*args, v), rtol=rtol, atol=atol)
    return hv


def rnn(x, W):
    h = x
    for _ in range(3):
        h = np.tanh(W @ h)
    return np.sum(h * h)


def test_reverse_over_reverse_through_an_rnn_loop():
    rng = np.random.default_rng(0)
    x, W, v = rng.normal(size=3), 0.5 * rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    check_reverse_over_reverse(rnn, [x, W], "W", v)
    source = ad.source(ad.vjp(ad.grad(rnn, wrt="W"), wrt="W"))
    # the adjoint of the gradient's adjoint loop runs forwards and fills adjoint tapes,
    # which the adjoint of its primal loop reads backwards
    assert "h_saved_bar = [None] * len(h_saved)" in source
    forwards = source.index("    for _ in range(3):\n", source.index("h_saved_bar = "))
    assert "h_saved_bar[_] = " in source[forwards:]
    backwards = source.index("for _ in reversed(range(3)):", forwards)
    assert "= h_saved_bar[_]" in source[backwards:]
    # the values the gradient saved are read again from its tapes, not saved twice: two
    # tapes of the gradient, two for the second sweep (h_bar and the tanh adjoint)
    assert source.count("= [None] * 3") == 4 and "h_bar_saved[_] = h_bar" in source
    assert "unbroadcast(W_bar" not in source  # x̄ + c is shaped like x


def hessian_of_rnn(W, x):
    return rnn(x, W)


def test_hessian_by_reverse_over_reverse():
    rng = np.random.default_rng(1)
    x, W = rng.normal(size=3), 0.5 * rng.normal(size=(3, 3))
    g = ad.grad(hessian_of_rnn)
    by_reverse = ad.jacobian(g, mode="reverse")(W, x)  # one vjp of the gradient per row
    np.testing.assert_allclose(by_reverse, ad.hessian(hessian_of_rnn)(W, x), rtol=1e-8, atol=1e-12)
    flat = by_reverse.reshape(9, 9)
    np.testing.assert_allclose(flat, flat.T, atol=1e-12)


def until_large(x, a):
    y = x
    k = 0
    while np.sum(y * y) < 10.0 and k < 20:
        y = y * a + np.sin(y)
        k = k + 1
    return np.sum(y**3)


def test_reverse_over_reverse_through_a_while_loop():
    """A data-dependent trip count: list tapes, read back at the iteration's slot."""
    x, a, v = np.array([0.3, -0.2, 0.5]), 1.3, np.array([1.0, -0.5, 0.25])
    check_reverse_over_reverse(until_large, [x, a], "x", v)
    check_reverse_over_reverse(until_large, [x, a], "a", 0.7)


def nested(x, W):
    s = 0.0
    for i in range(x.shape[0]):
        h = x[i]
        for j in range(3):
            h = np.tanh(W @ h) + 0.1 * j
        s = s + np.sum(h * x[i])
    return s


def test_reverse_over_reverse_through_nested_loops():
    rng = np.random.default_rng(2)
    x, W = rng.normal(size=(4, 3)), 0.5 * rng.normal(size=(3, 3))
    check_reverse_over_reverse(nested, [x, W], "W", rng.normal(size=(3, 3)))
    check_reverse_over_reverse(nested, [x, W], "x", rng.normal(size=(4, 3)))


def nested_scalar(x):
    s = x
    for _ in range(2):
        k = 0
        while k < 3:
            s = np.cos(s) * x
            k = k + 1
    return s


def test_third_derivative_through_nested_loops_by_forward_mode():
    """Reverse over reverse over reverse through nested loops is refused (an inner loop's
    tape is read back by more than one loop of the second derivative); forward mode over
    the second derivative gives the third."""
    d1 = ad.grad(nested_scalar)
    d2 = ad.grad(d1)
    eps = 1e-5
    assert d2(0.7) == pytest.approx((d1(0.7 + eps) - d1(0.7 - eps)) / (2 * eps), rel=1e-7)
    with pytest.raises(NotImplementedError, match="nested loops"):
        ad.grad(d2)
    third = ad.jvp(d2)(0.7, 1.0)[1]
    assert third == pytest.approx((d2(0.7 + eps) - d2(0.7 - eps)) / (2 * eps), rel=1e-6)


def branchy(x):
    h = x
    for _ in range(4):
        if np.sum(h) > 0.5:
            h = np.sin(h) * x
        else:
            h = h * h + x
    return np.sum(h)


def test_reverse_over_reverse_through_a_branch_in_a_loop():
    for x in (np.array([0.9, 0.4]), np.array([-0.3, 0.2])):  # both branches, then one
        check_reverse_over_reverse(branchy, [x], "x", np.array([0.6, -1.0]))


def scalar_while(x):
    h = x
    k = 0
    while h < 5.0 and k < 10:
        h = h * 1.5 + np.sin(h)
        k = k + 1
    return h * h


@pytest.mark.parametrize("fn", [lambda_free_scalar_loop, scalar_while, branchy])
def test_fourth_derivative_by_reverse_mode_through_a_loop(fn):
    """grad of grad of ...: a third derivative's adjoint tapes are written twice per slot
    (a second read adds to it), which the fourth follows."""
    x = 0.7 if fn is not branchy else np.array(0.7)
    derivatives = [ad.grad(fn)]
    for _ in range(3):
        derivatives.append(ad.grad(derivatives[-1]))
    eps = 1e-5
    for lower, higher in zip(derivatives, derivatives[1:]):
        fd = (lower(x + eps) - lower(x - eps)) / (2 * eps)
        assert float(higher(x)) == pytest.approx(float(fd), rel=1e-5, abs=1e-7)


def accumulating_loop(x):
    s = x * 0.0
    h = x
    for _ in range(3):
        h = np.tanh(h) * x
        s = s + h * h
    return np.sum(s * h)


@pytest.mark.parametrize("fn", [accumulating_loop, until_large])
def test_third_derivatives_of_arrays_by_reverse_over_reverse_over_reverse(fn):
    """vjp of (x, v) -> (∇f(x), H(x)·v) along (c1, c2) is ∇(c1·∇f + c2·H·v)."""
    rng = np.random.default_rng(4)
    x = rng.uniform(0.2, 0.8, size=3)
    v, c1, c2, u = (rng.normal(size=3) for _ in range(4))
    args = (x,) if fn is accumulating_loop else (x, 1.3)
    second = ad.vjp(ad.grad(fn, wrt="x"), wrt="x")
    third = ad.vjp(second, wrt="x")
    header = ad.source(third).split("(", 1)[1].split(")", 1)[0]
    names = header.split(", ")  # x, [a,] x_bar, then one cotangent for (∇f, H·v)
    assert len(set(names)) == len(names) == len(args) + 2

    def along(x):
        gx, hv = second(x, *args[1:], v)
        return c1 @ gx + c2 @ hv

    eps = 1e-6
    expected = (along(x + eps * u) - along(x - eps * u)) / (2 * eps)
    for _ in range(3):  # the generated function, then its specialized version
        _, x_bar = third(*args, v, (c1, c2))
        assert x_bar @ u == pytest.approx(expected, rel=1e-6)
