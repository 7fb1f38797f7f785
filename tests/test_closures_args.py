"""Issue 19: nested functions and the objects they share with the function around them,
expression statements, function attributes, custom rules deep in helpers.

Every program is checked against Python's own value and central differences in every
mode (value_and_grad, jvp, hvp, both Jacobian modes), three calls each so that the
specialized version runs too; what cannot be followed exactly is refused with a located
error.
"""

import numpy as np
import pytest

import adcompiler as ad
from adcompiler.errors import WrtError

CALLS = 3
X = np.array([1.0, 2.0, 3.0, 4.0, 0.5])


def _fd(f, x, eps=1e-6):
    out = np.zeros_like(x)
    for k in range(x.size):
        e = np.zeros_like(x)
        e[k] = eps
        out[k] = (f(x + e) - f(x - e)) / (2 * eps)
    return out


def check_every_mode(f, x=X):
    want = f(x.copy())
    grad = _fd(f, x)
    v = np.linspace(0.5, 1.5, x.size)
    eps = 1e-4
    want_hv = (_fd(f, x + eps * v) - _fd(f, x - eps * v)) / (2 * eps)
    for _ in range(CALLS):
        value, g = ad.value_and_grad(f)(x)
        np.testing.assert_allclose(value, want, rtol=1e-12)
        np.testing.assert_allclose(g, grad, rtol=1e-6, atol=1e-8)
        value, t = ad.jvp(f)(x, v)
        np.testing.assert_allclose(value, want, rtol=1e-12)
        np.testing.assert_allclose(t, grad @ v, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(ad.hvp(f)(x, v), want_hv, rtol=1e-4, atol=1e-5)
        for mode in ("forward", "reverse"):
            np.testing.assert_allclose(
                ad.jacobian(f, mode=mode)(x), grad, rtol=1e-6, atol=1e-8
            )


# -- the issue's program, and writes into an enclosing list, dict, array --------------


def issue_counter(x):
    idx = [0]

    def take(n):
        col = x[idx[0] : idx[0] + n]
        idx[0] += n
        return col

    cols = [take(2) for i in range(2)]
    return np.sum(cols[1] * cols[1])


def list_item_twice(x):
    idx = [0]

    def take(n):
        col = x[idx[0] : idx[0] + n]
        idx[0] += n
        return col

    a = take(1)
    b = take(3)
    return np.sum(a * b * b)


def list_item_loop(x):
    idx = [0]

    def take(n):
        col = x[idx[0] : idx[0] + n]
        idx[0] = idx[0] + n
        return col

    s = 0.0
    for i in range(2):
        s = s + np.sum(take(2) ** 2) * (i + 1)
    return s


def list_item_from_nested(x):
    idx = [0]

    def take(n):
        col = x[idx[0] : idx[0] + n]
        idx[0] += n
        return col

    def take_two():
        return take(1) * take(1)

    a = take_two()
    b = take_two()
    return np.sum(a * b)


def list_array_item(x):
    acc = [x * 0.0]

    def add(v):
        acc[0] = acc[0] + v * v

    add(x)
    add(np.sin(x))
    return np.sum(acc[0])


def dict_item(x):
    state = {"t": 0.0}

    def step(v):
        state["t"] = state["t"] + np.sum(v**2)
        return v

    step(x)
    step(x * 2.0)
    return state["t"]


def dict_augmented(x):
    state = {"t": 0.0}

    def step(v):
        state["t"] += np.sum(v**2)
        return 1.0

    a = step(x)
    b = step(x * 2.0)
    return state["t"] * (a + b)


def dict_loop(x):
    st = {"s": 0.0}

    def step(v):
        st["s"] = st["s"] + v * v

    for i in range(4):
        step(x[i])
    return st["s"]


def dict_comprehension(x):
    seen = {"n": 0}

    def take():
        seen["n"] += 1
        return x[seen["n"]]

    vals = [take() for _ in range(3)]
    return vals[0] * vals[1] + vals[2]


def array_item(x):
    buf = np.zeros(3)

    def put(i, v):
        buf[i] = v
        return 0.0

    a = put(0, x[0] * x[1])
    b = put(2, np.sin(x[2]))
    return np.sum(buf**2) + a + b


def array_item_loop(x):
    buf = np.zeros(4)

    def put(i, v):
        buf[i] = v

    for i in range(4):
        put(i, x[i] ** 2)
    return np.sum(buf * x[:4])


def array_item_comprehension(x):
    buf = np.zeros(3)

    def put(i):
        buf[i] = np.sin(x[i])
        return i

    idx = [put(i) for i in range(3)]
    return np.sum(buf**2) + len(idx)


def append_enclosing(x):
    out = []

    def push(v):
        out.append(v * v)
        return v

    push(x[0])
    push(x[1] + x[2])
    return out[0] + out[1] * 3.0


def append_loop(x):
    out = []

    def push(v):
        out.append(v * v)

    for i in range(3):
        push(x[i])
    return np.sum(np.stack(out) * x[:3])


def append_comprehension(x):
    out = []

    def push(v):
        out.append(v * v)
        return v

    vals = [push(x[i]) for i in range(3)]
    return out[2] * vals[1] + out[0]


def lambda_append(x):
    out = []
    push = lambda v: out.append(v * 2.0)  # noqa: E731
    push(x[0])
    push(x[1])
    return out[0] * out[1]


def nonlocal_counter(x):
    k = 0

    def take():
        nonlocal k
        k += 1
        return x[k]

    a = take()
    b = take()
    return a * b


def nonlocal_loop(x):
    k = 0

    def take():
        nonlocal k
        k += 1
        return x[k]

    s = 0.0
    for i in range(3):
        s = s + take() * x[i]
    return s


def nonlocal_comprehension(x):
    k = 0

    def take():
        nonlocal k
        k += 1
        return x[k] ** 2

    vals = [take() for _ in range(3)]
    return vals[0] + vals[1] * vals[2] + k


def nonlocal_from_nested(x):
    k = 0

    def take():
        nonlocal k
        k += 1
        return x[k]

    def peek():
        return x[k] * 10.0

    def both():
        a = take()
        return a * peek()

    return both() + both()


def nonlocal_two_levels(x):
    k = 0

    def outer():
        def inner():
            nonlocal k
            k += 1

        inner()
        inner()
        return x[k]

    return outer() * x[k]


def nonlocal_array(x):
    acc = np.zeros(2)

    def add(v):
        nonlocal acc
        acc += v * v

    add(x[:2])
    add(x[2:4])
    return np.sum(acc * x[:2])


# -- Python's scoping rules --------------------------------------------------------


def lexical_scope(x):
    s = 1.0

    def g():
        return x * s  # f's `s`, not the caller's

    def h():
        s = 2.0
        return g() * s

    return np.sum(h())


def factory_list(x):
    def make():
        c = [0]

        def inc():
            c[0] += 1
            return x[c[0]]

        return inc

    inc = make()
    a = inc()
    b = inc()
    return a * b


def factory_array(x):
    def make():
        buf = np.zeros(3)

        def put(i, v):
            buf[i] = v
            return buf

        return put

    put = make()
    put(0, x[0] * 2.0)
    b = put(1, x[1] ** 2)
    return np.sum(b * b)


def _helper_writes(lst, v):
    lst[0] = v * 2.0


def module_helper_writes(x):
    lst = [x[0], x[1]]
    _helper_writes(lst, x[2])
    return lst[0] * lst[1]


def _helper_appends(lst, v):
    lst.append(v * 2.0)


def module_helper_appends(x):
    lst = [x[0]]
    _helper_appends(lst, x[2])
    return lst[0] * lst[-1]


def module_helper_appends_in_loop(x):
    lst = []
    for i in range(3):
        _helper_appends(lst, x[i])
    return np.sum(np.stack(lst) ** 2)


def two_empty_lists(x):
    a = []
    b = []
    a.append(x[0])
    b.append(x[1])
    return a[0] * b[0] * len(a) * len(b)


def list_in_a_dict(x):
    lst = [x[0], x[1]]
    d = {"l": lst}
    lst[0] = x[2]
    return d["l"][0] * 1.0


def list_plus_empty(x):
    a = [x[0]]
    b = a + []
    b.append(x[1])
    return a[0] * len(a) + b[1]


# -- writes inside an `if` or a loop, of the nested function or of the enclosing one ----


def write_in_nested_if(x):
    idx = [0]

    def take(v):
        if np.sum(v) > 0:
            idx[0] = 1
        return v

    take(x)
    return x[idx[0]] * x[0]


def outer_if(x):
    idx = [0]

    def take(n):
        idx[0] += n
        return x[idx[0]]

    a = 1.0
    if np.sum(x) > 0:
        a = take(1)
    return a * x[idx[0] + 1]


def outer_while(x):
    idx = [0]

    def take():
        idx[0] += 1
        return x[idx[0]]

    s = 0.0
    while s < 4.0:
        s = s + take()
    return s * x[0]


def inner_loop_append(x):
    out = []

    def push_all():
        for i in range(3):
            out.append(x[i] * 2.0)

    push_all()
    return np.sum(np.stack(out) ** 2)


def inner_loop_item(x):
    acc = [0.0]

    def add_all():
        for i in range(3):
            acc[0] = acc[0] + x[i] ** 2

    add_all()
    return acc[0]


def inner_loop_array(x):
    buf = np.zeros(3)

    def fill():
        for i in range(3):
            buf[i] = x[i] ** 2

    fill()
    return np.sum(buf * x[:3])


def inner_if_dict(x):
    d = {"a": 1.0}

    def maybe():
        if x[0] > 0:
            d["a"] = x[1]

    maybe()
    return d["a"] * x[2]


def _helper_if_list(lst, v):
    if v > 0:
        lst[0] = v


def module_helper_if(x):
    lst = [x[0]]
    _helper_if_list(lst, x[1])
    return lst[0] * x[2]


def closure_reads_after_mutation(x):
    lst = [x[0]]

    def last():
        return lst[-1]

    lst.append(x[1] * 3.0)
    return last() * 2.0


def loop_in_loop(x):
    out = []

    def push_pair(i):
        for j in range(2):
            out.append(x[i] * (j + 1.0))

    for i in range(2):
        push_pair(i)
    return np.sum(np.stack(out) ** 2)


def dict_in_nested_loop_twice(x):
    st = {"s": 0.0}

    def add_all(k):
        for i in range(3):
            st["s"] = st["s"] + x[i] * k

    add_all(1.0)
    add_all(x[4])
    return st["s"] ** 2


def nonlocal_in_outer_loop(x):
    t = 0.0

    def add(v):
        nonlocal t
        t = t + v

    for i in range(3):
        add(x[i] ** 2)
    return t * x[3]


def _apply_twice(fn):
    a = fn()
    return a * fn()


def passed_to_a_helper(x):
    idx = [0]

    def take():
        idx[0] += 1
        return x[idx[0]]

    s = _apply_twice(take)
    return s * x[idx[0]]


def comprehension_variable_is_its_own(x):
    i = 1
    vals = [x[i] for i in range(2)]
    return vals[0] * vals[1] + x[i]


# -- expression statements -------------------------------------------------------------


def thrown_away(x):
    np.sum(x)
    y = x * 2.0
    np.sin(y)
    return np.sum(y**2)


PROGRAMS = [
    issue_counter,
    list_item_twice,
    list_item_loop,
    list_item_from_nested,
    list_array_item,
    dict_item,
    dict_augmented,
    dict_loop,
    dict_comprehension,
    array_item,
    array_item_loop,
    array_item_comprehension,
    append_enclosing,
    append_loop,
    append_comprehension,
    lambda_append,
    nonlocal_counter,
    nonlocal_loop,
    nonlocal_comprehension,
    nonlocal_from_nested,
    nonlocal_two_levels,
    nonlocal_array,
    lexical_scope,
    factory_list,
    factory_array,
    module_helper_writes,
    module_helper_appends,
    module_helper_appends_in_loop,
    two_empty_lists,
    list_in_a_dict,
    list_plus_empty,
    thrown_away,
    write_in_nested_if,
    outer_if,
    outer_while,
    inner_loop_append,
    inner_loop_item,
    inner_loop_array,
    inner_if_dict,
    module_helper_if,
    closure_reads_after_mutation,
    comprehension_variable_is_its_own,
    passed_to_a_helper,
    loop_in_loop,
    dict_in_nested_loop_twice,
    nonlocal_in_outer_loop,
]


@pytest.mark.parametrize("f", PROGRAMS, ids=lambda f: f.__name__)
def test_every_mode_as_python_computes_it(f):
    check_every_mode(f)


def test_issue_example_value():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    value, g = ad.value_and_grad(issue_counter)(x)
    assert value == 25.0
    np.testing.assert_allclose(g, [0.0, 0.0, 6.0, 8.0])


# -- refused, with a located error ---------------------------------------------------------


def _rebinds_and_writes(lst, v):
    if v > 0:
        lst[0] = v
        lst = [v * 2.0]
    return lst[0]


def rebind_and_write(x):
    lst = [x[0]]
    y = _rebinds_and_writes(lst, x[1])
    return lst[0] * y


def nonlocal_in_nested_loop(x):
    k = 0

    def take():
        nonlocal k
        for _ in range(2):
            k = k + 1
        return x[k]

    return take()


def unbound_local(x):
    k = 1

    def g():
        y = x[k]  # noqa: F823 - Python raises UnboundLocalError
        k = 2  # noqa: F841
        return y

    return g()


def _apply_in_loop(fn, n):
    s = 0.0
    for _ in range(n):
        s = s + fn()
    return s


def passed_to_a_helper_loop(x):
    idx = [0]

    def take():
        idx[0] += 1
        return x[idx[0]]

    s = _apply_in_loop(take, 2)
    return s * x[idx[0]]


def _counted(x):
    return np.sum(x)


_counted.calls = 0


def function_attribute(x):
    _counted.calls += 1
    return _counted(x)


def setitem_in_lambda(x):
    idx = [0]
    bump = lambda n: idx.__setitem__(0, idx[0] + n)  # noqa: E731
    bump(1)
    return x[idx[0]] ** 2


@pytest.mark.parametrize(
    "f, message, text",
    [
        (rebind_and_write, "both writes into it and assigns the name again", "if v > 0"),
        (passed_to_a_helper_loop, "another function holds too", "idx[0] += 1"),
        (nonlocal_in_nested_loop, "(nonlocal) is assigned inside", "k = k + 1"),
        (unbound_local, "may be undefined", "y = x[k]"),
        (function_attribute, "assigning to an attribute", "_counted.calls += 1"),
        (setitem_in_lambda, "__setitem__", "bump = lambda"),
    ],
    ids=lambda p: getattr(p, "__name__", None),
)
def test_refused_where_it_cannot_be_followed(f, message, text):
    with pytest.raises(ad.UnsupportedSyntaxError) as err:
        ad.grad(f)(X)
    assert message in str(err.value)
    assert text in str(err.value)  # the line, with a caret under it
    assert "test_closures_args.py:" in str(err.value)


def test_nonlocal_in_the_function_differentiated_is_refused():
    k = 0

    def f(x):
        nonlocal k
        k = k + 1
        return x[0] * 2.0

    with pytest.raises(ad.UnsupportedSyntaxError) as err:
        ad.grad(f)(X)
    assert "nonlocal" in str(err.value)


# -- expression statements keep their effects -----------------------------------------


def _shout(v):
    print("called")
    return v


def print_in_thrown_away(x):
    _shout(x)
    return np.sum(x**2)


def test_thrown_away_call_keeps_its_print(capsys):
    g = ad.value_and_grad(print_in_thrown_away)
    for _ in range(CALLS):
        value, grad = g(X)
        np.testing.assert_allclose(grad, 2 * X)
    assert capsys.readouterr().out.count("called") == CALLS


# -- ad.nondifferentiable deep in helpers ---------------------------------------------


def _floor3(v):
    return np.floor(v * 3.0)


ad.nondifferentiable(_floor3)


def _level2(v):
    return v * _floor3(v)


def _level1(v):
    return np.sin(_level2(v))


def nondiff_two_levels_down(x):
    return np.sum(_level1(x) ** 2)


def test_nondifferentiable_two_levels_down():
    check_every_mode(nondiff_two_levels_down, np.array([0.3, 0.7, 1.2, 0.9]))


# -- *args: parameters and unpacking ---------------------------------------------------


def _layers(x, *ws):
    h = x
    for w in ws:
        h = np.tanh(h * w)
    return h


def star_call(x):
    ws = (x[1], x[2])
    return np.sum(_layers(x[:2], *ws) ** 2)


def star_call_direct(x):
    return np.sum(_layers(x, 0.5, x[0]) ** 2)


def star_in_list(x):
    a = [x[0], x[1]]
    return np.sum(np.stack([*a, x[2] * 2.0]) ** 2)


def star_in_concatenate(x):
    parts = [x[:2], x[2:3]]
    return np.sum(np.concatenate([*parts, x[3:] ** 2]) * x)


def nested_varargs(x):
    def total(*vs):
        s = 0.0
        for v in vs:
            s = s + v * v
        return s

    return total(x[0], x[1], x[2]) * total() + total(*[x[3], x[4]])


def keyword_unpacking(x):
    opts = {"axis": 0}
    return np.sum(np.cumsum(x, **opts) ** 2)


def star_in_tuple(x):
    t = (x[0], x[1])
    a, b, c = (*t, x[2])
    return a * b * c


@pytest.mark.parametrize(
    "f",
    [
        star_call,
        star_call_direct,
        star_in_list,
        star_in_concatenate,
        nested_varargs,
        keyword_unpacking,
        star_in_tuple,
    ],
    ids=lambda f: f.__name__,
)
def test_star_unpacking(f):
    check_every_mode(f)


def packed_loss(x, *ws):
    h = x
    for w in ws:
        h = np.tanh(h @ w)
    return np.sum(h**2)


def only_packed(*params):
    a, b = params
    return np.sum(a * b**2)


def _fd_leaf(f, args, i, eps=1e-6):
    """Central differences of f(*args) with respect to the array args[i]."""
    out = np.zeros_like(args[i])
    for k in range(args[i].size):
        up, down = list(args), list(args)
        e = np.zeros_like(args[i])
        e.flat[k] = eps
        up[i], down[i] = args[i] + e, args[i] - e
        out.flat[k] = (f(*up) - f(*down)) / (2 * eps)
    return out


def test_packed_parameters():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3))
    w1, w2 = rng.standard_normal((3, 3)), rng.standard_normal((3, 2))
    args = (x, w1, w2)
    want = [_fd_leaf(packed_loss, args, i) for i in range(3)]
    vs = (rng.standard_normal((3, 3)), rng.standard_normal((3, 2)))
    for _ in range(CALLS):
        g = ad.grad(packed_loss, wrt="ws")(*args)
        assert isinstance(g, tuple) and len(g) == 2
        for got, expected in zip(g, want[1:]):
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)
        value, (gx, gws) = ad.value_and_grad(packed_loss, wrt=("x", "ws"))(*args)
        assert value == packed_loss(*args)
        np.testing.assert_allclose(gx, want[0], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(gws[1], want[2], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(ad.grad(packed_loss)(*args), want[0], rtol=1e-6, atol=1e-8)
        _, tangent = ad.jvp(packed_loss, wrt="ws")(*args, vs)
        expected = np.sum(want[1] * vs[0]) + np.sum(want[2] * vs[1])
        np.testing.assert_allclose(tangent, expected, rtol=1e-6)
        hv = ad.hvp(packed_loss, wrt="ws")(*args, vs)
        grad = ad.grad(packed_loss, wrt="ws")
        eps = 1e-5
        plus = grad(x, w1 + eps * vs[0], w2 + eps * vs[1])
        minus = grad(x, w1 - eps * vs[0], w2 - eps * vs[1])
        for got, p, m in zip(hv, plus, minus):
            np.testing.assert_allclose(got, (p - m) / (2 * eps), rtol=1e-4, atol=1e-6)
        a, b = w1, 2.0 * w1
        ga, gb = ad.grad(only_packed, wrt="params")(a, b)
        np.testing.assert_allclose(ga, b**2)
        np.testing.assert_allclose(gb, 2 * a * b)


def test_star_of_a_run_time_value_is_refused():
    def f(x):
        return np.sum(np.stack([*x]))

    with pytest.raises(ad.UnsupportedSyntaxError) as err:
        ad.grad(f)(X)
    assert "`*x`" in str(err.value) and "known when compiling" in str(err.value)


def test_packed_parameters_elsewhere():
    import functools

    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3))
    w1, w2 = rng.standard_normal((3, 3)), rng.standard_normal((3, 2))
    ad.check_grad(packed_loss, (x, w1, w2), wrt=("x", "ws"))
    _, g = ad.vjp(packed_loss, wrt="ws")(x, w1, w2, 1.0)
    np.testing.assert_allclose(g[0], ad.grad(packed_loss, wrt="ws")(x, w1, w2)[0])
    hess = ad.hessian(packed_loss)(x, w1, w2)  # with respect to x: fine
    assert hess.shape == (2, 3, 2, 3)
    for transform in (ad.hessian, ad.jacobian):
        with pytest.raises(WrtError, match=r"`\*args` parameter"):
            transform(packed_loss, wrt="ws")(x, w1, w2)
    with pytest.raises(TypeError, match=r"`\*args` parameter"):
        ad.grad(functools.partial(packed_loss, x))(w1, w2)
