"""Specialization on argument shapes (adcompiler/specialize/).

From the second call with one signature of arguments (types, shapes, dtypes), a
generated function runs a version specialized on it. Checked here:

- on every function of both corpora (operators and control flow), the
  specialized version returns what the generic one returns, on the arguments it
  was specialized with and on other data of the same shapes (which may take
  other branches, masks and trip counts);
- shapes that depend on the data (masks, lists grown in `while` loops, branches
  on the data) are not frozen;
- what the specialized code looks like: no `unbroadcast` or saved shapes left in
  the benchmark models, a golden file for the MLP.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

import adcompiler as ad
from adcompiler.specialize import Specializing
from tests import corpus_control as C
from tests import corpus_models as m
from tests.test_codegen import GOLDEN, normalized
from tests.test_control import KNOWN, _leaves
from tests.test_forward import MODELS, model_args
from tests.test_rules import CASES as OP_CASES
from tests.test_rules import inputs as op_inputs


def _perturbed(args, seed=1):
    """Other data of the same types and shapes (floats moved by about 1e-3)."""
    rng = np.random.default_rng(seed)

    def move(a):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            return a * (1 + 1e-3 * rng.standard_normal(a.shape))
        if type(a) is float:
            return a * (1 + 1e-3 * rng.standard_normal())
        if isinstance(a, dict):
            return {k: move(v) for k, v in a.items()}
        if isinstance(a, (list, tuple)):
            return type(a)(move(v) for v in a)
        return a

    return [move(a) for a in args]


def _same(got, expected):
    got, expected = _leaves(got), _leaves(expected)
    assert [p for p, _ in got] == [p for p, _ in expected]
    for (path, a), (_, b) in zip(got, expected):
        if a is None or b is None or isinstance(a, str):
            assert a == b, path
            continue
        assert type(a) is type(b) or np.ndim(a) == np.ndim(b) == 0, (path, type(a), type(b))
        assert np.shape(a) == np.shape(b), path
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13, err_msg=str(path))


def check_specialized(fn, args, wrt):
    g = ad.value_and_grad(fn, wrt=wrt)
    generic = g(*copy.deepcopy(args))
    kept = copy.deepcopy(args)
    specialized = g(*args)  # the second call compiles and runs it
    _same(specialized, generic)
    _same(args, kept)  # writing in place never reaches the caller's arrays
    _same(g(*args), generic)  # nor anything the next call reads
    other = _perturbed(args)
    try:
        expected = _fresh_generic(fn, wrt)(*copy.deepcopy(other))
    except Exception as err:  # noqa: BLE001 - the other data may leave the domain
        with pytest.raises(type(err)):
            g(*copy.deepcopy(other))
        return g
    _same(g(*copy.deepcopy(other)), expected)
    return g


def _fresh_generic(fn, wrt):
    os.environ["ADCOMPILER_SPECIALIZE"] = "0"
    try:
        return ad.value_and_grad(_copy_function(fn), wrt=wrt)
    finally:
        del os.environ["ADCOMPILER_SPECIALIZE"]


def _copy_function(fn):
    """The same function as a new object (the compiled-function cache is per object)."""
    import types

    new = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__,
                             fn.__closure__)  # fmt: skip
    new.__kwdefaults__ = fn.__kwdefaults__
    return new


CONTROL = [pytest.param(c, id=f"{c.category}-{c.id}") for c in C.cases() if c.id not in KNOWN]


@pytest.mark.parametrize("case", CONTROL)
def test_specialized_equals_generic_on_the_control_corpus(case):
    check_specialized(case.fn, C.build(case), case.wrt)


@pytest.mark.parametrize("c", [c.param() for c in OP_CASES if not c.xfail])
def test_specialized_equals_generic_on_every_operator(c):
    check_specialized(c.fn, op_inputs(c), c.wrt)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_specialized_equals_generic_on_the_models(name):
    fn, wrt, _ = MODELS[name]
    check_specialized(fn, model_args(name), wrt)


def test_specialized_equals_generic_through_a_custom_rule():
    from tests.test_custom import custom_rules, logistic_args, logistic_loss

    rules = custom_rules.__wrapped__()
    next(rules)
    try:
        check_specialized(logistic_loss, logistic_args(), ("w",))
    finally:
        next(rules, None)


@pytest.mark.parametrize("workload", ["logistic", "mlp", "gmm", "lstm", "scalar_loop"])
def test_specialized_equals_generic_on_the_benchmark_workloads(workload):
    import importlib

    w = importlib.import_module(f"benchmarks.workloads.{workload}")
    inputs = w.make_inputs("small")
    check_specialized(w.primal, list(inputs.values()), w.WRT)


def test_a_mask_does_not_freeze_the_shape():
    def f(x, w):
        return np.sum(x[x > 0] * w)

    g = ad.grad(f, wrt="x")
    x = np.array([1.0, -2.0, 3.0, -4.0])
    g(x, 2.0), g(x, 2.0)
    y = np.array([1.0, 2.0, 3.0, -4.0])  # three entries pass the mask, not two
    np.testing.assert_allclose(g(y, 2.0), [2.0, 2.0, 2.0, 0.0])


def test_a_list_grown_in_a_while_loop_does_not_freeze_the_shape():
    def f(x):
        parts = []
        total = x
        while np.sum(total) < 10.0:
            total = total * 2.0
            parts.append(total)
        return np.sum(np.stack(parts) ** 2)

    g = ad.grad(f)
    x = np.array([1.0, 1.0])
    g(x), g(x)
    assert isinstance(g, Specializing) and g.latest is not g.generic
    for y in (np.array([0.1, 0.2]), np.array([3.0, 3.0])):  # other trip counts
        np.testing.assert_allclose(g(y), _fresh_generic(f, "x")(y)[1], rtol=1e-12)


def test_a_branch_on_the_data_with_shapes_of_its_own():
    def f(x, w):
        if np.sum(x) > 0:
            y = x[:, None] * w  # (n, k)
        else:
            y = np.sum(x) * w  # (k,)
        return np.sum(np.tanh(y))

    g = ad.grad(f, wrt=("x", "w"))
    x, w = np.array([1.0, 2.0]), np.array([0.5, -0.5, 0.25])
    g(x, w), g(x, w)
    for y in (x, -x):
        for a, b in zip(g(y, w), _fresh_generic(f, ("x", "w"))(y, w)[1]):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_each_signature_gets_its_own_version():
    g = ad.grad(m.mlp, wrt=("W1", "b1"))
    versions = []
    for batch in (4, 7, 4, 7, 4):
        args = _mlp_args(batch)
        got = g(*args)
        expected = _fresh_generic(m.mlp, ("W1", "b1"))(*args)[1]
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-12)
        versions.append(g.latest)
    assert versions[2] is versions[4] and versions[2] is not versions[3]
    assert len(g.versions) == 2


def test_the_number_of_versions_is_bounded():
    from adcompiler.specialize import MAX_VERSIONS

    def f(x):
        return np.sum(np.tanh(x) * x)

    g = ad.grad(f)
    for n in range(1, MAX_VERSIONS + 6):
        x = np.linspace(-1.0, 1.0, n)
        for _ in range(2):
            np.testing.assert_allclose(g(x), np.tanh(x) + x / np.cosh(x) ** 2, rtol=1e-12)
    assert len(g.versions) == MAX_VERSIONS


def test_python_float_and_numpy_scalar_are_different_signatures():
    def f(x, s):
        return np.sum(x * s) * s

    g = ad.grad(f, wrt=("x", "s"))
    x = np.array([1.0, 2.0])
    for s in (2.0, 2.0, np.float64(2.0), np.float64(2.0), 2.0):
        gx, gs = g(x, s)
        np.testing.assert_allclose(gx, [4.0, 4.0])
        np.testing.assert_allclose(gs, 12.0)
    assert len(g.versions) == 2


def test_specialized_source_of_the_mlp_matches_golden_file():
    g = ad.value_and_grad(m.mlp, wrt=("W1", "b1", "W2", "b2"))
    args = _mlp_args(8)
    g(*args), g(*args)
    source = ad.source(g)
    assert "Specialized for" in source
    assert "unbroadcast" not in source and "broadcast_to" not in source
    generic = ad.source(g, generic=True)  # what the first call ran, for any shapes
    assert "unbroadcast" in generic and "Specialized for" not in generic
    path = GOLDEN / "mlp_value_and_grad_specialized.py"
    if os.environ.get("ADCOMPILER_UPDATE_GOLDEN") == "1":
        path.write_text(normalized(source))
    assert normalized(source) == path.read_text()


def test_specialized_source_of_the_lstm_matches_golden_file():
    """The loop forms: rows of one array per saved value (`out=` the row), `h` in T + 1
    rows, gate adjoints joined into their row, weight gradients as one product after
    the loop."""
    from benchmarks.workloads import lstm

    g = ad.value_and_grad(lstm.primal, wrt=lstm.WRT)
    inputs = lstm.make_inputs("small")
    g(**inputs), g(**inputs)
    source = ad.source(g)
    for form in ("out=i_saved[t]", "h_saved = np.empty((T + 1, 1, 8))", "np.concatenate(",
                 "Wh_bar = np.reshape(h_saved[:T], (20, 8)).T @ gates_bar_rows"):  # fmt: skip
        assert form in source, (form, source)
    path = GOLDEN / "lstm_value_and_grad_specialized.py"
    if os.environ.get("ADCOMPILER_UPDATE_GOLDEN") == "1":
        path.write_text(normalized(source))
    assert normalized(source) == path.read_text()


def _mlp_args(batch, seed=0):
    import inspect

    rng = np.random.default_rng(seed)
    names = list(inspect.signature(m.mlp).parameters)
    shapes = {"W1": (5, 4), "b1": (4,), "W2": (4, 3), "b2": (3,), "x": (batch, 5)}
    args = []
    for n in names:
        if n in shapes:
            args.append(rng.standard_normal(shapes[n]))
        elif n == "y":
            args.append(np.eye(3)[rng.integers(0, 3, size=batch)])
        else:
            raise AssertionError(n)
    return args


@pytest.mark.parametrize("workload", ["logistic", "mlp", "gmm", "lstm"])
def test_benchmark_models_lose_their_shape_work(workload):
    """After specialization no `unbroadcast` of equal shapes and no saved shape is left."""
    import importlib

    w = importlib.import_module(f"benchmarks.workloads.{workload}")
    g = ad.value_and_grad(w.primal, wrt=w.WRT)
    inputs = w.make_inputs("small")
    g(**inputs), g(**inputs)
    source = ad.source(g)
    assert "unbroadcast(" not in source, source
    assert "_shape[" not in source and "_shape = [None]" not in source, source
    value, grads = g(**inputs)
    expected_value, expected = w.value_and_grad(**inputs)
    np.testing.assert_allclose(value, expected_value, rtol=1e-10)
    for a, b in zip(grads, expected):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


# ---------------------------------------------------------------------------
# Forward mode: jvp, and hvp (forward over reverse)
# ---------------------------------------------------------------------------


def check_specialized_forward(kind, fn, args, wrt):
    from tests.test_forward import directions

    wrt = tuple(wrt) if isinstance(wrt, (tuple, list)) else (wrt,)
    vs = directions(fn, args, wrt, seed=3)
    single = len(wrt) == 1
    tangent = vs[0] if single else tuple(vs)
    g = getattr(ad, kind)(fn, wrt=wrt[0] if single else wrt)
    try:
        generic = g(*copy.deepcopy(args), copy.deepcopy(tangent))
    except (NotImplementedError, ad.UnsupportedSyntaxError, TypeError, ValueError) as err:
        pytest.skip(f"{kind} does not take this case: {type(err).__name__}")
    kept = copy.deepcopy(args)
    _same(g(*args, tangent), generic)
    _same(args, kept)
    if isinstance(g, Specializing):
        assert g.latest is not g.generic or not g.versions


@pytest.mark.parametrize("kind", ["jvp", "hvp"])
@pytest.mark.parametrize("case", CONTROL)
def test_specialized_forward_equals_generic_on_the_control_corpus(kind, case):
    from tests.test_forward import control_args

    check_specialized_forward(kind, case.fn, control_args(case), case.wrt)


@pytest.mark.parametrize("kind", ["jvp", "hvp"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_specialized_forward_equals_generic_on_the_models(kind, name):
    fn, wrt, _ = MODELS[name]
    check_specialized_forward(kind, fn, model_args(name), wrt)


def scaled_tanh(z, w):
    return np.tanh(z * w)


def uses_a_helper(x, w):
    return np.sum(scaled_tanh(x, w) + scaled_tanh(w[None, :], x))


def test_helpers_are_inlined_in_the_specialized_version():
    """The generic gradient calls a generated function per helper; the specialized one
    is made from the version with helpers inlined, so the rewrites see through them."""
    g = ad.value_and_grad(uses_a_helper, wrt=("x", "w"))
    rng = np.random.default_rng(0)
    args = [rng.normal(size=(4, 3)), rng.normal(size=3)]
    generic = g(*args)
    assert "scaled_tanh_forward(" in ad.source(g)
    _same(g(*args), generic)
    assert "scaled_tanh_forward(" not in ad.source(g) and "Specialized for" in ad.source(g)


# ---------------------------------------------------------------------------
# Loops: sums over the iterations after the loop, tapes as one array
# ---------------------------------------------------------------------------


def _rnn(W, U, b, xs):
    T = xs.shape[0]
    h = np.zeros((xs.shape[1], U.shape[0]))
    total = 0.0
    for t in range(T):
        h = np.tanh(xs[t] @ W + h @ U + b)
        total = total + np.sum(h * h)
    return total


def _rnn_args(T=6, B=4, D=3, H=5, seed=0):
    rng = np.random.default_rng(seed)
    return [0.4 * rng.standard_normal((D, H)), 0.4 * rng.standard_normal((H, H)),
            0.1 * rng.standard_normal(H), rng.standard_normal((T, B, D))]  # fmt: skip


def test_weight_sums_of_a_recurrent_loop_are_one_product_after_it():
    g = check_specialized(_rnn, _rnn_args(), ("W", "U", "b"))
    source = ad.source(g)
    backward = source[source.index("for t in reversed") :]
    loop = backward[: backward.index("\n    return")]
    after = [line for line in loop.splitlines() if line.startswith("    ") and
             not line.startswith("        ")]  # fmt: skip
    inside = [line for line in loop.splitlines() if line.startswith("        ")]
    assert not any(name in line for line in inside for name in ("W_bar", "U_bar", "b_bar")), source
    assert any(".T @ " in line and "W_bar" in line for line in after), source
    assert "np.empty((T, 4, 5))" in source, source  # the adjoints, one row per step
    # h before each step and h after it: one array of T + 1 rows, as by hand
    assert "h_saved = np.empty((T + 1, 4, 5))" in source, source
    assert "h_saved[0] = h" in source, source


def test_a_trip_count_from_an_int_argument_keeps_the_loop_sums_in_the_loop():
    def f(W, xs, n):
        h = np.zeros((xs.shape[1], W.shape[1]))
        for t in range(n):
            h = np.tanh(xs[t] @ W + h)
        return np.sum(h)

    rng = np.random.default_rng(0)
    W, xs = rng.standard_normal((3, 4)), rng.standard_normal((6, 2, 3))
    g = ad.value_and_grad(f, wrt="W")
    generic = _fresh_generic(f, "W")
    for n in (3, 3, 5, 1, 6):  # one signature: (array, array, int)
        _same(g(W, xs, n), generic(W, xs, n))


def test_a_saved_value_computed_in_the_buffer_of_a_carried_one():
    # c is carried and its tanh is saved: the tanh must not be computed in c's buffer
    def f(W, xs):
        c = np.zeros(W.shape[1])
        total = 0.0
        for t in range(xs.shape[0]):
            c = c * 0.5 + np.tanh(xs[t] @ W)
            h = np.tanh(c)
            total = total + np.sum(h * h * c)
        return total

    rng = np.random.default_rng(2)
    check_specialized(f, [rng.standard_normal((3, 4)), rng.standard_normal((5, 3))], "W")


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("workload", ["scalar_loop", "logistic", "mlp", "gmm", "lstm"])
def test_no_benchmark_gradient_makes_more_arrays_than_the_hand_written_one(workload, size):
    """Issue 4: counted per call by benchmarks/temporaries.py (every new array each
    expression makes), adcompiler's specialized gradient against the hand-written one."""
    from benchmarks import workloads
    from benchmarks.temporaries import measure

    hand, generated = measure(workloads.get(workload), size)
    assert generated.count <= hand.count, (hand.sites, generated.sites)


