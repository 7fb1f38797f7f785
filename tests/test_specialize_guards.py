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
