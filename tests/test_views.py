"""Writes through NumPy views (issue 12, item 9; issue 13): followed as NumPy does, or
refused with a located error (adcompiler/frontend/views.py, the `View` trait of
adcompiler/ops/core.py).

Each supported form is checked against NumPy running the function itself: the value,
the gradient against float64 central differences, forward mode against the same, on
the first call (generic code) and on later calls (specialized code), and the argument
is left as it was.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import adcompiler as ad
from adcompiler.ops.core import OPS
from adcompiler.ssa import Node, Value

EPS = 1e-6


def _fd(f, x):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += EPS
        down[i] -= EPS
        g[i] = (f(up) - f(down)) / (2 * EPS)
    return g


def check(f, x):
    """f's value, gradient (reverse) and directional derivative (forward) as NumPy and
    central differences give them, on three calls (generic, then specialized)."""
    expected_value = f(x.copy())
    expected_grad = _fd(f, x)
    v = np.linspace(0.3, 1.1, x.size).reshape(x.shape)
    vg = ad.value_and_grad(f)
    jvp = ad.jvp(f)
    for call in range(3):
        arg = x.copy()
        value, grad = vg(arg)
        np.testing.assert_array_equal(arg, x)  # the argument is not written into
        np.testing.assert_allclose(value, expected_value, rtol=1e-12, err_msg=f"call {call}")
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-8)
        value, dot = jvp(arg, v)
        np.testing.assert_allclose(value, expected_value, rtol=1e-12)
        np.testing.assert_allclose(dot, np.sum(expected_grad * v), rtol=1e-6, atol=1e-8)


def refused(f, message, line_text):
    """f is refused before anything runs, at the line that holds `line_text`."""
    with pytest.raises(ad.UnsupportedSyntaxError) as info:
        ad.grad(f)
    err = info.value
    text = str(err)
    assert message in text, text
    lines, first = inspect.getsourcelines(f)
    line = first + next(i for i, s in enumerate(lines) if line_text in s)
    assert f"test_views.py:{line}:" in text, text
    assert "suggestion:" in text
    return err


X3 = np.array([0.7, -1.3, 2.1])
X4 = np.array([0.7, -1.3, 2.1, 0.4])
X23 = np.array([[0.7, -1.3, 2.1], [0.4, 1.5, -0.6]])
X234 = np.linspace(-1.0, 1.3, 24).reshape(2, 3, 4)


# ---------------------------------------------------------------------------
# The two examples
# ---------------------------------------------------------------------------


def test_write_through_reshape_is_refused_not_lost():
    def f(x):
        y = x * 1.0
        s = np.reshape(y, (3,))
        s[0] = 0.0
        return np.sum(y * x)

    refused(f, "`s` may be a view of another array or a copy (`np.reshape`", "s[0] = 0.0")


def test_write_through_stop_gradient_writes_into_its_input():
    def f(x):
        y = x * 2.0
        s = ad.stop_gradient(y)
        s[0] = x[1] ** 2
        return np.sum(y * x)

    check(f, X3)


def test_stop_gradient_of_an_argument_is_not_written_into():
    def f(x):
        s = ad.stop_gradient(x)
        s[0] = 0.0
        return np.sum(s * x)

    refused(f, "writing into an argument through `s`, a view of it", "s[0] = 0.0")


# ---------------------------------------------------------------------------
# Writes through views NumPy always makes: followed
# ---------------------------------------------------------------------------


def test_write_through_a_slice():
    def f(x):
        y = x * 1.0
        s = y[1:]
        s[0] = np.sin(x[0])
        return np.sum(y * x) + np.sum(s * s)

    check(f, X4)


def test_write_through_a_strided_slice_with_none_and_ellipsis():
    def f(x):
        y = np.tanh(x)
        s = y[::2, None]
        s[1, 0] = x[0] * x[1]
        e = y[...]
        e[0] = e[0] * 3.0
        return np.sum(y * y * x)

    check(f, X4)


def test_write_through_a_row_of_a_matrix():
    """`r = Y[0]` may be a number (Y 1-D) or a row; writing `r[1]` shows it is a row."""

    def f(x):
        y = x * 1.0
        r = y[0]
        r[1] = np.exp(x[1, 2])
        return np.sum(y * x) + np.sum(r)

    check(f, X23)


@pytest.mark.parametrize("spelling", ["T", "transpose", "transpose_method", "swapaxes"])
def test_write_through_a_transpose(spelling):
    def f(x):
        y = x * 1.0
        if spelling == "T":
            t = y.T
        elif spelling == "transpose":
            t = np.transpose(y, (1, 0))
        elif spelling == "transpose_method":
            t = y.transpose()
        else:
            t = np.swapaxes(y, 0, 1)
        t[2, 0] = x[0, 0] * x[1, 1]
        t[0] = t[0] * 2.0
        return np.sum(y * x) + np.sum(t[1] ** 2)

    check(f, X23)


def test_write_through_a_transpose_with_axes_of_three_dimensions():
    def f(x):
        y = np.sin(x)
        t = np.transpose(y, (2, 0, 1))
        t[1, 0] = t[1, 0] * x[1, 2, 3]
        return np.sum(y * x)

    check(f, X234)


def test_write_through_squeeze_and_expand_dims():
    def f(x):
        y = x * 1.0
        s = np.squeeze(y, axis=0)
        s[1] = x[0, 0] ** 2
        e = np.expand_dims(y, 0)
        e[0, 0, 2] = np.cos(x[0, 1])
        return np.sum(y * x)

    check(f, X3[None, :])


def test_write_through_a_chain_of_views():
    def f(x):
        y = x * 1.0
        v = y.T[1:]
        v[0, 1] = x[0, 0] * 3.0
        w = ad.stop_gradient(y)[1]
        w[0] = x[1, 2]
        return np.sum(y * x)

    check(f, X23)


def test_augmented_assignment_through_a_view_writes_into_the_base():
    def f(x):
        y = x * 1.0
        v = y[2:]
        v *= np.cos(x[:2])
        t = y.T
        t += 1.0
        return np.sum(y * y)

    check(f, X4)


def test_write_into_the_base_is_seen_through_its_views():
    def f(x):
        y = x * 1.0
        v = y[1:3]
        t = y.T
        y[1] = y[0] * 2.0
        y[2:] = np.exp(x[:2])
        return np.sum(v * x[1:3]) + np.sum(t * x)

    check(f, X4)


def test_augmented_assignment_of_the_base_is_seen_through_its_views():
    def f(x):
        y = x * 1.0
        v = y[1:]
        y *= x
        return np.sum(v)

    check(f, X4)


def test_views_in_tuples_and_lists_see_the_write():
    def f(x):
        y = x * 1.0
        pair = (y[1:], y)
        items = [y[:2]]
        y[1] = x[0] ** 3
        return np.sum(pair[0] * pair[1][1:]) + np.sum(items[0])

    check(f, X3)


def test_a_view_returned_by_a_helper_is_followed():
    def tail(a):
        return a[1:]

    def f(x):
        y = x * 1.0
        v = tail(y)
        v[0] = x[2] * 5.0
        return np.sum(y * x)

    check(f, X3)


def test_a_helper_writing_into_its_argument_writes_into_the_callers_array():
    def fill(a, value):
        a[0] = value
        return a

    def f(x):
        y = x * 1.0
        t = y.T
        z = fill(y, x[1] ** 2)
        return np.sum(y * x) + np.sum(t) + np.sum(z)

    check(f, X3)


def test_a_write_that_misses_a_row_keeps_it():
    """`r = H[0]` may be a number or a row: a write into H[1] does not touch it either way."""

    def f(x):
        h = x * 1.0
        r = h[0]
        h[1] = h[0] * 2.0
        return np.sum(r * h)

    check(f, X23)


# ---------------------------------------------------------------------------
# Across loops, branches and helpers
# ---------------------------------------------------------------------------


def test_write_through_a_view_in_a_for_loop():
    def f(x):
        y = x * 1.0
        v = y[1:]
        t = y.T
        for i in range(2):
            v[i] = v[i] * x[0] + t[i]
        return np.sum(y * x) + np.sum(v) + np.sum(t * t)

    check(f, X3)


def test_write_through_a_view_in_a_while_loop():
    def f(x):
        y = x * 1.0
        v = y[1:]
        i = 0
        while i < 2:
            v[i] = v[i] + x[0] * y[0]
            i = i + 1
        return np.sum(y * x)

    check(f, X3)


def test_write_into_the_base_in_a_loop_is_seen_through_its_view():
    def f(x):
        y = x * 1.0
        v = y[1:]
        for i in range(2):
            y[i + 1] = y[i] * 2.0 + np.sum(v)
        return np.sum(v * x[1:])

    check(f, X3)


def test_a_loop_writing_through_a_view_it_makes_carries_the_array():
    def f(x):
        y = x * 1.0
        for i in range(2):
            v = y[i:]
            v[0] = v[1] * 3.0
        return np.sum(y * x)

    check(f, X3)


def test_a_tuple_holding_an_array_written_in_a_loop_sees_the_write():
    def f(x):
        y = x * 1.0
        pair = (y, 2.0)
        for i in range(2):
            y[i] = y[i + 1] * 3.0
        return np.sum(pair[0] * x) * pair[1]

    check(f, X3)


def test_write_through_a_view_in_a_branch():
    def f(x):
        y = x * 1.0
        v = y[1:]
        if x[0] > 0:
            v[0] = 5.0 * x[2]
        else:
            y[0] = 2.0
        return np.sum(y * x) + np.sum(v * v)

    check(f, X3)
    check(f, -X3)


def test_a_helper_writing_into_its_argument_in_a_loop_and_a_branch():
    def double_first(a, n):
        for i in range(n):
            a[i] = a[i] * 2.0
        return 0.0

    def triple_if(a, c):
        if c > 0:
            a[0] = a[1] * 3.0
        return 0.0

    def fill(a, value):
        a[0] = value
        return a

    def f(x):
        y = x * 1.0
        v = y[:2]
        z = double_first(y, 2) + triple_if(y, x[0])
        for i in range(2):
            w = fill(y, x[i] ** 2)
        return np.sum(y * x) + z + np.sum(v * v) + np.sum(w)

    check(f, X3)


def test_a_view_chosen_in_a_branch_is_not_written_through():
    def f(x):
        y = x * 1.0
        if x[0] > 0:
            v = y[1:]
        else:
            v = y[:2]
        v[0] = x[1] * 4.0
        return np.sum(y)

    refused(f, "it comes out of an `if` or a loop", "v[0] = x[1] * 4.0")


def test_a_view_made_in_a_loop_goes_stale_when_its_array_is_written_after():
    def f(x):
        y = x * 1.0
        for i in range(2):
            v = y[i:]
        y[2] = 7.0
        return np.sum(v)

    refused(f, "`v` may be a view of the array written at line", "return np.sum(v)")


def test_a_view_carried_into_the_next_iteration_and_read_is_refused():
    def f(x):
        y = x * 1.0
        v = x[:1] * 1.0
        t = 0.0
        for i in range(2):
            t = t + np.sum(v)
            v = y[i:]
            y[2] = y[2] * 2.0
        return t + np.sum(y)

    refused(f, "holds a view made in an earlier iteration", "for i in range(2):")


def test_a_view_carried_into_the_next_iteration_of_a_loop_that_writes_nothing():
    # issue 12, case 4: the row kept from the iteration before is a view, and nothing
    # in the loop writes into an array, so nothing can show through it
    def f(x):
        last = x[0] * 0.5
        for i in range(x.shape[0]):
            row = x[i]
            if np.sum(row) > 1.0:
                break
            last = row
        return np.sum(last * last)

    check(f, np.array([[0.1, 0.2], [0.3, 0.1], [2.0, 0.5]]))
    check(f, np.array([[0.1, 0.2], [0.3, 0.1], [0.2, 0.1]]))


def test_a_view_reassigned_in_a_loop_that_writes_its_array_is_refused():
    def f(x):
        y = x * 1.0
        v = y[1:]
        for _ in range(2):
            v[0] = v[0] * 2.0
            v = y[:2]
        return np.sum(y)

    refused(f, "`v` is a view of `y`, and `v` is assigned again in this loop", "for _ in")


# ---------------------------------------------------------------------------
# Refused, each at its line
# ---------------------------------------------------------------------------


def test_flatten_is_a_copy_written_freely():
    def f(x):
        y = x * 1.0
        flat = y.flatten()
        flat[0] = 5.0
        return np.sum(y * x) + np.sum(flat * x)

    check(f, X3)


def test_write_through_asarray_is_refused():
    def f(x):
        y = x * 1.0
        a = np.asarray(y)
        a[0] = 5.0
        return np.sum(y)

    refused(f, "`a` may be a view of another array or a copy (`np.asarray`", "a[0] = 5.0")


def test_write_through_ravel_is_refused():
    def f(x):
        y = x * 1.0
        flat = y.ravel()
        flat[0] = 1.0
        return np.sum(y)

    refused(f, "(`np.ravel` makes a view or a copy as the memory layout", "flat[0] = 1.0")


def test_augmented_assignment_through_reshape_is_refused():
    def f(x):
        y = x * 1.0
        s = y.reshape(2, 2)
        s += 1.0
        return np.sum(y)

    refused(f, "`s` may be a view of another array or a copy", "s += 1.0")


def test_write_through_broadcast_to_is_refused():
    def f(x):
        y = x * 1.0
        b = np.broadcast_to(y, (2, 3))
        b[0, 0] = 1.0
        return np.sum(y)

    refused(f, "NumPy makes read-only", "b[0, 0] = 1.0")


def test_write_through_a_view_of_an_argument_is_refused():
    def f(x):
        s = x[1:]
        s[0] = 1.0
        return np.sum(x)

    refused(f, "writing into an argument through `s`", "s[0] = 1.0")


def test_write_through_an_index_known_at_run_time_is_refused():
    def f(x):
        y = x * 1.0
        i = int(x[0, 0] > 0)
        r = y[i]
        r[0] = 1.0
        return np.sum(y)

    refused(f, "an index known only at run time", "r[0] = 1.0")


def test_augmented_assignment_of_an_element_is_refused():
    def f(x):
        y = x * 1.0
        r = y[0]
        r += 1.0
        return np.sum(y)

    refused(f, "an integer index gives a number", "r += 1.0")


def test_reading_a_may_be_view_after_a_write_into_its_base_is_refused():
    def f(x):
        y = x * 1.0
        s = y.reshape(-1)
        y[0] = 5.0
        return np.sum(s)

    refused(f, "`s` may be a view of the array written at line", "return np.sum(s)")


def test_a_may_be_view_that_is_not_read_again_is_fine():
    def f(x):
        y = x * 1.0
        s = y.reshape(-1)
        total = np.sum(s)
        y[0] = 5.0
        return total + np.sum(y * x)

    check(f, X3)


def test_reading_an_element_after_a_write_into_it_is_refused():
    def f(x):
        h = x * 1.0
        r = h[0]
        h[0] = np.tanh(h[1]) * h[0]
        return np.sum(r * r)

    refused(f, "`r` may be a view of the array written", "return np.sum(r * r)")


# ---------------------------------------------------------------------------
# The traits and code generation
# ---------------------------------------------------------------------------


def test_every_view_operator_has_the_trait():
    views = {op.name for op in OPS if op.view is not None}
    assert {
        "getitem",
        "reshape",
        "ravel",
        "transpose",
        "swapaxes",
        "squeeze",
        "expand_dims",
        "broadcast_to",
        "stop_gradient",
    } <= views
    by_name = {op.name: op for op in OPS}
    assert by_name["reshape"].view.kind == "layout" and by_name["ravel"].view.kind == "layout"
    assert not by_name["broadcast_to"].view.writable
    assert by_name["stop_gradient"].view.identity
    for name in ("copy", "astype", "add", "sum", "concatenate"):
        assert by_name[name].view is None, name


@pytest.mark.parametrize(
    "index, kind",
    [
        (((slice(1, None),), True), "always"),
        (((0, slice(None)), False), "always"),
        (((None,), True), "always"),
        (((0,), True), "scalar"),
        (((0, 1), False), "scalar"),
    ],
)
def test_the_view_kind_of_an_index(index, kind):
    from adcompiler.ops.core import view_of

    getitem = next(op for op in OPS if op.name == "getitem")
    x = Value("x")
    node = Node(getitem, [x], {"index": index}, [Value("v")])
    assert getitem.view.kind_for(node.attrs) == kind
    assert view_of(node) is x


def test_codegen_does_not_write_in_place_into_an_array_alive_through_stop_gradient():
    """`s = stop_gradient(y); s1 = setitem(s, ...)` with y read afterwards: s is y's
    memory (stop_gradient returns its input), so the write must copy first. Codegen
    used to write in place, changing y."""
    from adcompiler.codegen.emit import emit_function
    from adcompiler.ops import lookup
    from adcompiler.ops.mutation import SETITEM
    from adcompiler.ops.structure import CONST
    from adcompiler.runtime import stop_gradient
    from adcompiler.ssa import Block, Function

    x = Value("x")
    two, zero = Value("two"), Value("zero")
    y, s, s1, total = Value("y"), Value("s"), Value("s1"), Value("total")
    sum_s1, sum_y = Value("sum_s1"), Value("sum_y")
    nodes = [
        Node(CONST, [], {"value": 2.0}, [two]),
        Node(CONST, [], {"value": 0.0}, [zero]),
        Node(lookup(np.multiply), [x, two], {}, [y]),
        Node(lookup(stop_gradient), [y], {}, [s]),
        Node(SETITEM, [s, zero], {"index": ((0,), True)}, [s1]),
        Node(lookup(np.sum), [s1], {"axis": None, "keepdims": False}, [sum_s1]),
        Node(lookup(np.sum), [y], {"axis": None, "keepdims": False}, [sum_y]),
        Node(lookup(np.add), [sum_s1, sum_y], {}, [total]),
    ]
    for v in (two, zero):
        v.const = nodes[0].attrs["value"] if v is two else 0.0
    fn = Function("f", [x], Block(nodes=nodes), [total])
    emitted = emit_function(fn, "f", "", 0)
    namespace = {"np": np, "stop_gradient": stop_gradient}
    exec(emitted.source, namespace)  # noqa: S102 - the generated code under test
    assert namespace["f"](X3) == pytest.approx(np.sum(X3 * 2.0) * 2 - X3[0] * 2.0)


def test_a_may_be_view_made_stale_in_a_region_is_fine_until_read():
    def f(x):
        y = x * 1.0
        s = y.reshape(-1)
        total = np.sum(s)
        for i in range(2):
            y[i] = y[i + 1] * 2.0
        if x[0] > 0:
            y[2] = 1.0
        return total + np.sum(y * x)

    check(f, X3)
    check(f, -X3)

    def g(x):
        y = x * 1.0
        s = y.reshape(-1)
        for i in range(2):
            y[i] = y[i + 1] * 2.0
        return np.sum(s)

    refused(g, "`s` may be a view of the array written", "return np.sum(s)")


def test_an_array_appended_to_a_list_and_written_is_refused():
    def f(x):
        y = x * 1.0
        rows = [y]
        total = 0.0
        for i in range(2):
            rows.append(y[1:])
            y[i] = x[i] * 2.0
            total = total + np.sum(rows[-1])
        return total

    refused(f, "the array `y` writes into is kept in a list", "y[i] = x[i] * 2.0")

    def later(x):
        y = x * 1.0
        rows = [x]
        for i in range(2):
            y[i] = x[i] * 2.0
            rows.append(y[1:])
        return np.sum(np.stack(rows))

    refused(later, "appends an array (or a view of it) to a list and writes into", "for i in")

    def g(x):
        y = x * 1.0
        h = y[:2]
        rows = [x]
        for _ in range(2):
            rows.append(h)
        y[0] = 5.0
        return np.sum(np.stack(rows))

    refused(g, "is kept in a list", "y[0] = 5.0")

    def ok(x):
        y = x * 1.0
        rows = [x]
        for i in range(2):
            y[i] = x[i] * 2.0
            rows.append(y.copy())
        return np.sum(np.stack(rows) * 3.0)

    check(ok, X3)


def test_a_row_read_before_a_write_into_the_next_row_is_kept():
    """The recurrent pattern: `h = H[t]` (a row, or a number) and then `H[t + 1] = ...`,
    which provably misses it, in a loop; and `H[t - 1]` as well."""

    def f(x):
        H = np.zeros((4, 3))
        H[0] = x
        for t in range(3):
            h = H[t]
            H[t + 1] = np.tanh(h * 0.5 + x)
            total = np.sum(h * h)
        return np.sum(H) + total

    check(f, X3)

    def g(x):
        H = np.zeros((4, 3))
        H[0] = x
        for t in range(1, 4):
            h = H[t - 1]
            H[t] = np.sin(h) + x
            total = np.sum(h)
        return np.sum(H * H) + total

    check(g, X3)

    def same_row(x):
        H = np.zeros((4, 3))
        H[0] = x
        for t in range(3):
            h = H[t]
            H[t] = np.tanh(h)
            total = np.sum(h)
        return total

    refused(same_row, "`h` may be a view of the array written", "total = np.sum(h)")


def test_a_loop_variable_used_again_in_a_later_loop():
    """Found by a random program: the second loop's target was taken for a name the
    loop changed without carrying it."""

    def f(x):
        y = x * 1.0
        for i in range(2):  # noqa: B007 - `i` unread: undefined after the loop
            y[1:, 0] = x[2, 2] * 2.0
        v2 = y[::2]
        y[0, 0] = np.sin(np.sum(v2))
        for i in range(2):  # noqa: B007
            v3 = v2[1:]
            v4 = v3[1:]
        return np.sum(y * x) + np.sum(v2 * 0.3) + np.sum(v3 * 0.4) + np.sum(v4 * 0.5)

    check(f, np.linspace(-0.9, 1.2, 12).reshape(3, 4))


# ---------------------------------------------------------------------------
# Random programs of views and writes: NumPy's values, or a refusal
# ---------------------------------------------------------------------------

_VIEWS_2D = ["{b}[1:]", "{b}.T", "{b}[:, 1:3]", "{b}[0]", "np.swapaxes({b}, 0, 1)",
             "{b}[::2]", "np.reshape({b}, (-1,))", "{b}[None]"]  # fmt: skip
_VIEWS_1D = ["{b}[1:]", "{b}[::2]", "{b}[0:2]", "np.expand_dims({b}, 0)"]


def _random_program(seed: int) -> tuple[str, bool]:
    """A function of x (3, 4) that takes views of an array, writes through them and into
    it, in loops and branches; and whether it uses stop_gradient."""
    import random

    rng = random.Random(seed)
    sg = rng.random() < 0.3
    lines, ndim = ["y = x * 1.0"], {"y": 2}

    def value():
        n = rng.choice(list(ndim))
        return rng.choice(
            [f"np.sum({n}) * 0.1", f"x[{rng.randrange(3)}, {rng.randrange(4)}] * 2.0", "1.5"]
        )

    def statement(depth, pad):
        kind, base = rng.random(), rng.choice(list(ndim))
        if ndim[base] == 0:
            return
        if kind < 0.35:
            code = rng.choice(_VIEWS_2D if ndim[base] >= 2 else _VIEWS_1D).format(b=base)
            if sg and rng.random() < 0.15:
                code = f"ad.stop_gradient({base})"
            d = ndim[base] - 1 if code.endswith("[0]") else ndim[base]
            d = 1 if "reshape" in code else d + ("None" in code or "expand" in code)
            if d <= 3:
                name = f"v{len(ndim)}"
                ndim[name] = d
                lines.append(f"{pad}{name} = {code}")
        elif kind < 0.75:
            index = ", ".join(["0"] * ndim[base]) if rng.random() < 0.5 else "0"
            lines.append(f"{pad}{base}[{index}] = {value()}")
        elif kind < 0.85:
            lines.append(f"{pad}{base} += {value()}")
        elif depth == 0:
            head = "for i in range(2):" if kind < 0.93 else "if x[0, 0] > 0:"
            lines.append(f"{pad}{head}")
            for _ in range(rng.randrange(1, 4)):
                statement(1, pad + "    ")
            lines.append(f"{pad}    y[1, 1] = y[1, 1] * 1.1")

    for _ in range(rng.randrange(3, 9)):
        statement(0, "")
    total = " + ".join(f"np.sum({n} * {k + 1})" for k, n in enumerate(ndim))
    body = "\n".join("    " + line for line in [*lines, f"return {total}"])
    return f"def f(x):\n{body}\n", sg


@pytest.mark.parametrize("seed", range(24))
def test_random_programs_of_views(seed, tmp_path):
    import importlib.util

    source, uses_stop_gradient = _random_program(seed)
    path = tmp_path / f"views_{seed}.py"
    path.write_text(f"import numpy as np\nimport adcompiler as ad\n\n\n{source}")
    spec = importlib.util.spec_from_file_location(f"views_{seed}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = np.linspace(-0.9, 1.2, 12).reshape(3, 4)
    try:
        expected = module.f(x.copy())
    except Exception:  # noqa: BLE001 - NumPy or Python refuses it (a read-only view, ...)
        return
    try:
        vg = ad.value_and_grad(module.f)
    except ad.UnsupportedSyntaxError as err:
        assert all(d.loc is not None for d in err.diagnostics)
        return
    if uses_stop_gradient:  # finite differences see through stop_gradient: values only
        for _ in range(3):
            np.testing.assert_allclose(vg(x.copy())[0], expected, rtol=1e-12)
    else:
        check(module.f, x)


def test_augmented_assignment_of_an_array_a_tuple_or_the_caller_holds_is_refused():
    def f(x):
        w = x * 1.0
        params = (w, 2.0)
        w -= 0.5
        return np.sum(params[0])

    refused(f, "`w` and `params` hold the same value", "w -= 0.5")

    def bump(a):
        a += 1.0
        return np.sum(a)

    def g(x):
        y = x * 1.0
        s = bump(y)
        return np.sum(y) + s

    err = refused(g, "in the call to `bump`", "s = bump(y)")
    assert "`a` and `y` hold the same value" in str(err)


# ---------------------------------------------------------------------------
# Writes into arguments and into arrays two names hold, across loops and `if`s
# (fuzz findings write_into_argument_in_loop, augassign_container_item_aliasing_argument)
# ---------------------------------------------------------------------------


def test_a_write_into_an_argument_in_a_loop_is_refused():
    def direct(b):
        for i in range(2):
            b[i] = 2.0 * b[i]
        return np.sum(np.tanh(b))

    refused(direct, "writing into the argument `b`", "b[i] = 2.0 * b[i]")

    def through_a_name(b):
        z = b
        for i in range(2):
            z[i] = 2.0 * z[i]
        return np.sum(np.tanh(b))

    refused(through_a_name, "`z` is the argument `b`", "z[i] = 2.0 * z[i]")

    def augmented(b):
        v = b
        for _i in range(2):
            v += 1.0
        return np.sum(b * b)

    refused(augmented, "`v` is the argument `b`", "v += 1.0")

    def in_a_while_loop(b):
        i = 0
        while i < 2:
            b += 1.0
            i = i + 1
        return np.sum(b * b)

    refused(in_a_while_loop, "`b` is an argument", "b += 1.0")

    def on_a_later_iteration(b):
        z = b * 1.0
        for i in range(2):
            z[i] = z[i] * 3.0  # the second iteration writes into `b`
            z = b
        return np.sum(z * b)

    refused(on_a_later_iteration, "may be the argument `b`", "z[i] = z[i] * 3.0")


def test_an_argument_augmented_in_place_is_refused():
    def f(x):
        x += 1.0
        return np.sum(x * x)

    refused(f, "`x` is an argument: `x += ...` on an array", "x += 1.0")

    def g(x):
        x = x + 1.0  # a new array: fine
        return np.sum(x * x)

    check(g, X3)


def test_a_value_out_of_an_if_or_a_loop_that_may_be_an_argument_is_not_written():
    def chosen(x):
        z = x if np.sum(x) > 0 else x * 2.0
        z[0] = 1.0
        return np.sum(z * x)

    refused(chosen, "`z` may be the argument `x`", "z[0] = 1.0")

    def maybe_no_iteration(x):
        z = x
        for _i in range(x.shape[0] - 3):
            z = z * 2.0
        z[0] = 1.0
        return np.sum(z * x)

    refused(maybe_no_iteration, "`z` may be the argument `x`", "z[0] = 1.0")

    def at_least_one_iteration(x):  # z is a new array after the loop
        z = x
        for _i in range(2):
            z = z * 2.0
        z[0] = 1.0
        return np.sum(z * x)

    check(at_least_one_iteration, X3)


def test_two_names_of_one_array_written_in_a_loop_or_a_branch_both_see_it():
    def in_a_branch(x):
        b = x.copy()
        z = b
        if np.sum(x) > 0:
            z[0] = 2.0 * z[0] * x[2]
        z[1] = 3.0 * z[1]
        return np.sum(np.tanh(b)) + np.sum(z * x)

    check(in_a_branch, X3)
    check(in_a_branch, -X3)

    def in_a_loop(x):
        b = x.copy()
        z = b
        for i in range(2):
            z[i] = 2.0 * z[i] * x[i + 1]
        return np.sum(np.tanh(b)) + np.sum(z * x)

    check(in_a_loop, X3)

    def chosen_in_one_branch(x):
        b = x * 1.0
        z = x * 2.0
        if np.sum(x) > 0:
            z = b
        z[0] = 1.0  # writes into `b` where the branch ran
        return np.sum(b * x)

    refused(chosen_in_one_branch, "`z` may hold the same array as `b`", "z[0] = 1.0")


def test_a_name_of_an_array_another_name_holds_is_written_after_it_is_assigned_again():
    def after(x):
        h0 = x * 1.0
        h = h0
        for _i in range(2):
            h = np.tanh(h)
            h[0] = 0.5 * h[1]  # a new array: `h0` does not change
        return np.sum(h * x) + np.sum(h0)

    check(after, X3)

    def before(x):
        h0 = x * 1.0
        h = h0
        for _i in range(2):
            h[0] = 0.5 * h[1]  # the first iteration writes into `h0`
            h = np.tanh(h)
        return np.sum(h * x) + np.sum(h0)

    refused(before, "`h` may hold the same array as `h0`", "h[0] = 0.5 * h[1]")


def test_augmented_assignment_of_a_dict_or_list_item_writes_into_its_array():
    def of_an_argument(x):
        d = {"a": x}
        d["a"] += 1.0
        return np.sum(x * x)

    refused(of_an_argument, "`d['a']` is the argument `x`", 'd["a"] += 1.0')

    def list_item(x):
        ls = [x, x]
        ls[0] += 1.0
        return np.sum(x * x)

    refused(list_item, "`ls[0]` is the argument `x`", "ls[0] += 1.0")

    def another_name(x):
        y = x * 1.0
        ls = [y, x]
        ls[0] += x
        return np.sum(y * x)

    refused(another_name, "`ls[0]` and `y` hold the same value", "ls[0] += x")

    def in_a_loop(x):
        y = x * 1.0
        d = {"a": y}
        for _i in range(2):
            d["a"] += x
        return np.sum(y * x)

    refused(in_a_loop, "`d['a']` may hold the same array as `y`", 'd["a"] += x')

    def structured(p, x):
        p["W"] += 1.0
        return np.sum(p["W"] * x)

    with pytest.raises(ad.UnsupportedSyntaxError, match="writing into an argument"):
        ad.grad(structured)({"W": X3.copy()}, X3)

    def own_items(x):  # arrays only the dict or list holds: a new value, as before
        d = {"a": x * 1.0}
        ls = [x * 2.0, x]
        d["a"] += x
        ls[0] += x
        for _i in range(2):
            d["a"] += x * ls[0]
        return np.sum(d["a"] * x) + np.sum(ls[0] * ls[1])

    check(own_items, X3)

    def through_a_view(x):  # the item's named view sees the write
        d = {"a": x * 1.0}
        v = d["a"][1:]
        d["a"] += x
        return np.sum(v * x[1:]) + np.sum(d["a"] * d["a"])

    check(through_a_view, X3)


def test_an_adjoint_summed_in_place_in_a_nested_loop_starts_from_a_copy():
    """Fuzz seed 11, program 87: the adjoint of `A` starts as a read-only broadcast and is
    summed into in place in an inner loop; the outer loop must copy it first."""

    def f(x, A):
        for _i in range(1, 3):
            acc = x
            j = 0
            while j < 2 and np.sum(acc) < 40.0:
                j = j + 1
                acc = sum([acc, A])
        return np.sum(np.mean(A)) + np.sum(acc * acc)

    x, A = X4, np.linspace(-1.0, 1.0, 16).reshape(4, 4)
    g = ad.grad(f, wrt=("x", "A"))
    expected = (_fd(lambda v: f(v, A), x), _fd(lambda a: f(x, a), A))
    for _ in range(3):
        got = g(x.copy(), A.copy())
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-6, atol=1e-8)