def _gates(z):
    H = z.shape[1] // 4
    i = np.tanh(z[:, :H])
    f = np.exp(z[:, H : 2 * H])
    o = z[:, 2 * H : 3 * H] ** 2
    return np.sum(i * f + o * np.sin(z[:, 3 * H :]))


def _gappy(z):  # column 2 is not read: its adjoint is zero
    return np.sum(np.tanh(z[:, :2]) + z[:, 3:5] ** 2)


def _overlapping(z):
    return np.sum(np.tanh(z[:, :3]) * z[:, 1:4])


def _rows(z):
    return np.sum(np.exp(z[:2]) * z[2:4] + z[4:] ** 2)


@pytest.mark.parametrize("fn, joined", [(_gates, True), (_gappy, False),
                                        (_overlapping, False), (_rows, True)])  # fmt: skip
def test_adjoints_of_slices_that_tile_an_array_are_joined(fn, joined):
    z = np.random.default_rng(4).standard_normal((4, 8) if fn is not _rows else (6, 3))
    g = check_specialized(fn, [z], "z")
    source = ad.source(g)
    assert ("np.concatenate(" in source) == joined, source
    assert ("unindex(" in source) == (not joined), source


def _softplus_mean(w, X):
    return np.mean(np.log1p(np.exp(-(X @ w))))


