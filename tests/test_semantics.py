"""Python's semantics for globals, closure cells and decorators (issue 12, items 7 and 8).

A gradient sees a module global or a closure cell as the function does when it is
called: a value folded into the generated code (a number, an axis, a trip count, a
helper) is a fact checked on each call, and the code is generated again when it no
longer holds (adcompiler.depends). The object `ad.grad(f)` returns stays the same.
"""

import functools
import importlib
import sys
import types

import numpy as np
import pytest

import adcompiler as ad

SCALE = 2.0
COUNT = 3
AXIS = 0
CFG = {"k": 3.0, "p": 2}
WEIGHTS = np.array([1.0, 2.0, 3.0])
F32 = np.float32(2.0)
OPTIONS = types.SimpleNamespace(k=1.5)
LAYERS = [np.array([1.0, 2.0]), np.array([0.5, -1.0])]


def finite_differences(f, args, i=0, eps=1e-6):
    x = np.asarray(args[i], dtype=float)
    out = np.zeros_like(x)
    for k in range(x.size):
        e = np.zeros_like(x)
        e.flat[k] = eps
        up = list(args)
        down = list(args)
        up[i], down[i] = x + e, x - e
        out.flat[k] = (f(*up) - f(*down)) / (2 * eps)
    return out


def check(f, *args, wrt=0):
    """The gradient, the forward-mode directional derivative and the hvp agree with
    finite differences of `f` as it is now; the first twice (generic, specialized)."""
    expected = finite_differences(f, args, wrt)
    g = ad.grad(f, wrt=wrt)
    for _ in range(2):
        np.testing.assert_allclose(g(*args), expected, rtol=1e-6, atol=1e-8)
    v = np.linspace(0.5, 1.5, np.size(args[wrt])).reshape(np.shape(args[wrt]))
    _, tangent = ad.jvp(f, wrt=wrt)(*args, v)
    np.testing.assert_allclose(tangent, np.sum(expected * v), rtol=1e-6, atol=1e-8)
    return g


X = np.array([0.5, -1.0, 2.0])


# -- module globals ---------------------------------------------------------


def scaled(x):
    return np.sum(np.sin(x) * SCALE)


def test_a_changed_global_float_is_seen(monkeypatch):
    g = check(scaled, X)
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 5.0)
    assert ad.grad(scaled, wrt=0) is g  # the same object, regenerated
    check(scaled, X)
    np.testing.assert_allclose(g(X), 5.0 * np.cos(X))


def test_an_equal_global_is_not_regenerated(monkeypatch):
    g = ad.grad(scaled)
    g(X), g(X)
    version = g.generic
    monkeypatch.setattr(sys.modules[__name__], "SCALE", float("2.0"))  # equal, not the same
    g(X)
    assert g.generic is version


def repeated(x):
    total = 0.0
    for i in range(COUNT):
        total = total + np.sum(x ** (i + 1))
    return total


def test_a_changed_trip_count_is_seen(monkeypatch):
    check(repeated, X)
    monkeypatch.setattr(sys.modules[__name__], "COUNT", 5)
    check(repeated, X)


def configured(x):
    return np.sum(np.tanh(x) * CFG["k"]) ** CFG["p"]


def test_a_changed_dict_entry_is_seen(monkeypatch):
    check(configured, X)
    monkeypatch.setitem(CFG, "k", -0.5)
    check(configured, X)
    monkeypatch.setitem(CFG, "p", 3)
    check(configured, X)


def along(x):
    return np.sum(np.sum(x**2, axis=AXIS) * np.arange(1.0, 1.0 + x.shape[1 - AXIS]))


def test_a_changed_axis_is_seen(monkeypatch):
    x = np.arange(6.0).reshape(2, 3) / 5.0
    check(along, x)
    monkeypatch.setattr(sys.modules[__name__], "AXIS", 1)
    check(along, x)


def weighted(x):
    return np.sum(np.sin(x) * WEIGHTS)


def test_a_global_array_replaced_or_written_is_seen(monkeypatch):
    check(weighted, X)
    monkeypatch.setattr(sys.modules[__name__], "WEIGHTS", np.array([-1.0, 0.5, 4.0]))
    check(weighted, X)
    WEIGHTS[1] = 10.0  # written in place: the generated code reads the array
    check(weighted, X)
    monkeypatch.setattr(sys.modules[__name__], "WEIGHTS", np.array([[1.0], [2.0]]))
    check(weighted, X)  # another shape: broadcast now (the specialized code too)


def single(x):
    return np.sum(x * F32) * F32


def test_a_changed_numpy_scalar_global_is_seen(monkeypatch):
    check(single, X)
    monkeypatch.setattr(sys.modules[__name__], "F32", np.float32(-3.0))
    check(single, X)


