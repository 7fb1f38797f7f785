"""Regression tests for issue 12 ("never silently wrong"): wrong gradients and crashes in
rules, transforms and codegen. Each test checks one case in every mode it applies to
(grad, value_and_grad, jvp, hvp, jacobian), on the first and on later (specialized) calls,
against float64 central finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import adcompiler as ad
from adcompiler.errors import UnsupportedSyntaxError

EPS = 1e-6
CALLS = 3  # the first call runs the generic version, later ones a specialized one


def _fd_grad(f, args, i, eps=EPS):
    """Central differences of sum(f(*args)) with respect to args[i]."""
    x = np.asarray(args[i], dtype=float)
    g = np.zeros(x.shape)
    for k in range(x.size):
        moved = []
        for sign in (1, -1):
            xk = x.copy()
            xk.flat[k] += sign * eps
            a = list(args)
            a[i] = xk if x.shape else float(xk)
            moved.append(np.sum(f(*a)))
        g.flat[k] = (moved[0] - moved[1]) / (2 * eps)
    return g


def check_all_modes(f, args, wrt=0, hvp=True, atol=1e-5):
    """Every mode of `f` against central differences, on CALLS calls each."""
    names = list(f.__code__.co_varnames[: f.__code__.co_argcount])
    i = wrt if isinstance(wrt, int) else names.index(wrt)
    want = _fd_grad(f, args, i)
    value = f(*args)
    v = np.random.default_rng(0).standard_normal(np.shape(args[i]))
    v = float(v) if np.shape(args[i]) == () else v
    for _ in range(CALLS):
        np.testing.assert_allclose(ad.grad(f, wrt=wrt)(*args), want, atol=atol, rtol=1e-5)
        val, g = ad.value_and_grad(f, wrt=wrt)(*args)
        np.testing.assert_allclose(val, value, rtol=1e-12)
        np.testing.assert_allclose(g, want, atol=atol, rtol=1e-5)
        val, t = ad.jvp(f, wrt=wrt)(*args, v)
        np.testing.assert_allclose(val, value, rtol=1e-12)
        np.testing.assert_allclose(t, np.sum(want * v), atol=atol, rtol=1e-5)
        for mode in ("reverse", "forward"):
            jac = ad.jacobian(f, wrt=wrt, mode=mode)(*args)
            np.testing.assert_allclose(jac, want, atol=atol, rtol=1e-5)
        if hvp:
            h = 1e-4
            plus, minus = list(args), list(args)
            plus[i], minus[i] = args[i] + h * v, args[i] - h * v
            grad = ad.grad(f, wrt=wrt)
            want_hv = (np.asarray(grad(*plus)) - np.asarray(grad(*minus))) / (2 * h)
            np.testing.assert_allclose(ad.hvp(f, wrt=wrt)(*args, v), want_hv, atol=1e-4)


# ---------------------------------------------------------------------------
# 1. A list or tuple literal where NumPy converts it to an array
# ---------------------------------------------------------------------------


def _sum_of_list(a):
    return np.sum([1.0, a * a, 2.0])


def _mean_of_list(a):
    return np.mean([a, a + 2])


def _norm_of_list(a):
    return np.linalg.norm([a, a + 2])


def _r_join(a):
    return np.sum(np.r_[a, a] * np.arange(4))


def _c_join(a):
    return np.sum(np.c_[a, a] * np.arange(4).reshape(2, 2))


def _list_in_a_variable(a):
    items = [a, a * a]
    return np.sum(np.exp(items))


def _list_operand(a):
    return np.sum(a * [[1.0, 2.0], [3.0, a[0]]])


@pytest.mark.parametrize(
    "f, x",
    [
        (_sum_of_list, -2.0),
        (_mean_of_list, np.array([1.0, 2.0])),
        (_norm_of_list, 1.5),
        (_r_join, np.array([1.0, 2.0])),
        (_c_join, np.array([1.0, 2.0])),
        (_list_in_a_variable, np.array([0.3, -0.4])),
        (_list_operand, np.array([0.3, -0.4])),
    ],
)
def test_list_literal_converted_to_an_array_carries_the_gradient(f, x):
    check_all_modes(f, [x])


def test_list_literal_gradient_value():
    assert ad.grad(_sum_of_list)(-2.0) == pytest.approx(-4.0)


def _index_trick_with_values(a):
    return np.sum(np.s_[a])


def test_indexing_an_object_with_run_time_values_is_refused():
    with pytest.raises(UnsupportedSyntaxError, match="np.s_"):
        ad.grad(_index_trick_with_values)(1.0)


# ---------------------------------------------------------------------------
# Constructors given a value that varies: np.full, np.full_like, np.arange
# ---------------------------------------------------------------------------


def _full_of_a_value(a):
    return np.sum(np.full((3,), a) * np.arange(3))


def _full_like_of_a_value(a):
    return np.sum(np.full_like(np.ones(3), a) ** 2 * np.arange(3))


def _arange_from_a_value(a):
    return np.sum(np.arange(a, a + 3.0) ** 2)


def _arange_with_a_step(a):
    return np.sum(np.arange(0.0, 2.9, a) ** 2)


@pytest.mark.parametrize(
    "f, x",
    [
        (_full_of_a_value, 1.5),
        (_full_like_of_a_value, 1.5),
        (_arange_from_a_value, 1.5),
        (_arange_with_a_step, 0.7),
    ],
)
def test_constructor_given_a_varying_value_carries_the_gradient(f, x):
    check_all_modes(f, [x])


# ---------------------------------------------------------------------------
# 5. A sign lost by simplification: -(k * g) folds the sign into k, and a later
#    -unbroadcast(-(k * g)) took that (already dropped) negation for a second one
# ---------------------------------------------------------------------------


def _h_two(a, b):
    s = a * b
    if np.sum(s) > 0:
        return s * 2.0
    return s - 1.0


def _loop_bool_operand_early_return_helper(x, c):
    for _ in range(3):
        t = ((c > 0) - (_h_two(c, c) - np.mean(x))) * 0.1
    return t


def _two_negations_through_a_sum(x, c):
    return np.sum(-(-(0.1 * c) + np.mean(x)) * np.ones(2))


@pytest.mark.parametrize("wrt", ["x", "c"])
@pytest.mark.parametrize("c", [0.7, -0.7])
def test_negation_dropped_into_a_constant_is_not_cancelled_again(wrt, c):
    x = np.array([0.3, -0.2, 0.5])
    check_all_modes(_loop_bool_operand_early_return_helper, [x, c], wrt=wrt)
    check_all_modes(_two_negations_through_a_sum, [x, c], wrt=wrt)


# ---------------------------------------------------------------------------
# 10. np.power at a zero base, and with a zero exponent
# ---------------------------------------------------------------------------


def _zero_to_the_y(y):
    return np.power(0.0, y)


def _x_to_the_zero(x):
    return np.sum(np.power(x, 0.0) * x)


def _x_to_the_y(x, y):
    return np.sum(np.power(x, y))


def test_power_of_zero_has_gradient_zero_in_the_exponent():
    assert ad.grad(_zero_to_the_y)(1.5) == 0.0
    check_all_modes(_zero_to_the_y, [1.5])


@pytest.mark.parametrize("x", [0.0, 0.3, np.zeros(2)])
def test_power_with_exponent_zero_at_zero(x):
    np.testing.assert_allclose(ad.grad(_x_to_the_zero)(x), np.ones_like(x))
    np.testing.assert_allclose(ad.jvp(_x_to_the_zero)(x, np.ones_like(x))[1], np.size(x))
    check_all_modes(_x_to_the_zero, [x])


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
def test_power_with_zeros_in_base_and_exponent_arrays():
    x, y = np.array([0.0, 1.2, 0.5]), np.array([2.0, 0.3, 0.0])
    check_all_modes(_x_to_the_y, [x, y], wrt="y")
    x[0] = 0.2
    check_all_modes(_x_to_the_y, [x, y], wrt="x")
    gx, gy = ad.grad(_x_to_the_y, wrt=("x", "y"))(np.zeros(2), np.array([0.0, 2.0]))
    np.testing.assert_array_equal(gx, [0.0, 0.0])  # 0 ** 0 = 1 and 0 ** 2 = 0 are flat in x
    assert gy[1] == 0.0  # 0 ** y = 0 for y > 0 (at y = 0, 0 ** y jumps: no derivative)


# ---------------------------------------------------------------------------
# 11. A tuple `wrt` argument the bytecode does not show as a container (np.stack(xs))
# ---------------------------------------------------------------------------


def _stacked_pair(xs):
    return np.sum(np.stack(xs, 0) * [[1, 2]])


@pytest.mark.parametrize("wrt", [None, "xs", 0])
def test_one_tuple_wrt_gets_a_one_tuple_gradient(wrt):
    from adcompiler import specialize

    xs = (np.ones(2),)
    if not specialize.enabled():  # no dispatcher to route it: refused, not misread
        with pytest.raises(TypeError, match="'xs' is a tuple"):
            ad.grad(_stacked_pair, wrt=wrt)(xs)
        return
    for _ in range(CALLS):
        g = ad.grad(_stacked_pair, wrt=wrt)(xs)
        assert isinstance(g, tuple) and len(g) == 1
        np.testing.assert_array_equal(g[0], [1.0, 2.0])
        value, g = ad.value_and_grad(_stacked_pair, wrt=wrt)(xs)
        assert value == 3.0 and isinstance(g, tuple) and len(g) == 1
        value, t = ad.jvp(_stacked_pair, wrt=wrt)(xs, (np.array([1.0, -1.0]),))
        assert value == 3.0 and t == pytest.approx(-1.0)
    np.testing.assert_array_equal(ad.grad(_stacked_pair, wrt=wrt)(np.ones((1, 2))), [[1, 2]])


def test_code_for_arrays_refuses_a_container():
    from adcompiler.runtime import check_float

    with pytest.raises(TypeError, match="'xs' is a tuple"):
        check_float(xs=(np.ones(2),))


# ---------------------------------------------------------------------------
# Crashes: a + a on a float (an accumulation folded to a constant), np.dot of vectors
# ---------------------------------------------------------------------------


def _add_self(a):
    return a + a


def _subtract_self(a):
    return a - a


def _add_self_twice(a):
    return a + a + a * 2.0


@pytest.mark.parametrize("f", [_add_self, _subtract_self, _add_self_twice])
def test_adding_a_float_to_itself(f):
    check_all_modes(f, [1.5])


def _dot(x, y):
    return np.dot(x, y) ** 2


def _dot_plain(x, y):
    return np.dot(x, y)


def _dot_summed(x, y):
    return np.sum(np.dot(x, y) ** 2)


@pytest.mark.parametrize(
    "f, x, y",
    [
        (_dot, np.array([1.0, 2.0]), np.array([3.0, 4.0])),
        (_dot_plain, np.array([1.0, 2.0]), np.array([3.0, 4.0])),
        (_dot_plain, 1.5, 2.0),
        (_dot, 1.5, 2.0),
        (_dot_summed, 1.5, np.array([3.0, 4.0])),
        (_dot_summed, np.array([3.0, 4.0]), 1.5),
        (_dot_summed, np.array([[2.0, 1.0], [1.0, 2.0]]), np.array([3.0, 4.0])),
    ],
)
@pytest.mark.parametrize("wrt", ["x", "y"])
def test_dot_of_vectors_and_scalars(f, x, y, wrt):
    check_all_modes(f, [x, y], wrt=wrt)


# ---------------------------------------------------------------------------
# Nested if/elif/else where only the innermost else assigns, then a loop (KeyError in
# if_adjoint: the loop's accumulator of x had no primal recorded)
# ---------------------------------------------------------------------------


def _nested_only_else_assigns(x, c):
    y = x * 1.0
    if c > 1:
        z = 2.0  # noqa: F841 - only the innermost else assigns y
    elif c > 0:
        z = 3.0  # noqa: F841
    else:
        y = x * x
    for _ in range(2):
        y = y * x
    return np.sum(y)


@pytest.mark.parametrize("c", [2.0, 0.5, -1.0])
def test_nested_if_where_only_the_innermost_else_assigns_then_a_loop(c):
    check_all_modes(_nested_only_else_assigns, [np.array([0.5, -0.3]), c])


# ---------------------------------------------------------------------------
# A helper with an early return called in a loop that writes in place: the helper's
# saved values (a tuple) were copied as if a view of an array (np.copy of a tuple)
# ---------------------------------------------------------------------------


def _helper_with_early_return(a, b):
    s = a * b
    if np.sum(s) > 0:
        return s * 2.0
    return s - 1.0


def _helper_in_a_loop_that_writes_rows(x, w):
    out = np.zeros((3, 3))
    h = x
    for i in range(3):
        h = _helper_with_early_return(h, w)
        out[i] = h
    return np.sum(out**2)


@pytest.mark.parametrize("wrt", ["x", "w"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_helper_with_early_return_in_a_loop_that_writes_in_place(wrt, sign):
    x, w = sign * np.array([0.3, -0.2, 0.5]), np.array([0.9, 1.1, 0.8])
    check_all_modes(_helper_in_a_loop_that_writes_rows, [x, w], wrt=wrt)


# ---------------------------------------------------------------------------
# Forward mode: the tangent of x + s with only the scalar s varying has the output's
# shape (it was left a scalar, and then indexed)
# ---------------------------------------------------------------------------


def _reversed_sum_plus_array(x, w):
    return np.sum((x + np.sum(w))[::-1] * np.arange(3))


def _sliced_array_plus_sum(x, w):
    return np.sum((np.sum(x) + w)[1:] ** 2)


@pytest.mark.parametrize("f", [_reversed_sum_plus_array, _sliced_array_plus_sum])
@pytest.mark.parametrize("wrt", ["x", "w"])
def test_tangent_of_a_broadcast_sum_has_the_output_shape(f, wrt):
    check_all_modes(f, [np.array([0.3, -0.2, 0.5]), np.array([0.9, 1.1, 0.4])], wrt=wrt)


# ---------------------------------------------------------------------------
# np.mean of an empty array: nan, as NumPy gives it, and an empty gradient (the adjoint
# divided by the count 0: ZeroDivisionError)
# ---------------------------------------------------------------------------


def _mean_plus_sum(x):
    return np.mean(x) + np.sum(x)


def _mean_over_an_empty_axis(x):
    return np.sum(np.mean(x, axis=0))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(
    "f, x",
    [
        (_mean_plus_sum, np.zeros(0)),
        (_mean_over_an_empty_axis, np.zeros((0, 2))),
        (_mean_over_an_empty_axis, np.zeros((2, 0))),
    ],  # fmt: skip
)
def test_mean_of_an_empty_array(f, x):
    for _ in range(CALLS):
        g = ad.grad(f)(x)
        assert g.shape == x.shape
        value, g = ad.value_and_grad(f)(x)
        np.testing.assert_equal(value, f(x))
        assert g.shape == x.shape
        value, t = ad.jvp(f)(x, np.ones_like(x))
        np.testing.assert_equal(value, f(x))
        assert ad.hvp(f)(x, np.ones_like(x)).shape == x.shape


def test_mean_gradient_is_unchanged_for_non_empty_arrays():
    check_all_modes(_mean_over_an_empty_axis, [np.arange(6.0).reshape(3, 2)])
    check_all_modes(_mean_plus_sum, [np.arange(3.0)])


# ---------------------------------------------------------------------------
# wrt naming one argument twice: refused, naming it (generated code did not compile)
# ---------------------------------------------------------------------------


def _weighted(w, x):
    return np.sum(w * x)


@pytest.mark.parametrize("wrt", [("w", "w"), ("w", 0), (0, 0), (1, "x")])
@pytest.mark.parametrize("transform", [ad.grad, ad.value_and_grad, ad.vjp, ad.jvp, ad.hvp,
                                       ad.jacobian, ad.hessian])  # fmt: skip
def test_wrt_naming_an_argument_twice_is_refused(wrt, transform):
    from adcompiler.errors import WrtError

    with pytest.raises(WrtError, match="twice"):
        transform(_weighted, wrt=wrt)(np.ones(2), np.ones(2))


# ---------------------------------------------------------------------------
# Fail closed: `a or b` and `a and b` return an operand (they were taken for constants),
# and a cast to integers has no derivative (it was taken for the identity)
# ---------------------------------------------------------------------------


def _or_default(a):
    return (a or 1.0) * a


def _or_falls_through(a):
    return (a * 0.0 or a * 3.0) * a


def _and_value(a):
    return (a > 0 and a * 3.0) * 1.0


def _cast_to_int(x):
    return np.sum(x.astype(int) * x + x.astype(np.float64) * x)


@pytest.mark.parametrize(
    "f, x",
    [
        (_or_default, 1.5),
        (_or_falls_through, 1.5),
        (_and_value, 1.5),
        (_and_value, -1.5),
        (_cast_to_int, np.array([1.5, 2.5])),
    ],  # fmt: skip
)
def test_boolean_operators_and_casts(f, x):
    check_all_modes(f, [x], atol=1e-4)


# ---------------------------------------------------------------------------
# Fail closed: a tuple of varying values passed to or returned from a recursive helper
# (its derivative was dropped: the gradient came back zero) is refused in reverse mode
# ---------------------------------------------------------------------------


def _rec_pair_result(a, n):
    if n == 0:
        return a, a * 2.0
    return _rec_pair_result(a * 1.1, n - 1)


def _rec_pair_argument(t, n):
    if n == 0:
        return t[0] * t[1]
    return _rec_pair_argument((t[0] * 1.1, t[1]), n - 1)


def _calls_rec_pair_result(x):
    p, q = _rec_pair_result(x, 2)
    return np.sum(p * q)


def _calls_rec_pair_argument(x):
    return np.sum(_rec_pair_argument((x, x * 2.0), 2))


@pytest.mark.parametrize("f", [_calls_rec_pair_result, _calls_rec_pair_argument])
@pytest.mark.parametrize("transform", [ad.grad, ad.value_and_grad])
def test_tuple_through_a_recursive_helper_is_refused_in_reverse_mode(f, transform):
    with pytest.raises(NotImplementedError, match="tuple whose items carry derivatives"):
        transform(f)(np.array([0.5, -0.3]))


def test_tuple_argument_of_a_recursive_helper_in_forward_mode():
    x, v = np.array([0.5, -0.3]), np.array([1.0, 2.0])
    _, t = ad.jvp(_calls_rec_pair_argument)(x, v)
    assert t == pytest.approx(np.sum(_fd_grad(_calls_rec_pair_argument, [x], 0) * v))


# ---------------------------------------------------------------------------
# Fuzzer findings (/work/fuzz_findings)
# ---------------------------------------------------------------------------


def _float_of_scalar_plus_array(x, s):
    t = float(s) + x
    return np.sum(t * t)


def test_fuzz_float_of_scalar_keeps_the_broadcast():
    """float_of_scalar_loses_broadcast.py: the tangent of float(s) + x was a scalar."""
    x, s = np.array([0.3, -0.5]), 0.7
    _, t = ad.jvp(_float_plus, wrt="s")(x, s, 1.0)
    np.testing.assert_allclose(t, [1.0, 1.0])
    check_all_modes(_float_of_scalar_plus_array, [x, s], wrt="s")


def _float_plus(x, s):
    return float(s) + x


def _loop_invariant_assignment_under_if(s, x):
    a = 2.0 * x
    if s > 0.8:
        for _ in range(2):
            a = x * 1.0
    return np.sum(a)


@pytest.mark.parametrize("s", [1.0, 0.5])
def test_fuzz_loop_invariant_assignment_in_a_loop_under_an_if(s):
    """loop_invariant_assignment_in_loop_under_if.py: KeyError in if_adjoint."""
    check_all_modes(_loop_invariant_assignment_under_if, [s, np.array([0.5, -1.0, 2.0])], wrt="x")


def _generator_in_while_condition(x):
    j = 0
    y = x
    while j < 2 and sum(u for u in y) > 0.8:
        j = j + 1
        y = y * 0.9
    return np.sum(y * x)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_fuzz_generator_expression_in_a_while_condition(scale):
    """generator_expression_in_while_condition.py: KeyError in bind_slots (the generator's
    loop replaced the while loop's slot templates)."""
    check_all_modes(_generator_in_while_condition, [scale * np.array([0.5, 0.6])])


def _h0_first(a0, a1):
    return sum([0.5, a1])


def _h0_second(a0, a1):
    return sum([1.5, a1])


_h0_first.__name__ = _h0_second.__name__ = "h0"  # two modules' helpers, both named h0


def _calls_h0_first(s, x, a):
    acc = s
    for i in range(2):
        if x[i] > 0.8:
            pass
        acc = _h0_first(a, a)  # noqa: F841 - the helper call stays a call
    return np.sum(a) + np.sum(x * x)


def _calls_h0_second(s, x, a):
    acc = s
    for i in range(2):
        if x[i] > 0.8:
            pass
        acc = _h0_second(a, a)  # noqa: F841
    return np.sum(a) + np.sum(x * x)


def test_fuzz_two_helpers_with_one_name_called_by_generated_code():
    """helper_call_name_clash_and_disk_cache.py, part 1: the second function's generated
    code called its helper by a name the first's had taken (NotImplementedError)."""
    x, a = np.array([0.3, 0.5]), np.ones((2, 2))
    for f in (_calls_h0_first, _calls_h0_second):
        np.testing.assert_allclose(ad.grad(f, wrt="x")(1.0, x, a), 2 * x)
    import re

    called = [
        set(re.findall(r"\b(h0\w*)\(", ad.source(ad.grad(f, wrt="x"))))
        for f in (_calls_h0_first, _calls_h0_second)
    ]
    assert called[0] and called[1] and not called[0] & called[1]


# ---------------------------------------------------------------------------
# A max taken for the shift of a log-softmax/logsumexp whose sum does not line up with
# it (a square x: keepdims on the max, not on the sum) was treated as constant
# ---------------------------------------------------------------------------


def _misaligned_log_softmax(x, w):
    m = np.max(x, axis=1, keepdims=True)
    s = x - m
    return np.sum((s - np.log(np.sum(np.exp(s), axis=1))) * w)


def _misaligned_logsumexp(x, w):
    m = np.max(x, axis=1, keepdims=True)
    return np.sum((np.log(np.sum(np.exp(x - m), axis=1)) + m) * w)


def _log_softmax(x, w):
    m = np.max(x, axis=1, keepdims=True)
    s = x - m
    return np.sum((s - np.log(np.sum(np.exp(s), axis=1, keepdims=True))) * w)


@pytest.mark.parametrize("f", [_misaligned_log_softmax, _misaligned_logsumexp, _log_softmax])
def test_shift_by_a_max_is_constant_only_where_it_cancels(f):
    rng = np.random.default_rng(1)
    check_all_modes(f, [rng.normal(size=(3, 3)), rng.normal(size=(3, 3))], atol=1e-4)


def _pair_sum(t):
    return t[0] + t[1]


def _calls_pair_sum(a):
    return _pair_sum((a, a * 2.0)) * 1.0


def test_tuple_of_run_time_values_given_to_a_custom_rule_is_refused():
    ad.defrule(_pair_sum, adjoint=lambda g, ans, t: (g,), tangent=lambda ts, ans, t: ts[0])
    try:
        with pytest.raises(UnsupportedSyntaxError, match="tuple of values computed at run time"):
            ad.grad(_calls_pair_sum)(1.0)
    finally:
        from adcompiler.custom import remove_rules

        remove_rules(_pair_sum)


def _sum_of_a_dict(x):
    d = {"a": x}
    return np.sum(d)


def test_a_dict_used_as_an_array_is_a_located_error():
    with pytest.raises(UnsupportedSyntaxError, match="a dict cannot be used as an array"):
        ad.grad(_sum_of_a_dict)(np.ones(2))


def _norm_of_zero(y):
    b = y
    return np.linalg.norm(b - b)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_fuzz_hvp_of_a_norm_at_zero_is_zero():
    """hvp_norm_at_zero_nan.py: the tangent of norm_adjoint divided by the norm, 0."""
    y = np.array([0.3, -0.5, 1.2])
    for _ in range(CALLS):
        np.testing.assert_array_equal(ad.grad(_norm_of_zero)(y), 0.0)
        np.testing.assert_array_equal(ad.hvp(_norm_of_zero)(y, np.ones(3)), 0.0)


def _arcsin(s):
    return np.arcsin(s)


def _arccos(s):
    return np.arccos(s)


@pytest.mark.parametrize("f, sign", [(_arcsin, 1.0), (_arccos, -1.0)])
def test_fuzz_specialized_hvp_of_arcsin_keeps_its_sign(f, sign):
    """specialized_hvp_arcsin_sign.py: fixed with the sign lost by simplification (case 5)."""
    s = 0.4
    for _ in range(CALLS):
        assert ad.hvp(f)(s, 1.0) == pytest.approx(sign * s / (1 - s * s) ** 1.5)
    check_all_modes(f, [s])


def _def_in_a_loop_under_an_if(x):
    if np.sum(x) > 0:
        for i in range(2):

            def fn(r):
                return -r * 0.1 * i  # noqa: B023 - as the fuzzer wrote it

            v = fn(x)  # noqa: F841
        y = x
    else:
        y = x
    return np.sum(y * y)


def test_fuzz_def_in_a_loop_does_not_make_the_loop_return():
    """def_in_loop_false_may_be_undefined.py: the nested def's `return` was taken for a
    return from the loop, so `y` after the `if` was refused as maybe undefined."""
    check_all_modes(_def_in_a_loop_under_an_if, [np.array([0.3, 0.5])])
    check_all_modes(_def_in_a_loop_under_an_if, [np.array([-0.3, -0.5])])


def _gauss(s):
    return np.exp(-(s * s))


def _x_plus_mean(a, x):
    return x + np.mean(a)


def test_fuzz_specialized_hvp_of_elementwise_chains():
    """specialized_hvp_elementwise.py: fixed with the sign lost by simplification."""
    check_all_modes(_gauss, [0.4])
    check_all_modes(_gauss_summed, [np.array([0.4, -1.1])])


def _gauss_summed(s):
    return np.sum(np.exp(-np.square(s)))


def test_fuzz_tangent_of_a_scalar_result_plus_an_array():
    """tangent_of_scalar_plus_array_not_broadcast.py: x + np.mean(A) varying in A only."""
    for _ in range(CALLS):
        _, t = ad.jvp(_x_plus_mean, wrt="a")(np.ones((2, 3)), np.zeros(3), np.ones((2, 3)))
        np.testing.assert_allclose(t, np.ones(3))


def _while_assigns_a_loop_invariant(x, y):
    v = x * 2.0
    j = 0
    while j < 4 and np.sum(np.square(v)) < 4.0:
        j = j + 1
        v = y
    return np.mean(v)


def _for_assigns_a_loop_invariant(x, y, n):
    v = x * 2.0
    for _ in range(n):
        v = y * 1.0
    return np.mean(v * v)


@pytest.mark.parametrize("x", [np.array([1.5, -1.0]), np.array([0.1, 0.2])])  # 0 or 4 trips
@pytest.mark.parametrize("wrt", ["x", "y"])
def test_fuzz_loop_that_may_run_zero_times_passes_its_initial_value_on(x, wrt):
    """while_loop_invariant_assignment_zero_trips.py: a loop's output is its initial value
    when it runs zero times: it varies with it (the gradient in x was 0)."""
    y = np.array([0.5, 1.0])
    check_all_modes(_while_assigns_a_loop_invariant, [x, y], wrt=wrt)
    for n in (0, 2):
        check_all_modes(_for_assigns_a_loop_invariant, [x, y, n], wrt=wrt)


def _asarray_of_a_list(a):
    return np.sum(np.asarray([a, a * a]))


def _array_of_a_list_with_a_dtype(a):
    return np.sum(np.array([a, 1], dtype=float) / 2)


def _asarray_of_an_array(x):
    return np.sum(np.asarray(x) ** 2)


@pytest.mark.parametrize(
    "f, x",
    [
        (_asarray_of_a_list, 1.5),
        (_array_of_a_list_with_a_dtype, 1.5),
        (_asarray_of_an_array, np.array([1.0, 2.0])),
    ],  # fmt: skip
)
def test_np_asarray_and_np_array_with_a_dtype(f, x):
    check_all_modes(f, [x])


# fuzzer, seed 777 program 163: an `if` that yields `v1` makes its output the same array
# as `v1`; the specialized version then wrote `v1 + A` into v1's memory in place
def if_yields_an_array_written_later(A, s):
    v1 = A * np.sum([s, s, 0.5])
    if np.max(A) < 0.3 or 1.5 > 0.9:
        v5 = v1
    else:
        v5 = A
    return np.sum(np.tanh(np.square(v1 + A) + v5))


# the same through a loop that runs no iteration: its output is its initial value
def loop_passes_on_an_array_written_later(A, n):
    v1 = A * 2.0
    h = v1
    for _ in range(n):
        h = h * 0.5 + A
    w = v1 + A
    return np.sum(np.tanh(w * h + h))


def while_passes_on_an_array_written_later(A, c):
    v1 = A * 2.0
    h = v1
    while np.sum(h) < c:
        h = h + 1.0
    w = v1 + A
    return np.sum(np.tanh(w * h + h))


@pytest.mark.parametrize(
    "f, rest",
    [
        (if_yields_an_array_written_later, (0.75,)),
        (loop_passes_on_an_array_written_later, (0,)),
        (loop_passes_on_an_array_written_later, (2,)),
        (while_passes_on_an_array_written_later, (-100.0,)),
        (while_passes_on_an_array_written_later, (5.0,)),
    ],
)
def test_no_write_in_place_into_an_array_a_region_output_still_holds(f, rest):
    A = np.random.default_rng(1).normal(size=(3, 2))
    check_all_modes(f, (A, *rest), wrt=0)


# fuzzer, seed 777 program 5: `x[x > 0.2]` whose mask the specializer never observed was
# taken for an integer index, so the masked array's length was folded into the version
def mask_read_before_a_short_circuit_if(A, x):
    acc = np.sum(x[x > 0.2])
    if np.trace(A) > 0.3 and acc < 1.0:
        pass
    return x + acc


def test_a_mask_never_observed_is_not_taken_for_an_integer_index():
    vjp = ad.vjp(mask_read_before_a_short_circuit_if, wrt=("A", "x"))
    A = np.eye(3)
    for x in ([0.5, 0.3, 0.1], [0.5, 0.3, 0.1], [0.5, 0.1, 0.1], [0.0, 0.1, 0.9]):
        x = np.array(x)
        value, (_, x_bar) = vjp(A, x, np.ones(3))
        want = np.ones(3) + 3.0 * (x > 0.2)
        np.testing.assert_allclose(x_bar, want)


# ---------------------------------------------------------------------------
# Generated code writes in place only into arrays it made: never into an argument
# (the cotangent or tangent included). Found by tests/fuzz.py.
# ---------------------------------------------------------------------------


def _sum_of_a_generator_in_a_loop(x):
    acc = 0.0
    for _ in range(2):
        acc = sum(u for u in x)
    return x + acc


def _loop_accumulates_into_the_cotangent(x):
    y = x * 1.0
    for _ in range(2):
        y = y * 2.0
    return y + x[0]


@pytest.mark.parametrize("f", [_sum_of_a_generator_in_a_loop, _loop_accumulates_into_the_cotangent])
def test_vjp_and_jvp_leave_their_vector_arguments_alone(f):
    x = np.array([0.3, 0.5, -0.2])
    for _ in range(CALLS):
        v = np.array([0.0, 1.0, 0.0])
        ad.vjp(f)(x, v)
        np.testing.assert_array_equal(v, [0.0, 1.0, 0.0])
        ad.jvp(f)(x, v)
        np.testing.assert_array_equal(v, [0.0, 1.0, 0.0])
        np.testing.assert_array_equal(x, [0.3, 0.5, -0.2])
    eps = 1e-6
    want = np.stack([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(3)], 1)
    for mode in ("reverse", "forward"):
        for _ in range(CALLS):
            np.testing.assert_allclose(ad.jacobian(f, mode=mode)(x), want, atol=1e-6)


def _written_after_a_while_that_may_run_no_trip(y, s):
    z = np.zeros_like(y)
    z[1] = s
    z[1:] = y[1:] * 2.0  # its adjoint writes zeros into z's adjoint: the while's output
    j = 0
    while j < 3 and np.sum(y) < 0.3:
        j = j + 1
        z = np.minimum(z, y)
    return np.sin(np.sum(y)) + np.mean(z) + s * 0.0


def test_write_into_the_output_of_a_loop_that_ran_no_trip():
    """A loop's output is its initial value when it runs no trip (here a read-only
    broadcast): it is not the loop's own array, and is copied before a write."""
    f = _written_after_a_while_that_may_run_no_trip
    for y in (np.array([-0.9, 0.3, 0.1]), np.array([1.1, 0.2, 0.3])):
        for s in (-0.4, 0.2):
            check_all_modes(f, (y, s), wrt="s", hvp=False)
            check_all_modes(f, (y, s), wrt="y", hvp=False)


SCALE = 0.75


def _rebinds_its_parameter_to_a_constant_in_an_if(a0):
    if np.max(a0) > 0.0:
        a0 = SCALE
    return np.mean(a0)


def _calls_a_helper_that_rebinds_its_parameter(x):
    return _rebinds_its_parameter_to_a_constant_in_an_if(x) + np.sum(x * x)


@pytest.mark.parametrize("x", [np.array([0.3, -0.2]), np.array([-0.3, -0.2])])
def test_helper_whose_adjoint_if_yields_an_adjoint_from_before_it(x):
    """The split of a helper into forward and adjoint halves reads region yields too: an
    `if` that yields an adjoint made before it belongs to the adjoint half (it was left in
    the forward half: VerifyError)."""
    check_all_modes(_calls_a_helper_that_rebinds_its_parameter, (x,))


def _vector_or_matrix_by_the_data_then_a_while(x, A):
    v = 7.5 + A[:, 0]
    v = v if np.sum(x) < 1.0 else A
    j = 0
    while j < 4 and np.sum(v) < 4.0:
        j = j + 1
        v = np.exp(A).dot(x / (2.0 + np.cos(x)))
    return np.linalg.norm(x + 0.1 * np.mean(A) + 0.1 * np.mean(v))


@pytest.mark.parametrize("x", [np.array([0.1, 0.2]), np.array([0.6, 0.7])])
def test_loop_carried_variable_that_changes_shape(x):
    """A carried variable whose shape changes in the loop (a matrix before it, a vector
    after): the adjoint of its initial value is zeros of the initial value's shape."""
    A = np.arange(8.0).reshape(4, 2) * 0.1 - 2
    check_all_modes(_vector_or_matrix_by_the_data_then_a_while, (x, A), wrt="A", hvp=False)


def _sum_over_a_mask_in_a_while(a0):
    acc = a0
    j = 0
    while j < 3 and np.sum(acc) < 4.0:
        j = j + 1
        acc = np.sum(a0[a0 > 0.2])
    return np.logaddexp(0.0, a0[::-1])


def _mask_in_a_while_in_a_for(x):
    v = x
    for _ in range(3):
        v = _sum_over_a_mask_in_a_while(x)
    return np.linalg.norm(v)


def test_shape_read_from_a_tape_kept_on_a_tape_is_not_folded():
    """A loop's tape kept on an outer loop's tape: a masked read's shape saved on it
    depends on the data (the specialized version folded it: add_at crashed)."""
    for x in (np.array([-0.29, 0.26, -0.93, 0.34, 0.65]),
              np.array([-1.11, -0.40, -0.70, 0.67, -0.27])):  # fmt: skip
        check_all_modes(_mask_in_a_while_in_a_for, (x,), hvp=False)
    g = ad.grad(_mask_in_a_while_in_a_for)
    x = np.array([-0.29, 0.26, -0.93, 0.34, 0.65])
    for _ in range(CALLS):
        g(x)
    y = np.array([-1.11, -0.40, -0.70, 0.67, -0.27])
    np.testing.assert_allclose(g(y), _fd_grad(_mask_in_a_while_in_a_for, (y,), 0), atol=1e-5)


# ---------------------------------------------------------------------------
# `1.0 * v` is not `v` where `v` is a boolean (fuzz seed 1796407592)
# ---------------------------------------------------------------------------


def _minimum_of_cos(s):
    return np.minimum(np.cos(s), -0.2)


def _two_minimums(x):
    return np.minimum(x, 1.0) + np.minimum(x, 2.0)


def _times_a_mask_twice(x, m):
    return x * m + x * m


@pytest.mark.parametrize("s", [0.7, 2.5, np.float64(2.5), np.array(2.5)])
def test_the_seed_times_a_mask_stays_a_float(s):
    """The seed 1.0 times the mask of minimum's adjoint was folded to the mask: `-mask`
    raised on a boolean."""
    check_all_modes(_minimum_of_cos, (s,))
    assert np.asarray(ad.grad(_minimum_of_cos)(s)).dtype == np.float64


@pytest.mark.parametrize("x", [0.5, np.float64(0.5), np.array(0.5)])
def test_two_masks_add_as_numbers_not_as_or(x):
    """Two boolean masks added (`True + True` is True for NumPy booleans): the gradient
    was 1, silently, where it is 2."""
    for _ in range(CALLS):
        assert ad.grad(_two_minimums)(x) == 2.0
        assert ad.jacobian(_two_minimums, mode="reverse")(x) == 2.0


@pytest.mark.parametrize("m", [True, np.True_, np.array(True)])
def test_a_boolean_argument_times_the_seed_is_a_number(m):
    for _ in range(CALLS):
        g = ad.grad(_times_a_mask_twice)(0.5, m)
        assert g == 2.0 and np.asarray(g).dtype.kind == "f", g


# ---------------------------------------------------------------------------
# A rule's run-time helper may return a view of the adjoint it takes (fuzz seed 777)
# ---------------------------------------------------------------------------


def _column_stack_summed(a0):
    return np.logaddexp(a0, a0) + np.column_stack([a0, a0]).sum(axis=1)


def _calls_column_stack_summed(x):
    return np.sum(_column_stack_summed(x))


def _stacked_twice(x):
    return np.sum(np.stack([x, x]) * 2.0) + np.sum(np.append(x, x))


@pytest.mark.parametrize("f", [_calls_column_stack_summed, _stacked_twice])
def test_adjoints_are_not_summed_into_a_helpers_view(f):
    """uncolumn_stack(g, ...) returns a column of g, here a read-only broadcast: the
    second adjoint was added into it in place ("output array is read-only")."""
    check_all_modes(f, (np.array([0.3, -0.2, 0.5]),))


# ---------------------------------------------------------------------------
# A value named after a builtin that generated code calls (fuzz seed 20261204)
# ---------------------------------------------------------------------------


def _ptp_in_a_loop(b, A):
    acc1 = b
    for _ in range(1, len(acc1)):
        acc1 = np.ptp(A, axis=1)
    return np.tanh(np.mean(acc1))


def test_no_value_shadows_a_builtin_the_generated_code_calls():
    """ptp's adjoint named its maximum `max`: the `max(np.size(acc1), 1)` of mean's
    adjoint earlier in the function became a read of an unbound local."""
    A = np.arange(6.0).reshape(2, 3) ** 1.3
    check_all_modes(_ptp_in_a_loop, (np.array([0.1, 0.2]), A), wrt="A")


def _singular_values_only(A):
    return np.sum(np.linalg.svd(A, compute_uv=False) ** 2) + np.linalg.svd(A)[1][0]


def test_svd_takes_numpys_compute_uv():
    """`np.linalg.svd(a, compute_uv=False)` (NumPy's own keyword, s alone) was refused:
    147 of the fuzz run's refusals."""
    A = np.array([[0.3, -1.2, 0.5, 0.1], [0.8, 0.2, -0.4, 1.1], [-0.6, 0.9, 0.7, -0.2]])
    check_all_modes(_singular_values_only, (A,))
    with pytest.raises(UnsupportedSyntaxError, match="compute_uv"):
        ad.grad(_svd_uv_at_run_time)(A, True)


def _svd_uv_at_run_time(A, uv):
    return np.sum(np.linalg.svd(A, compute_uv=uv)[1])
