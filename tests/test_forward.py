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
        inner = sum(np.sum(np.asarray(g) * v) for g, v in zip(grads, vs))
        np.testing.assert_allclose(dot, inner, rtol=1e-9, atol=1e-9)
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
    if isinstance(err, NotImplementedError) and "recursive helper" in str(err):
        pytest.xfail(str(err))
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