def with_options(x):
    return np.sum(x**2) * OPTIONS.k


def test_a_changed_attribute_of_a_global_object_is_seen(monkeypatch):
    check(with_options, X)
    monkeypatch.setattr(OPTIONS, "k", -4.0)
    check(with_options, X)


def layered(x):
    for w in LAYERS:
        x = np.tanh(x * w)
    return np.sum(x)


def test_a_global_list_changed_in_place_is_seen():
    x = np.array([0.3, -0.2])
    check(layered, x)
    LAYERS.append(np.array([2.0, 2.0]))
    try:
        check(layered, x)
    finally:
        LAYERS.pop()
    check(layered, x)


def _scale_twice(x):
    return x * SCALE


def _shifted(x):
    return _scale_twice(x) + np.sin(x)


def two_levels(x):
    return np.sum(np.tanh(_shifted(x)))


def test_a_global_read_by_a_helper_two_levels_down_is_seen(monkeypatch):
    check(two_levels, X)
    h = ad.hvp(two_levels)
    before = h(X, np.ones(3))
    monkeypatch.setattr(sys.modules[__name__], "SCALE", -1.5)
    check(two_levels, X)
    assert not np.allclose(h(X, np.ones(3)), before)
    np.testing.assert_allclose(
        h(X, np.ones(3)), finite_differences(lambda x: ad.grad(two_levels)(x) @ np.ones(3), [X]),
        rtol=1e-5,
    )


def _power(x, n):
    if n == 0:
        return x * SCALE
    return np.sin(_power(x, n - 1)) + x


def recursive(x, n):
    return np.sum(_power(x, n))


def test_a_global_read_by_a_recursive_helper_is_seen(monkeypatch):
    check(recursive, X, 3)
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 0.25)
    check(recursive, X, 3)


def test_transforms_of_a_gradient_see_a_changed_global(monkeypatch):
    inner = ad.grad(scaled)
    over = ad.jvp(inner)  # forward over reverse, from the gradient's IR
    hessian = ad.hessian(scaled)
    v = np.ones(3)
    np.testing.assert_allclose(over(X, v)[1], -2.0 * np.sin(X))
    np.testing.assert_allclose(np.diag(hessian(X)), -2.0 * np.sin(X))
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 3.0)
    np.testing.assert_allclose(over(X, v)[1], -3.0 * np.sin(X))  # before the inner: rebuilt
    np.testing.assert_allclose(np.diag(hessian(X)), -3.0 * np.sin(X))
    np.testing.assert_allclose(inner(X), 3.0 * np.cos(X))


# -- closure cells ----------------------------------------------------------


def make_scaled(c):
    def scaled_by(x):
        return np.sum(np.sin(x) * c)

    return scaled_by


def test_two_closures_of_one_function_have_their_own_gradients():
    two, five = make_scaled(2.0), make_scaled(5.0)
    np.testing.assert_allclose(ad.grad(two)(X), 2.0 * np.cos(X))
    np.testing.assert_allclose(ad.grad(five)(X), 5.0 * np.cos(X))
    check(two, X), check(five, X)


def make_counter():
    c = 1.0

    def counted(x):
        return np.sum(x**2) * c

    def set_to(v):
        nonlocal c
        c = v

    return counted, set_to


def test_a_cell_rebound_with_nonlocal_is_seen():
    counted, set_to = make_counter()
    g = check(counted, X)
    set_to(-2.0)
    check(counted, X)
    np.testing.assert_allclose(g(X), -4.0 * X)


# -- decorators -------------------------------------------------------------


def doubled(fn):
    @functools.wraps(fn)
    def wrapper(x):
        return 2.0 * fn(x) + SCALE

    return wrapper


@doubled
def squares(x):
    return np.sum(x**2)


def test_a_decorated_function_is_differentiated_with_its_decorator():
    assert squares.__wrapped__ is not squares
    check(squares, X)
    np.testing.assert_allclose(ad.grad(squares)(X), 4.0 * X)
    np.testing.assert_allclose(ad.grad(squares.__wrapped__)(X), 2.0 * X)


def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


@logged
def logged_squares(x):
    return np.sum(x**2)


def test_a_wrapper_that_cannot_be_read_is_refused_naming_the_decorator():
    with pytest.raises(ad.UnsupportedSyntaxError) as info:
        ad.grad(logged_squares)(X)
    message = str(info.value)
    assert "decorator `logged`" in message and "def wrapper(*args, **kwargs)" in message
    assert "ad.grad(logged_squares.__wrapped__)" in message
    assert __file__ in message