def test_constants_are_folded_and_take_the_sign_of_a_negation():
    """The mean's `1.0 / n` is a constant once `n` is known, and the negation of
    `exp(-m)`'s adjoint moves into it: no `1.0 / 8` and no pass of `*= -1` over the data."""
    rng = np.random.default_rng(5)
    g = check_specialized(_softplus_mean, [rng.standard_normal(3), rng.standard_normal((8, 3))],
                          "w")  # fmt: skip
    source = ad.source(g)
    assert "-0.125" in source and "1.0 / 8" not in source, source
    adjoint = source.split("# adjoint of")[1].split("\n", 1)[1]  # after its comment
    assert "*= -1" not in adjoint and "-" not in adjoint.replace("-0.125", ""), source


def _new_axis(x, w):
    return np.sum(np.tanh(x[:, None, :]) * w)


def test_the_adjoint_of_a_new_axis_is_a_reshape():
    rng = np.random.default_rng(6)
    g = check_specialized(_new_axis, [rng.standard_normal((4, 3)), rng.standard_normal((4, 2, 3))],
                          "x")  # fmt: skip
    source = ad.source(g)
    assert "np.reshape(" in source and "unindex(" not in source, source


def _l2(w, lam):
    return lam * np.sum(w * w)


def test_a_scalar_and_a_constant_are_multiplied_before_the_array():
    g = check_specialized(_l2, [np.random.default_rng(7).standard_normal(5), 0.3], "w")
    source = ad.source(g)
    assert "w_bar = w * (lam * 2)" in source, source
