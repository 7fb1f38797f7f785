"""Forward mode: `ad.jvp` against reverse mode and finite differences, on both corpora.

`check_jvp` compares, in one call, the generated Jacobian-vector product with
the gradient from reverse mode (``<∇f, v>``) and with a central difference of
f along v. It runs on every function of tests/corpus_ops.py (the cases of
tests/test_rules.py: every operator, every broadcasting pair) and of
tests/corpus_models.py.
"""

from __future__ import annotations

import inspect
import re
import zlib

import numpy as np
import pytest

import adcompiler as ad
from adcompiler import ssa
from adcompiler.forward import forward
from adcompiler.frontend import lower_function
from tests import corpus_models as m
from tests.test_rules import CASES, inputs


def random_like(x, rng):
    """A random direction with the structure of `x` (dicts, lists, tuples of arrays)."""
    if isinstance(x, dict):
        return {k: random_like(v, rng) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(random_like(v, rng) for v in x)
    d = rng.normal(size=np.shape(x))
    return float(d) if np.ndim(x) == 0 else d


def moved(x, step, d):
    """x + step * d, leaf by leaf."""
    if isinstance(x, dict):
        return {k: moved(v, step, d[k]) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(moved(v, step, e) for v, e in zip(x, d))
    return x + step * d


def inner(g, d):
    """The sum over leaves of g * d."""
    if isinstance(g, dict):
        return sum(inner(g[k], d[k]) for k in g)
    if isinstance(g, (list, tuple)):
        return sum(inner(a, b) for a, b in zip(g, d))
    return np.sum(np.asarray(g) * d)


def directions(f, args, wrt, seed=0):
    names = list(inspect.signature(f).parameters)
    rng = np.random.default_rng(seed)
    return [random_like(args[names.index(w) if isinstance(w, str) else w], rng) for w in wrt]


def along(f, args, wrt, vs, eps=1e-6, names=None):
    """Central difference of f at args along vs (one direction per `wrt` argument)."""
    names = names or list(inspect.signature(f).parameters)

    def shifted(sign):
        a = list(args)
        for w, v in zip(wrt, vs):
            i = names.index(w) if isinstance(w, str) else w
            a[i] = moved(a[i], sign * eps, v)
        return f(*a)

    up, down = shifted(1), shifted(-1)
    if isinstance(up, tuple):
        return tuple((np.asarray(u) - np.asarray(d)) / (2 * eps) for u, d in zip(up, down))
    return (np.asarray(up) - np.asarray(down)) / (2 * eps)


def check_jvp(f, args, wrt, rtol=1e-5, atol=1e-6, reverse=True):
    """Forward mode == reverse mode == finite differences, for f at args along random vs."""
    wrt = tuple(wrt)
    vs = directions(f, args, wrt)
    single = len(wrt) == 1
    value, dot = ad.jvp(f, wrt=wrt[0] if single else wrt)(*args, vs[0] if single else tuple(vs))
    expected_value = f(*args)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dot, along(f, args, wrt, vs), rtol=rtol, atol=atol)
    if reverse:
        grads = ad.grad(f, wrt=wrt)(*args)
        np.testing.assert_allclose(dot, inner(grads, vs), rtol=1e-9, atol=1e-9)
    assert np.shape(dot) == np.shape(expected_value)


@pytest.mark.parametrize("c", [c.param() for c in CASES])
def test_jvp_of_every_operator(c):
    check_jvp(c.fn, inputs(c), c.wrt, **c.tol)


MODELS = {
    "logistic_regression": (m.logistic_regression, ("w", "b"), dict(w="3", b="", x="5,3", y="5")),
    "mlp": (m.mlp, ("W1", "b1", "W2", "b2"), dict(W1="4,5", b1="5", W2="5,3", b2="3", x="6,4")),
    "broadcast_reduce": (m.broadcast_reduce, ("a", "b", "c"), dict(a="3,4", b="4", c="3,1")),
    "import_styles": (m.import_styles, ("x",), dict(x="3,2")),
    "reads_global": (m.reads_global, ("x",), dict(x="4")),
    "reads_global_array": (m.reads_global_array, ("x",), dict(x="3")),
    "calls_helper": (m.calls_helper, ("x", "y"), dict(x="3", y="3")),
    "with_default": (m.with_default, ("x",), dict(x="3", scale="")),  # defaults precede the tangent
    "indexing": (m.indexing, ("x",), dict(x="4,3")),
}


def model_args(name):
    fn, _, specs = MODELS[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    args = []
    for spec in specs.values():
        shape = tuple(int(s) for s in spec.split(",") if s)
        args.append(rng.normal(size=shape) if shape else float(rng.normal()))
    if name == "mlp":
        args.append(np.eye(3)[rng.integers(0, 3, size=6)])
    if name == "logistic_regression":
        args[-1] = (args[-1] > 0).astype(float)
    if name == "indexing":
        args.append(np.array([2, 0, 2]))
    return args


@pytest.mark.parametrize("name", sorted(MODELS))
def test_jvp_of_every_model(name):
    fn, wrt, _ = MODELS[name]
    check_jvp(fn, model_args(name), wrt)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_jvp_of_every_model_one_argument_at_a_time(name):
    fn, wrt, _ = MODELS[name]
    for w in wrt:
        check_jvp(fn, model_args(name), (w,))


def test_jvp_of_a_vector_function():
    x, v = np.array([0.3, -1.2, 2.0]), np.array([1.0, 0.5, -2.0])
    value, dot = ad.jvp(m.vector_output)(x, v)
    np.testing.assert_allclose(value, np.sin(x))
    np.testing.assert_allclose(dot, np.cos(x) * v)


def test_jvp_of_a_tuple_output_has_the_same_structure():
    rng = np.random.default_rng(1)
    x, y, tx, ty = (rng.normal(size=3) for _ in range(4))
    (s, doubled), (ds, ddoubled) = ad.jvp(m.tuple_output, wrt=("x", "y"))(x, y, (tx, ty))
    assert s == pytest.approx(np.sum(x * y))
    assert ds == pytest.approx(np.sum(tx * y + x * ty))
    np.testing.assert_allclose(ddoubled, 2 * tx)


def test_tangent_of_an_unvaried_result_is_zero():
    def f(x, y):
        return np.sum(x * 2.0), y * 3.0

    (_, _), (dx, dy) = ad.jvp(f, wrt="x")(np.ones(2), np.ones(3), np.ones(2))
    assert dx == pytest.approx(4.0)
    np.testing.assert_array_equal(dy, np.zeros(3))


def test_only_varied_values_get_tangents():
    def f(x, y):
        a = np.exp(y)
        return np.sum(a * x)

    source = ad.source(ad.jvp(f, wrt="x"))
    assert not re.search(r"\b(a|y)_dot\b", source)
    assert "x_dot" in source


def test_tangent_is_broadcast_where_the_rule_gives_a_smaller_one():
    def f(x, b):
        return x + b

    x, b, tb = np.ones((3, 2)), np.ones(2), np.array([1.0, 2.0])
    _, dot = ad.jvp(f, wrt="b")(x, b, tb)
    np.testing.assert_array_equal(dot, np.tile(tb, (3, 1)))
    assert "np.broadcast_to(b_dot" in ad.source(ad.jvp(f, wrt="b"))
    # a product already has the output's shape: no broadcast node
    assert "broadcast_to" not in ad.source(ad.jvp(lambda_free_mul, wrt="b"))


def lambda_free_mul(x, b):
    return x * b


def test_forward_ir_verifies_and_mirrors_reverse_names():
    fn = lower_function(m.mlp)
    out = ssa.verify(forward(fn, [0, 1]))
    assert [p.hint for p in out.params[-2:]] == ["W1", "b1"]
    assert all(p.role == "tangent" for p in out.params[-2:])
    source = ad.source(ad.jvp(m.mlp, wrt=("W1", "b1")))
    assert "def mlp_jvp(W1, b1, W2, b2, x, y, tangent):" in source
    for name in ("h_dot", "logits_dot", "log_probs_dot"):
        assert f"{name} = " in source


def test_integer_wrt_is_refused():
    with pytest.raises(TypeError, match="integers"):
        ad.jvp(m.integer_wrt, wrt="n")(3, np.ones(2), 1)


def test_jvp_is_cached_and_a_decorator():
    assert ad.jvp(m.mlp, wrt="W1") is ad.jvp(m.mlp, wrt="W1")

    @ad.jvp(wrt="x")
    def cube(x):
        return x**3

    value, dot = cube(2.0, 1.0)
    assert (value, dot) == pytest.approx((8.0, 12.0))


# ---------------------------------------------------------------------------
# Control flow: the cases of tests/corpus_control.py (branches, loops, early exits)
# ---------------------------------------------------------------------------


def control_cases():
    from tests import corpus_control as CC

    out = []
    for case in CC.cases():
        out.append(pytest.param(case, id=f"{case.category}-{case.id}"))
    return out


def control_args(case):
    from tests import corpus_control as CC

    args = CC.build(case)
    params = list(inspect.signature(case.fn).parameters.values())
    return args + [p.default for p in params[len(args) :]]  # jvp has no defaults


def unsupported_by_the_frontend(case, args, err):
    """xfail where reverse mode fails on the case as well (lowering, not forward mode)."""
    import copy

    from tests import corpus_control as CC

    try:
        grad = ad.grad(case.fn, wrt=case.wrt)(*copy.deepcopy(CC.build(case)))
    except Exception as reverse_err:  # noqa: BLE001 - any failure of reverse mode
        pytest.xfail(f"reverse mode fails too: {type(reverse_err).__name__}")
    if err is not None:
        raise err
    return grad


@pytest.mark.parametrize("case", control_cases())
def test_jvp_through_control_flow(case):
    import copy

    args = control_args(case)
    wrt = case.wrt if isinstance(case.wrt, (tuple, list)) else (case.wrt,)
    vs = directions(case.fn, args, wrt)
    tangent = vs[0] if len(wrt) == 1 and not isinstance(case.wrt, tuple) else tuple(vs)
    try:  # code for arguments that may be containers is generated at the first call
        value, dot = ad.jvp(case.fn, wrt=case.wrt)(*copy.deepcopy(args), tangent)
    except Exception as err:  # noqa: BLE001
        unsupported_by_the_frontend(case, args, err)
    names = list(inspect.signature(case.fn).parameters)
    expected = along(lambda *a: case.fn(*copy.deepcopy(a)), args, wrt, vs, names=names)
    if not np.allclose(dot, expected, rtol=1e-5, atol=1e-7):
        grads = unsupported_by_the_frontend(case, args, None)
        grads = grads if isinstance(case.wrt, tuple) else (grads,)
        reverse = sum(inner(g, v) for g, v in zip(grads, vs))
        if not np.allclose(reverse, expected, rtol=1e-5, atol=1e-7):
            pytest.xfail("reverse mode disagrees with finite differences too (lowering)")
        np.testing.assert_allclose(dot, expected, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------
# Recursive helpers: a call becomes a call of the helper's generated tangent function
# ---------------------------------------------------------------------------
# Recursion keeps a helper as a `call` (the first level is inlined into the caller);
# forward mode calls `helper_jvp(args, tangents) -> (value, tangent)`, generated once
# per helper and per set of arguments with tangents. Forward over reverse (hvp) calls
# the tangent functions of the helper's generated forward and adjoint functions.


def _rec_power(x, n):
    """x**n by recursion on the int n."""
    if n == 0:
        return np.ones_like(x)
    return x * _rec_power(x, n - 1)


def _rec_horner(x, coeffs, k):
    """sum_j coeffs[j] x**(j - k) for j >= k: Horner's rule, by recursion on k."""
    if k == len(coeffs) - 1:
        return coeffs[k] * np.ones_like(x)
    return coeffs[k] + x * _rec_horner(x, coeffs, k + 1)


def _rec_tree(x, depth):
    """A binary tree of calls, `depth` levels deep."""
    if depth == 0:
        return np.sin(x)
    left = _rec_tree(0.5 * x, depth - 1)
    right = _rec_tree(x * x, depth - 1)
    return np.tanh(left) * right + x


def _rec_ping(x, w, n):
    if n <= 0:
        return x * w
    return _rec_pong(np.cos(x) * w, w, n - 1)


def _rec_pong(x, w, n):
    if n <= 0:
        return np.exp(-x * x)
    return _rec_ping(x + w, w, n - 1) * x


def rec_power(x, n):
    return np.sum(_rec_power(x, n) * x)


def rec_polynomial(x, coeffs):
    return np.sum(_rec_horner(x, coeffs, 0) ** 2)


def rec_tree(x, depth):
    return np.sum(_rec_tree(x, depth) ** 2)


def rec_mutual(x, w, n):
    return np.sum(_rec_ping(x, w, n) * w)


def rec_in_for_loop(x, n):
    total = 0.0
    for i in range(3):
        total = total + np.sum(_rec_power(x * (i + 1.0), n))
        x = np.sin(x)
    return total


def rec_in_while_loop(x, n):
    k = 0
    total = 0.0
    while k < n:
        total = total + np.sum(_rec_tree(x, k))
        k = k + 1
    return total


def rec_two_specializations(x, w, n):
    """The helper is called with only x varying, and with only w varying."""
    return np.sum(_rec_ping(x, 0.7, n) + _rec_ping(1.3, w, n))


def rec_self(x, depth):
    """The differentiated function recurses itself."""
    if depth == 0:
        return np.sum(np.sin(x) * x)
    return rec_self(np.tanh(x) + x, depth - 1) * 0.5


def rec_vector(x, n):
    """An array-valued function (for Jacobians)."""
    return _rec_tree(x, n) * _rec_power(x, 2)


def rec_dict(params, x, n):
    return np.sum(_rec_power(params["a"] * x, n) + params["b"] * _rec_tree(x, n))


_X = np.array([0.3, -0.5, 0.8])
_W = np.array([0.4, 0.9, -0.2])
RECURSION = {
    "power": (rec_power, (_X, 4), ("x",)),
    "polynomial": (rec_polynomial, (_X, np.array([0.5, -1.0, 2.0, 0.3])), ("x",)),
    "tree": (rec_tree, (_X, 3), ("x",)),
    "mutual_x": (rec_mutual, (_X, _W, 5), ("x",)),
    "mutual_w": (rec_mutual, (_X, _W, 5), ("w",)),
    "mutual_both": (rec_mutual, (_X, _W, 4), ("x", "w")),
    "in_for_loop": (rec_in_for_loop, (_X, 3), ("x",)),
    "in_while_loop": (rec_in_while_loop, (_X, 3), ("x",)),
    "two_specializations_x": (rec_two_specializations, (_X, _W, 4), ("x",)),
    "two_specializations_w": (rec_two_specializations, (_X, _W, 4), ("w",)),
    "self": (rec_self, (_X, 3), ("x",)),
}


@pytest.mark.parametrize("name", sorted(RECURSION))
def test_jvp_through_recursive_helpers(name):
    fn, args, wrt = RECURSION[name]
    check_jvp(fn, list(args), wrt, rtol=1e-6, atol=1e-8)


def check_hvp(f, args, wrt, eps=1e-5):
    """H·v == the central difference of the reverse-mode gradient along v, and
    <u, H·v> == <H·u, v> (the Hessian is symmetric)."""
    names = list(inspect.signature(f).parameters)
    single = len(wrt) == 1
    g = ad.grad(f, wrt=wrt[0] if single else wrt)
    h = ad.hvp(f, wrt=wrt[0] if single else wrt)
    vs, us = directions(f, args, wrt, seed=1), directions(f, args, wrt, seed=2)
    hv = h(*args, vs[0] if single else tuple(vs))
    hu = h(*args, us[0] if single else tuple(us))

    def grad_at(step):
        shifted = list(args)
        for w, v in zip(wrt, vs):
            shifted[names.index(w)] = moved(shifted[names.index(w)], step, v)
        return g(*shifted)

    difference = moved(grad_at(eps), -1.0, grad_at(-eps))
    np.testing.assert_allclose(flat(hv), flat(difference) / (2 * eps), atol=1e-6)
    hv, hu = [(x,) if single else x for x in (hv, hu)]
    np.testing.assert_allclose(inner(list(hv), us), inner(list(hu), vs), rtol=1e-9, atol=1e-9)


def flat(x):
    """The leaves of a dict/list/tuple of arrays, as one vector."""
    if isinstance(x, dict):
        return np.concatenate([flat(x[k]) for k in sorted(x)])
    if isinstance(x, (list, tuple)):
        return np.concatenate([flat(v) for v in x])
    return np.ravel(np.asarray(x, dtype=float))


@pytest.mark.parametrize("name", sorted(RECURSION))
def test_hvp_through_recursive_helpers(name):
    fn, args, wrt = RECURSION[name]
    check_hvp(fn, list(args), wrt)


def test_recursive_helper_with_a_dict_argument():
    rng = np.random.default_rng(5)
    params = {"a": rng.normal(size=3), "b": rng.normal(size=3)}
    check_jvp(rec_dict, [params, _X, 3], ("params",), rtol=1e-6, atol=1e-8)
    check_hvp(rec_dict, [params, _X, 3], ("params",))
    source = ad.source(ad.jvp(rec_dict, wrt="params").latest)
    assert "a_dot = tangent['a']" in source and "def _rec_power_jvp(" in source


def test_jacobian_and_hessian_through_recursive_helpers():
    eps = 1e-6
    J = ad.jacobian(rec_vector, wrt="x", mode="forward")(_X, 3)
    columns = [
        (rec_vector(_X + eps * e, 3) - rec_vector(_X - eps * e, 3)) / (2 * eps) for e in np.eye(3)
    ]
    np.testing.assert_allclose(J, np.stack(columns, axis=-1), atol=1e-7)
    np.testing.assert_allclose(
        J, ad.jacobian(rec_vector, wrt="x", mode="reverse")(_X, 3), atol=1e-12
    )
    H = ad.hessian(rec_tree, wrt="x")(_X, 3)
    g = ad.grad(rec_tree, wrt="x")
    columns = [(g(_X + 1e-5 * e, 3) - g(_X - 1e-5 * e, 3)) / 2e-5 for e in np.eye(3)]
    np.testing.assert_allclose(H, np.stack(columns, axis=-1), atol=1e-6)
    np.testing.assert_allclose(H, H.T, atol=1e-12)


def test_third_derivatives_through_recursive_helpers():
    """jvp of an hvp and of a jvp: tangent functions of tangent functions."""
    rng = np.random.default_rng(7)
    v, u = rng.normal(size=3), rng.normal(size=3)
    for inner_fn, args in ((ad.hvp(rec_power, wrt="x"), (4,)), (ad.jvp(rec_tree, wrt="x"), (3,))):
        _, dot = ad.jvp(inner_fn, wrt="x")(_X, *args, v, u)
        up, down = inner_fn(_X + 1e-5 * u, *args, v), inner_fn(_X - 1e-5 * u, *args, v)
        expected = (np.asarray(up, dtype=object) - np.asarray(down, dtype=object)) / 2e-5
        for got, want in zip(np.atleast_1d(np.asarray(dot, dtype=object)), np.atleast_1d(expected)):
            np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), atol=1e-6)
    g = ad.grad(rec_mutual, wrt="x")  # jvp of a gradient (forward over reverse)
    _, dot = ad.jvp(g, wrt="x")(_X, _W, 5, v)
    expected = (g(_X + 1e-5 * v, _W, 5) - g(_X - 1e-5 * v, _W, 5)) / 2e-5
    np.testing.assert_allclose(dot, expected, atol=1e-6)


def test_generated_tangent_functions_of_recursive_helpers_read_well():
    source = ad.source(ad.jvp(rec_power, wrt="x"))
    assert source.count("def _rec_power_jvp(x, n, x_dot):") == 1  # generated once
    helper = source.split("def rec_power_jvp")[0]
    assert "_rec_power_jvp_result = _rec_power_jvp(x, n - 1, x_dot)" in helper  # recursion
    assert "_rec_power_jvp(" in source.split("def rec_power_jvp")[1]
    assert "NotImplemented" not in source
    # mutual recursion: the first level is inlined, the recursive call is one function
    source = ad.source(ad.jvp(rec_mutual, wrt="w"))
    assert "def _rec_ping_jvp(x, w, n, x_dot, w_dot):" in source
    # forward over reverse: tangent functions of the generated forward and adjoint
    source = ad.source(ad.hvp(rec_power, wrt="x"))
    assert "def _rec_power_forward_jvp(x, n, x_dot):" in source
    assert "def _rec_power_adjoint_jvp(saved, result_bar, saved_dot, result_bar_dot):" in source
    assert "saved_dot = None, x_dot, None, " in source  # the tangents of the saved values


def test_recursive_helper_specialized_on_the_arguments_that_vary():
    source = ad.source(ad.jvp(rec_two_specializations, wrt="w"))
    # only w varies in the recursive call: x's tangent is computed from w's
    assert re.search(r"def _rec_ping_jvp\w*\(x, w, n, x_dot, w_dot\):", source)
    # a recursive call that does not vary calls the user's helper itself
    assert "= _rec_ping(" in source
    source = ad.source(ad.jvp(rec_mutual, wrt="x"))
    assert re.search(r"def _rec_ping_jvp\w*\(x, w, n, x_dot\):", source)


def _rec_pair(x, n):
    if n == 0:
        return x, x * x
    a, b = _rec_pair(np.sin(x), n - 1)
    return a * b, a + b


def rec_pair(x, n):
    a, b = _rec_pair(x, n)
    return np.sum(a * b)


def test_recursive_helper_returning_a_tuple():
    """Forward mode only: reverse mode refuses a recursive helper returning a tuple."""
    check_jvp(rec_pair, [_X, 3], ("x",), rtol=1e-6, atol=1e-8, reverse=False)
    source = ad.source(ad.jvp(rec_pair, wrt="x"))
    assert "return (result, result_1), (result_dot, result_dot_1)" in source


def test_reverse_mode_over_a_tangent_function_is_refused():
    jvp = ad.jvp(rec_tree, wrt="x")
    with pytest.raises(NotImplementedError, match="call_jvp"):
        ad.vjp(jvp, wrt="x")(_X, 2, _W, (1.0, 1.0))


def _tree(x, depth):
    """The name of a recursive helper of tests/corpus_control.py, another function."""
    if depth <= 0:
        return np.cos(x)
    return _tree(x * 0.5, depth - 1) * x + _tree(x, depth - 2)


def rec_same_name(x, w, depth):
    return np.sum(_tree(x, depth) + _tree(0.3, depth) * w)


def test_recursive_helpers_with_the_same_name_do_not_mix():
    from tests import corpus_control as CC

    x = np.array([0.4, -0.7])
    check_jvp(CC.recursion_tree, [x, 4], ("x",), rtol=1e-6, atol=1e-8)
    check_jvp(rec_same_name, [x, _W[:2], 4], ("x",), rtol=1e-6, atol=1e-8)
    check_jvp(rec_same_name, [x, _W[:2], 4], ("w",), rtol=1e-6, atol=1e-8)
    check_hvp(rec_same_name, [x, _W[:2], 4], ("x",))
    check_hvp(CC.recursion_tree, [x, 4], ("x",))