# -- helpers of one name ----------------------------------------------------

HELPER = """
import numpy as np

def step(x, w, n):
    if n == 0:
        return x * w
    return {body}

def loss(x, w, n):
    return np.sum(step(x, w, n) ** 2)

def inactive(x, w, n):
    return np.sum(x * step(w, w, n))
"""


def _module(tmp_path, name, body):
    (tmp_path / f"{name}.py").write_text(HELPER.format(body=body))
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))


def test_two_helpers_of_one_name_in_two_modules(tmp_path):
    a = _module(tmp_path, "semantics_helpers_a", "np.sin(step(x, w, n - 1)) + x")
    b = _module(tmp_path, "semantics_helpers_b", "np.cos(step(x, w, n - 1)) * w")
    w = np.array([0.7, -0.3, 1.1])
    for m in (a, b, a, b):
        check(m.loss, X, w, 3)
        check(m.loss, X, w, 3, wrt=1)
        check(m.inactive, X, w, 2)
        v = np.ones(3)
        hv = ad.hvp(m.loss)(X, w, 3, v)
        expected = finite_differences(lambda x, m=m, v=v: ad.grad(m.loss)(x, w, 3) @ v, [X])
        np.testing.assert_allclose(hv, expected, rtol=1e-5, atol=1e-7)
    from adcompiler import calls

    names = {name for name, fn in calls.GENERATED.items() if fn in (a.step, b.step)}
    assert len(names) <= 2 and all(calls.GENERATED[n] in (a.step, b.step) for n in names)


MATRIX = np.array([[1.0, 2.0], [3.0, -1.0]])


def rows(x):
    return np.sum(np.tanh(x * MATRIX[0] + x * MATRIX.T[1])) * MATRIX.shape[0]


def test_views_of_a_global_array_do_not_regenerate_on_every_call():
    x = np.array([0.2, -0.4])
    g = check(rows, x)
    version = g.generic
    g(x)
    assert g.generic is version
    MATRIX[0, 0] = 5.0  # a write into the array: seen through the views, no regeneration
    try:
        check(rows, x)
        assert g.generic is version
    finally:
        MATRIX[0, 0] = 1.0


def test_without_specialization_a_changed_global_is_seen_too(monkeypatch):
    monkeypatch.setenv("ADCOMPILER_SPECIALIZE", "0")

    def cubed(x):
        return np.sum(x**3) * SCALE

    g = check(cubed, X)
    assert isinstance(g, ad.api.GuardedFunction)
    monkeypatch.setattr(sys.modules[__name__], "SCALE", -7.0)
    check(cubed, X)
    np.testing.assert_allclose(g(X), -21.0 * X**2)


def test_the_check_is_cheap():
    import timeit

    g = ad.grad(scaled)
    g(X), g(X)
    per_call = min(timeit.repeat(g._holds, number=2000, repeat=5)) / 2000
    assert per_call < 5e-6  # (about 50 ns for the one global `np` on an idle machine)


def calls_logged(x):
    return logged_squares(x) * 2.0


def test_a_decorated_helper_that_cannot_be_read_is_refused_naming_the_decorator():
    with pytest.raises(ad.UnsupportedSyntaxError, match="decorator `logged`"):
        ad.grad(calls_logged)(X)


@doubled
def doubled_helper(x):
    return np.sum(np.sin(x))


def calls_doubled(x):
    return doubled_helper(x) * x[0]


def test_a_decorated_helper_is_inlined_with_its_decorator():
    check(calls_doubled, X)


NESTED = {"layers": [np.array([1.0, -1.0, 0.5]), np.array([0.5, 2.0, 1.0])], "k": {"a": 2.0}}


def nested(x):
    for w in NESTED["layers"]:
        x = np.tanh(x * w)
    return np.sum(x) * NESTED["k"]["a"]


def test_nested_global_containers_changed_in_place_are_seen():
    check(nested, X)
    NESTED["k"]["a"] = -1.0
    NESTED["layers"].append(np.array([3.0, 3.0, 3.0]))
    try:
        check(nested, X)
    finally:
        NESTED["k"]["a"] = 2.0
        NESTED["layers"].pop()
    check(nested, X)


GAPS = np.array([np.nan, 2.0])
CYCLE: list = [np.array([1.0, 2.0, 0.5])]
CYCLE.append(CYCLE)


def with_gaps(x):
    return np.sum(np.where(np.isnan(GAPS[0]), x**2, x)) * CYCLE[0][2]


def test_a_nan_read_from_a_global_does_not_regenerate_on_every_call():
    g = check(with_gaps, X)
    version = g.generic
    g(X)
    assert g._holds() and g.generic is version
