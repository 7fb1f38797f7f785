"""Specialized versions are guarded and checked (issue 12, item 3).

A specialized version (adcompiler/specialize/) is used only when every fact it relied
on holds for the arguments of the call, and it returns what the generic version
returns. Each test here calls a gradient several times, so that the later calls run
the specialized version, and compares every call with central finite differences and
with a generic version made with specialization off.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

import adcompiler as ad
from adcompiler.check import numerical_grad
from adcompiler.specialize import Specializing


def _generic(fn, wrt):
    """`ad.grad(fn, wrt)` with specialization off (on a copy of `fn`: the caches are per
    function object)."""
    import types

    copied = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__,
                                fn.__closure__)  # fmt: skip
    os.environ["ADCOMPILER_SPECIALIZE"] = "0"
    try:
        return ad.grad(copied, wrt=wrt)
    finally:
        del os.environ["ADCOMPILER_SPECIALIZE"]


def _names(fn):
    import inspect

    return list(inspect.signature(fn).parameters)


def check_calls(fn, calls, wrt=None, rtol=1e-6, atol=1e-8):
    """Call `ad.grad(fn, wrt)` on each argument list of `calls`, in order, and compare
    each result with finite differences and with the generic version (exactly: same
    type, shape, dtype)."""
    g = ad.grad(fn, wrt=wrt)
    generic = _generic(fn, wrt)
    single = not isinstance(wrt, (tuple, list))
    items = [0 if wrt is None else wrt] if single else list(wrt)
    indices = [_names(fn).index(w) if isinstance(w, str) else w for w in items]
    for args in calls:
        kept = copy.deepcopy(args)
        got = g(*args)
        for a, b in zip(args, kept):  # the caller's arrays are never written
            np.testing.assert_array_equal(a, b)
        expected = generic(*copy.deepcopy(args))
        got_list = [got] if single else list(got)
        expected_list = [expected] if single else list(expected)
        for i, a, b in zip(indices, got_list, expected_list):
            assert type(a) is type(b), (type(a), type(b))
            assert np.shape(a) == np.shape(b)
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
            numeric = numerical_grad(fn, list(args), i)
            np.testing.assert_allclose(np.asarray(a, dtype=float), numeric, rtol=rtol,
                                       atol=atol)  # fmt: skip
    return g


# -- 2: a broadcast read on both sides of one sum -----------------------------------


def test_a_broadcast_added_to_itself_keeps_its_shape():
    def f(x):
        return np.sum(x + x)

    x = np.arange(6.0).reshape(2, 3)
    g = check_calls(f, [(x,)] * 3)
    assert isinstance(g, Specializing) and g.latest is not g.generic


def test_a_broadcast_multiplied_by_itself_keeps_its_shape():
    def f(x, y):
        return np.sum(x * x) + np.sum(y)

    x, y = np.arange(6.0).reshape(2, 3), np.ones(3)
    check_calls(f, [(x, y)] * 3, wrt=("x", "y"))


# -- 3: a value made before a loop, read in every iteration ---------------------------


def _helper(a):
    acc = a * 0.0
    for i in range(3):
        acc = acc + np.sin(a * (i + 1))
    return acc


def test_a_value_read_in_every_iteration_of_a_helper_loop_is_not_written():
    def f(x):
        return np.sum(_helper(np.sum(x, axis=1)))

    x = np.random.default_rng(0).standard_normal((3, 4))
    check_calls(f, [(x,), (x,), (x,), (x * 0.5,)])


def test_a_value_read_in_every_iteration_of_a_loop_is_not_written():
    def f(x):
        a = np.sum(x, axis=1)
        acc = a * 0.0
        for i in range(4):
            acc = acc + np.tanh(a * (i + 1)) * a
        return np.sum(acc)

    x = np.random.default_rng(1).standard_normal((3, 4)) * 0.3
    check_calls(f, [(x,)] * 3)


# -- 4: a loop that broke at one step on the observed call -----------------------------


def _last_row(x, w):
    last = w
    for i in range(x.shape[0]):
        row = x[i]
        if np.sum(row) > 1.0:
            break
        last = row
    return np.sum(last * last)


def _last_row_later(x, w):
    last = w
    for i in range(x.shape[0]):
        row = x[i] * 2.0
        if np.sum(row) > 1.0:
            break
        last = row + last
    return np.sum(last * last)


_BREAKS = {
    "at step 0": np.ones((3, 2)),
    "at step 1": np.array([[0.1, 0.1], [1.0, 1.0], [0.1, 0.1]]),
    "at step 2": np.array([[0.1, 0.1], [0.1, 0.2], [1.0, 1.0]]),
    "never": np.full((3, 2), 0.1),
}


@pytest.mark.parametrize("fn", [_last_row, _last_row_later])
@pytest.mark.parametrize("wrt", ["x", "w", ("x", "w")])
@pytest.mark.parametrize("first", list(_BREAKS))
def test_a_version_made_when_a_loop_broke_early_is_right_where_it_does_not(fn, wrt, first):
    w = np.array([0.5, 0.25])
    later = [(_BREAKS[k], w) for k in _BREAKS if k != first]
    check_calls(fn, [(_BREAKS[first], w)] * 2 + later, wrt=wrt)


def test_a_while_loop_that_ran_once_when_observed():
    def f(x):
        y = x
        n = 0
        while np.sum(y) < 4.0:
            y = y * 1.5 + n
            n = n + 1
        return np.sum(y * y)

    x1, x2 = np.array([1.0, 1.5]), np.array([0.2, 0.1])
    check_calls(f, [(x1,), (x1,), (x2,), (x1,)])


# -- 6 and the signature: what a version is keyed on ---------------------------------


def test_memmap_slices_of_another_length_get_their_own_version(tmp_path):
    data = np.memmap(tmp_path / "x.dat", dtype=np.float64, mode="w+", shape=(16, 3))
    data[:] = np.arange(48.0).reshape(16, 3) / 48.0

    def f(x):
        return np.mean(x * x)

    g = ad.grad(f)
    for batch in (4, 4, 8, 8, 4):
        x = data[:batch]
        np.testing.assert_allclose(g(x), 2 * np.asarray(x) / x.size, rtol=1e-12)
    assert len(g.versions) == 2


def test_python_float_numpy_scalar_and_0d_array_are_different_signatures():
    from adcompiler.specialize import signature

    keys = {signature((s,), {}) for s in (2.0, np.float64(2.0), np.array(2.0), 2)}
    assert len(keys) == 4

    def f(x, s):
        return np.sum(x * s) * s

    x = np.array([1.0, 2.0])
    calls = [(x, 2.0), (x, 2.0), (x, np.array(2.0)), (x, np.float64(2.0)), (x, 2.0)]
    check_calls(f, calls, wrt=("x", "s"))


def test_the_leaves_of_containers_are_in_the_signature():
    from adcompiler.specialize import signature

    a, b = np.ones(3), np.ones(4)
    assert signature(({"w": a},), {}) != signature(({"w": b},), {})
    assert signature(([a, a],), {}) != signature(([a, b],), {})
    assert signature(((a,),), {}) != signature(((b,),), {})
    assert signature(({"w": a, "b": b},), {}) != signature(({"b": b, "w": a},), {})


def test_a_dict_of_parameters_with_other_leaf_shapes():
    def f(p, x):
        return np.mean((x @ p["W"] + p["b"]) ** 2)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    g = ad.grad(f, wrt="p")
    for k in (2, 2, 5, 5, 2):
        p = {"W": rng.standard_normal((3, k)), "b": rng.standard_normal(k)}
        e = 2 * (x @ p["W"] + p["b"]) / (4 * k)
        got = g(p, x)
        np.testing.assert_allclose(got["b"], e.sum(0), rtol=1e-12)
        np.testing.assert_allclose(got["W"], x.T @ e, rtol=1e-12)


def test_memmap_slices_of_another_length_do_not_reuse_a_loop_version(tmp_path):
    """The crash of issue 12: a version made for 4 rows of a memmap reshaped the saved
    rows of 2 as 4 (`np.reshape` of a tape made for another length)."""
    data = np.memmap(tmp_path / "xs.dat", dtype=np.float64, mode="w+", shape=(8, 2, 3))
    data[:] = np.random.default_rng(0).standard_normal((8, 2, 3))

    def rnn(W, xs):
        h = np.zeros((2, W.shape[0]))
        for t in range(xs.shape[0]):
            h = np.tanh(h @ W + xs[t])
        return np.sum(h)

    W = np.full((3, 3), 0.1)
    check_calls(rnn, [(W, data[:4]), (W, data[:4]), (W, data[:2]), (W, data[:2]),
                      (W, data[8:])])  # fmt: skip


# -- folded constants -----------------------------------------------------------------


def test_a_global_container_is_not_a_constant_of_the_version():
    from adcompiler.specialize.facts import CONST, FREE, SHAPED, _const_status

    assert _const_status((1, 2.0, None, "a")) == CONST
    assert _const_status(np.ones(3)) == SHAPED  # its values may be written in place
    assert _const_status({"n": 3}) == FREE  # what is read from it may change
    assert _const_status([1, 2]) == FREE
    assert _const_status((1, [2])) == FREE


# -- ADCOMPILER_CHECK=1 ----------------------------------------------------------------


def _sabotage(monkeypatch, rewrite_function, change):
    """Make the rewrite `rewrite_function` (a name in adcompiler.specialize.rewrite) also
    apply `change` to the first node that it accepts."""
    from adcompiler.specialize import rewrite
    from adcompiler.ssa import walk

    original = getattr(rewrite, rewrite_function)

    def broken(fn, known, *rest):
        result = original(fn, known, *rest)
        for node in walk(fn.body):
            if change(node, fn):
                break
        return result

    monkeypatch.setattr(rewrite, rewrite_function, broken)


def _loss():
    """A new function object each time: the compiled versions are cached per function."""

    def loss(x, w):
        return np.sum(np.tanh(x * w) * x)

    return loss


def test_a_wrong_rewrite_is_named(monkeypatch):
    from adcompiler.errors import SpecializationMismatchError
    from adcompiler.ops.core import lookup

    def to_add(node, fn):
        if node.op.name == "multiply" and node.output.role != "primal":
            node.op = lookup(np.add)
            return True
        return False

    _sabotage(monkeypatch, "join_slice_adjoints", to_add)
    monkeypatch.setenv("ADCOMPILER_CHECK", "1")
    g = ad.grad(_loss(), wrt="x")
    x, w = np.array([[0.5, -1.0, 2.0], [1.0, 0.25, -0.5]]), np.array([1.0, 2.0, 3.0])
    g(x, w)
    with pytest.raises(SpecializationMismatchError) as info:
        g(x, w)
    message = str(info.value)
    assert "loss_grad" in message and "x: (2, 3) float64, w: (3,) float64" in message
    assert "result is" in message and "'slices'" in message
    assert isinstance(info.value, AssertionError)


def test_a_version_that_raises_where_the_generic_one_does_not(monkeypatch):
    from adcompiler.errors import SpecializationMismatchError
    from adcompiler.ops.core import lookup

    def to_matmul(node, fn):
        if node.op.name == "multiply" and node.output.role != "primal":
            node.op = lookup(np.matmul)  # (2, 3) @ (2, 3): a ValueError
            return True
        return False

    _sabotage(monkeypatch, "push_sums", to_matmul)
    monkeypatch.setenv("ADCOMPILER_CHECK", "1")
    g = ad.grad(_loss(), wrt="x")
    x, w = np.ones((2, 3)), np.array([1.0, 2.0, 3.0])
    g(x, w)
    with pytest.raises(SpecializationMismatchError, match="raises ValueError") as info:
        g(x, w)
    assert "'sums'" in str(info.value)


def test_a_version_that_writes_into_an_argument():
    from adcompiler.errors import SpecializationMismatchError
    from adcompiler.specialize import check

    class Spec:  # what check.checked_call needs of a Specializing
        __name__ = "f_grad"
        generic = staticmethod(lambda x: 2 * x)
        recipes: dict = {}

        def __init__(self):
            self.unchecked = {"key": check.CALLS}

    def version(x):  # right, but it uses the caller's array as its buffer
        x *= 2
        return x.copy()

    x = np.arange(3.0)
    with pytest.raises(SpecializationMismatchError, match=r"writes into the caller's "
                       r"arguments: argument 0 is 4.0 at \[2\] \(of shape \(3,\)\), it was 2.0"):
        check.checked_call(Spec(), "key", version, (x,), {})
    np.testing.assert_array_equal(x, [0.0, 2.0, 4.0])  # (the version did write)

    class Careless(Spec):
        generic = staticmethod(version)  # the generic version must not write either

    with pytest.raises(SpecializationMismatchError, match="the generic version of f_grad: "
                       "it writes into the caller's arguments: argument 0"):  # fmt: skip
        check.checked_call(Careless(), "key", lambda x: 2 * x, (np.arange(3.0),), {})
    np.testing.assert_array_equal(check._difference(np.zeros(2), np.zeros(2)), None)
    assert check._difference(np.float64(1.0), np.array(1.0)) is None  # one type, for NumPy
    assert "dtype float32" in check._difference(np.zeros(2, np.float32), np.zeros(2))
    assert check._difference(np.array([np.nan, 1.0]), np.array([np.nan, 1.0])) is None
    assert "is a float" in check._difference(1.0, np.zeros(1))


def test_the_check_stops_after_the_first_calls(monkeypatch):
    from adcompiler.specialize import check

    monkeypatch.setenv("ADCOMPILER_CHECK", "1")
    runs = []
    original = check._generic
    monkeypatch.setattr(check, "_generic", lambda spec, o: runs.append(1) or original(spec, o))

    def f(x):
        return np.sum(np.sin(x) * x)

    g = ad.grad(f)
    for _ in range(2 + check.CALLS + 3):
        g(np.arange(3.0))
    assert len(runs) == check.CALLS and not g.unchecked


def test_the_check_does_not_print_twice(monkeypatch, capsys):
    monkeypatch.setenv("ADCOMPILER_CHECK", "1")

    def f(x):
        print("once")
        return np.sum(x * x)

    g = ad.grad(f)
    for _ in range(3):
        g(np.arange(3.0))
    assert capsys.readouterr().out.count("once") == 3


def test_a_boolean_scalar_index_is_a_mask():
    """`x[flag]` has a new axis of length 1 or 0, as `flag` is True or False: its shape
    depends on the data."""
    from adcompiler.specialize.facts import FREE, observe, statuses

    def f(x, w):
        flag = np.sum(x) > 0
        return np.sum(x[flag] * w)

    x, w = np.array([[1.0, 2.0]]), np.array([[1.0, 3.0]])
    g = check_calls(f, [(x, w), (x, w), (-x, w), (x, w)], wrt=("x", "w"))
    fn = g.source_ir()
    _, seen = observe(fn, lambda probed: g._build(probed, None, {"probe": ad.specialize.probe})(
        x, w))  # fmt: skip
    status = statuses(fn, seen)
    from adcompiler.ssa import walk

    masked = [n for n in walk(fn.body) if n.op.name == "getitem" and len(n.inputs) == 2]
    assert masked and all(status[n.output.id] == FREE for n in masked)


# -- the cases above through tests/test_specialize.py's check (value_and_grad, generic
#    against specialized, on the arguments and on other data of the same shapes) ------


def _sum_twice(x):
    return np.sum(x + x)


def _helper_loop(x):
    return np.sum(_helper(np.sum(x, axis=1)))


def _break_late(x, w):
    return _last_row_later(x, w)


_ISSUE_CASES = {
    "broadcast read twice": (_sum_twice, [np.arange(6.0).reshape(2, 3)], "x"),
    "helper loop in place": (_helper_loop, [np.linspace(-1, 1, 12).reshape(3, 4)], "x"),
    "break at step 0": (_last_row, [_BREAKS["at step 0"], np.array([0.5, 0.25])], ("x", "w")),
    "break never": (_last_row, [_BREAKS["never"], np.array([0.5, 0.25])], ("x", "w")),
    "break later": (_break_late, [_BREAKS["at step 1"], np.array([0.5, 0.25])], ("x", "w")),
}


@pytest.mark.parametrize("name", list(_ISSUE_CASES))
def test_specialized_equals_generic_on_the_issue_cases(name):
    from tests.test_specialize import check_specialized

    fn, args, wrt = _ISSUE_CASES[name]
    check_specialized(fn, args, wrt)


@pytest.mark.parametrize("fn", [_last_row, _last_row_later])
@pytest.mark.parametrize("first", list(_BREAKS))
def test_forward_mode_agrees_with_reverse_where_the_loop_breaks_elsewhere(fn, first):
    """jvp (forward mode, specialized from its second call) against the gradient (reverse
    mode, specialized too): J·v is the gradient's dot product with v."""
    jvp, grad = ad.jvp(fn, wrt=("x", "w")), ad.grad(fn, wrt=("x", "w"))
    w = np.array([0.5, 0.25])
    rng = np.random.default_rng(3)
    order = [first, first] + [k for k in _BREAKS if k != first]
    for key in order:
        x = _BREAKS[key]
        v = (rng.standard_normal(x.shape), rng.standard_normal(w.shape))
        value, tangent = jvp(x, w, v)
        gx, gw = grad(x, w)
        assert value == pytest.approx(fn(x, w), rel=1e-12)
        expected = float(np.sum(gx * v[0]) + np.sum(gw * v[1]))
        assert float(tangent) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_the_leaves_of_a_dict_of_parameters_are_specialized_on():
    def f(p, x):
        return np.mean((x @ p["W"] + p["b"]) ** 2)

    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3))
    g = ad.grad(f, wrt="p")
    p = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    g(p, x), g(p, x)
    source = ad.source(g)
    assert "Specialized for" in source and "unbroadcast" not in source


def test_a_list_of_arrays_and_a_tuple_of_ints_as_arguments():
    def f(x, ws, shape):
        h = np.reshape(x, shape)
        for w in ws:
            h = np.tanh(h @ w)
        return np.sum(h[: shape[0] - 1])

    rng = np.random.default_rng(5)
    x = rng.standard_normal(12)
    w3, w4, w2 = (rng.standard_normal((k, k)) * 0.5 for k in (3, 4, 2))
    calls = [(x, [w3, w3], (4, 3)), (x, [w3, w3], (4, 3)), (x, [w4], (3, 4)),
             (x, [w4], (3, 4)), (x, [w2, w2, w2], (6, 2)), (x, [w3, w3], (4, 3))]  # fmt: skip
    check_calls(f, calls, wrt="x")


def test_the_check_compares_arrays_of_a_subclass_by_shape_dtype_and_values():
    from adcompiler.specialize import check

    class Sub(np.ndarray):
        pass

    a = np.arange(3.0)
    assert check._difference(a.view(Sub), a) is None
    assert check._difference(np.array(2.0).view(Sub), np.float64(2.0)) is None
    assert "is" in check._difference(a.view(Sub), a + 1.0)
    assert "shape" in check._difference(a[:2].view(Sub), a)
