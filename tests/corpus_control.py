"""Corpus for issue 3: control flow, containers, calls and mutation in reverse mode.

Every function here is scalar-valued and small. The ``@spec(...)`` decorator above
a function says which inputs to draw and what to differentiate with respect to;
stack several to check several input sets (for instance one per branch). Argument
values in a spec:

- ``A(3, 4)``: a float64 array of that shape, normal with standard deviation 0.5;
  ``A(3, lo=0.5, hi=1.5)`` draws uniformly instead; ``Pos(3)`` and ``Neg(3)`` are
  uniform in [0.5, 1.5] and [-1.5, -0.5] (for a condition such as
  ``np.sum(x) > 0`` that must be clearly true or clearly false);
- a dict, list or tuple: the same structure, its leaves built recursively;
- anything else (ints, floats, bools, strings, None, arrays): passed as is
  (arrays are copied).

Arguments not named in a spec take their defaults. ``wrt`` is what the test passes
to ``adcompiler.grad``; the default is ``"x"``. `cases()` lists everything, and
`build(case)` draws a case's arguments (always the same for the same case).

The decorator is plain Python that returns the function unchanged; adcompiler
reads only the function's body.
"""

from __future__ import annotations

import copy
import inspect
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests import corpus_control_helpers as helpers
from tests.corpus_control_helpers import dense, squared_norm

# ---------------------------------------------------------------------------
# The spec machinery
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class A:
    """A random float64 array (``A()`` is a 0-d array)."""

    shape: tuple
    lo: float | None = None
    hi: float | None = None

    def __init__(self, *shape: int, lo: float | None = None, hi: float | None = None):
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        if self.lo is None:
            return 0.5 * rng.standard_normal(self.shape)
        return rng.uniform(self.lo, self.hi, self.shape)


def Pos(*shape: int) -> A:
    return A(*shape, lo=0.5, hi=1.5)


def Neg(*shape: int) -> A:
    return A(*shape, lo=-1.5, hi=-0.5)


@dataclass
class Case:
    """One input set for one corpus function."""

    fn: Any
    args: dict
    wrt: Any = "x"
    label: str = ""
    category: str = ""

    @property
    def id(self) -> str:
        return f"{self.fn.__name__}[{self.label}]" if self.label else self.fn.__name__


SPECS: dict[str, list[Case]] = {}
_category = ""


def category(name: str) -> None:
    """Set the category of the functions that follow (the banner above them)."""
    global _category
    _category = name


def spec(wrt: Any = "x", label: str = "", **args: Any):
    """Record one input set for the decorated function (see the module docstring)."""

    def mark(fn):
        # Stacked decorators run bottom-up: insert at the front to keep source order.
        SPECS.setdefault(fn.__name__, []).insert(0, Case(fn, args, wrt, label, _category))
        return fn

    return mark


def _draw(value: Any, rng: np.random.Generator) -> Any:
    if isinstance(value, A):
        return value.draw(rng)
    if isinstance(value, dict):
        return {k: _draw(v, rng) for k, v in value.items()}
    if isinstance(value, list):
        return [_draw(v, rng) for v in value]
    if isinstance(value, tuple):
        return tuple(_draw(v, rng) for v in value)
    if isinstance(value, np.ndarray):
        return value.astype(np.float64, copy=True) if value.dtype.kind == "f" else value.copy()
    return copy.deepcopy(value)


def build(case: Case) -> list:
    """The positional arguments of `case`, drawn with a seed fixed by its id."""
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    names = list(inspect.signature(case.fn).parameters)
    unknown = set(case.args) - set(names)
    assert not unknown, f"{case.id}: spec names unknown arguments {unknown}"
    given = [n for n in names if n in case.args]
    assert names[: len(given)] == given, f"{case.id}: spec must name a prefix of the arguments"
    return [_draw(case.args[n], rng) for n in given]


def cases() -> list[Case]:
    """Every case of the corpus, in source order of the functions."""
    for name, group in SPECS.items():
        labels = [c.label for c in group]
        assert len(group) == 1 or all(labels), f"{name}: label every stacked @spec"
        assert len(set(labels)) == len(labels), f"{name}: duplicate @spec labels"
    return [c for name in SPECS for c in SPECS[name]]


# ===========================================================================
# if / elif / else on data
# ===========================================================================
category("branches")


@spec(label="pos", x=Pos(4))
@spec(label="neg", x=Neg(4))
def if_sum_positive(x):
    """`if` on a reduction of the data; each branch computes differently."""
    if np.sum(x) > 0:
        y = x * x
    else:
        y = -(x**3)
    return np.sum(y)


@spec(label="big", x=A(4), n=3)
@spec(label="small", x=A(4), n=1)
def if_on_int_argument(x, n):
    """`if` on a non-differentiated int argument."""
    if n > 2:
        y = np.sin(x) * n
    else:
        y = np.cos(x)
    return np.sum(y)


@spec(label="true", x=A(3), use_tanh=True)
@spec(label="false", x=A(3), use_tanh=False)
def if_on_bool_flag(x, use_tanh):
    """`if` on a bool argument used directly as the condition."""
    if use_tanh:
        h = np.tanh(x)
    else:
        h = x / (1.0 + x * x)
    return np.sum(h * x)


@spec(label="taken", x=A(4, lo=0.5, hi=2.0))
@spec(label="skipped", x=A(4, lo=-1.0, hi=0.5))
def if_without_else(x):
    """`if` with no `else`: the variable keeps its value when the branch is skipped."""
    y = 2.0 * x
    if np.max(x) > 1.0:
        y = y * x
    return np.sum(y)


@spec(label="high", x=Pos(4))
@spec(label="middle", x=A(4, lo=-0.2, hi=0.2))
@spec(label="low", x=Neg(4))
def elif_chain(x):
    """`if`/`elif`/`else` on a scalar computed from the data."""
    s = np.sum(x)
    if s > 1.0:
        r = s * s
    elif s > -1.0:
        r = np.sin(s) + np.sum(x * x)
    else:
        r = np.exp(s)
    return r


@spec(label="first", x=A(3), c=2.0)
@spec(label="second", x=A(3), c=0.5)
@spec(label="else", x=A(3), c=-1.0)
def nested_elif_only_else_assigns(x, c):
    """Only the innermost `else` of an `if`/`elif`/`else` assigns `y`; a loop follows
    (issue 12: the adjoint of the loop left `x`'s adjoint where the branches missed it)."""
    y = x * 1.0
    if c > 1:
        z = 2.0  # noqa: F841 - only the innermost else assigns y
    elif c > 0:
        z = 3.0  # noqa: F841
    else:
        y = np.sin(x) * x
    for _ in range(2):
        y = y * x
    return np.sum(y)


def _h_two(a, b):
    s = a * b
    if np.sum(s) > 0:
        return s * 2.0
    return s - 1.0


@spec(label="x", wrt="x", x=A(3), c=0.7)
@spec(label="c", wrt="c", x=A(3), c=0.7)
@spec(label="x neg", wrt="x", x=A(3), c=-0.7)
def loop_bool_operand_early_return_helper(x, c):
    """Issue 12, case 5: a bool operand, a helper with an early return, in a loop."""
    for _ in range(3):
        t = ((c > 0) - (_h_two(c, c) - np.mean(x))) * 0.1
    return t


@spec(label="pp", wrt=("x", "y"), x=Pos(3), y=Pos(3))
@spec(label="pn", wrt=("x", "y"), x=Pos(3), y=Neg(3))
@spec(label="np", wrt=("x", "y"), x=Neg(3), y=Pos(3))
def nested_if(x, y):
    """An `if` inside an `if`, both on data."""
    if np.sum(x) > 0:
        if np.sum(y) > 0:
            out = x * y
        else:
            out = x - y
    else:
        out = np.exp(x) + y
    return np.sum(out * out)


@spec(label="long", x=A(5))
@spec(label="short", x=A(2))
def if_on_shape(x):
    """`if` on `x.shape[0]` (known only at run time)."""
    if x.shape[0] > 3:
        return np.sum(x[:3] * x[3:4])
    return np.sum(x * x)


@spec(label="matrix", x=A(3, 2))
@spec(label="vector", x=A(3))
def if_on_ndim(x):
    """`if` on `x.ndim`."""
    if x.ndim == 2:
        y = np.sum(x @ x.T)
    else:
        y = np.sum(np.outer(x, x))
    return y


@spec(label="pos", wrt=("x", "y"), x=Pos(3), y=A(3))
@spec(label="neg", wrt=("x", "y"), x=Neg(3), y=A(3))
def if_defines_two_values(x, y):
    """Each branch defines the same two variables differently; both are used after."""
    if np.mean(x) > 0:
        a = x * y
        b = np.sin(y)
    else:
        a = x + y
        b = np.cos(x)
    return np.sum(a * b)


@spec(label="pos", x=Pos(3))
@spec(label="neg", x=Neg(3))
def if_updates_value_read_before(x):
    """A branch overwrites a variable whose old value was read before the `if`."""
    y = 2.0 * x
    first = np.sum(y * y)
    if np.sum(x) > 0:
        y = y + np.sin(y)
    return first + np.sum(y * x)


@spec(label="pos", wrt=("x", "w"), x=Pos(3), w=A(3))
@spec(label="neg", wrt=("x", "w"), x=Neg(3), w=A(3))
def if_param_in_one_branch(x, w):
    """`w` is used in one branch only: its gradient is zero on the other."""
    if np.sum(x) > 0:
        out = x * w
    else:
        out = x * x
    return np.sum(out)


@spec(label="pos", wrt=("a", "x"), a=0.7, x=A(3))
@spec(label="neg", wrt=("a", "x"), a=-0.4, x=A(3))
def if_on_float_argument(a, x):
    """`if` on a Python float that is also differentiated."""
    if a > 0:
        return a * np.sum(x * x)
    return a * a * np.sum(x)


@spec(label="first", x=np.array([1.0, -0.5, 0.3]))
@spec(label="second", x=np.array([-1.0, 0.5, 0.3]))
def if_on_elements(x):
    """`if` comparing two elements of the array."""
    if x[0] > x[1]:
        return x[0] * x[2] + np.sum(x)
    return x[1] * x[1] - x[2]


@spec(label="none", x=A(4))
@spec(label="bias", x=A(4), bias=A(4))
def if_is_none(x, bias=None):
    """`if bias is None` on an optional argument (a static test)."""
    if bias is None:
        z = x
    else:
        z = x + bias
    return np.sum(np.tanh(z))


@spec(label="inside", x=A(4, lo=0.1, hi=1.0))
@spec(label="outside", x=A(4, lo=3.0, hi=4.0))
def if_chained_comparison(x):
    """A chained comparison `lo < s < hi` as a condition."""
    s = np.sum(x)
    if -1.0 < s < 10.0:
        return s * s
    return 10.0 * s


@spec(label="pos", x=Pos(3))
@spec(label="neg", x=Neg(3))
def if_on_python_float(x):
    """The condition goes through `float(...)` first."""
    total = float(np.sum(x))
    if total > 0.0:
        return np.sum(np.log1p(x * x))
    return np.sum(x) * total


# ===========================================================================
# Conditional expressions: a if c else b
# ===========================================================================
category("ifexp")


@spec(label="pos", x=Pos(4))
@spec(label="neg", x=Neg(4))
def ifexp_on_data(x):
    """`a if cond else b` with a data-dependent condition."""
    y = x * 2.0 if np.sum(x) > 0 else x * x
    return np.sum(y * x)


@spec(label="a_big", wrt=("a", "b"), a=1.5, b=0.5)
@spec(label="b_big", wrt=("a", "b"), a=0.2, b=0.9)
def ifexp_scalars(a, b):
    """A conditional expression on two differentiated floats."""
    return a * b if a > b else a + b * b


@spec(label="pos", x=Pos(3))
@spec(label="mid", x=A(3, lo=-0.3, hi=0.2))
@spec(label="neg", x=Neg(3))
def ifexp_nested(x):
    """A conditional expression inside another one."""
    s = np.sum(x)
    y = s * s if s > 1.0 else (np.sin(s) if s > -1.0 else -s)
    return y


@spec(label="pos", x=A(3), n=2)
@spec(label="zero", x=A(3), n=0)
def ifexp_as_call_argument(x, n):
    """A conditional expression used as an argument of a NumPy call."""
    return np.sum(np.exp(x if n > 0 else -x))


@spec(x=np.array([0.5, -0.7, 1.2, -0.2]))
def ifexp_in_loop(x):
    """Leaky ReLU written element by element with a conditional expression."""
    s = 0.0
    for v in x:
        s = s + (v * v if v > 0 else 0.1 * v)
    return s


@spec(label="pos", x=Pos(3))
@spec(label="neg", x=Neg(3))
def ifexp_in_return(x):
    """A conditional expression directly in `return`."""
    s = np.sum(x)
    return np.sum(x * x) if s > 0 else np.sum(np.exp(x))


# ===========================================================================
# and / or / not
# ===========================================================================
category("boolean")


@spec(label="both", wrt=("x", "y"), x=Pos(3), y=Pos(3))
@spec(label="one", wrt=("x", "y"), x=Pos(3), y=Neg(3))
def and_condition(x, y):
    """`and` of two data conditions."""
    if np.sum(x) > 0 and np.sum(y) > 0:
        return np.sum(x * y)
    return np.sum(x + y * y)


@spec(label="one", wrt=("x", "y"), x=Neg(3), y=Pos(3))
@spec(label="none", wrt=("x", "y"), x=Neg(3), y=Neg(3))
def or_condition(x, y):
    """`or` of two data conditions."""
    if np.sum(x) > 0 or np.sum(y) > 0:
        return np.sum(np.sin(x) * y)
    return np.sum(x * x * y)


@spec(label="pos", x=Pos(3))
@spec(label="neg", x=Neg(3))
def not_condition(x):
    """`not` of a data condition."""
    if not np.sum(x) > 0:
        return np.sum(np.exp(x))
    return np.sum(np.log(x))


@spec(label="a", x=Pos(3), flag=False)
@spec(label="b", x=Neg(3), flag=True)
@spec(label="c", x=Neg(3), flag=False)
def and_or_not_mixed(x, flag):
    """`(a and not b) or c` mixing data and a bool argument."""
    s = np.sum(x)
    if (s > 0 and not flag) or (flag and s < -1.0):
        return s * s
    return np.sum(x**3)


@spec(label="guarded", x=A(3), i=5)
@spec(label="inside_pos", x=np.array([0.4, 0.9, -0.3]), i=1)
@spec(label="inside_neg", x=np.array([0.4, 0.9, -0.3]), i=2)
def and_short_circuit(x, i):
    """`and` must short-circuit: `x[i]` is out of range when the guard is false."""
    if i < x.shape[0] and x[i] > 0:
        return x[i] * np.sum(x)
    return np.sum(x * x)


@spec(label="none", x=A(3))
@spec(label="given", x=A(3), scale=3.0)
def or_as_value(x, scale=None):
    """`scale or 1.0` used as a value, not a condition."""
    s = scale or 1.0
    return s * np.sum(x * x)


@spec(label="pos", x=Pos(3))
@spec(label="neg", x=Neg(3))
def and_in_ifexp(x):
    """`and` inside a conditional expression."""
    s = np.sum(x)
    return s * s if s > 0 and s < 100.0 else np.sum(np.exp(x))


# ===========================================================================
# for over range(...)
# ===========================================================================
category("for_range")


@spec(x=A(3), n=4)
def for_range_argument(x, n):
    """`range(n)` with n an argument; the loop index is used as a number."""
    s = 0.0
    for i in range(n):
        s = s + np.sum(np.sin(x * i))
    return s


@spec(x=A(4))
def for_range_shape(x):
    """`range(x.shape[0])` with element reads inside."""
    s = 0.0
    for i in range(x.shape[0]):
        s = s + x[i] * x[i] * (i + 1)
    return s


@spec(x=A(5))
def for_range_len(x):
    """`range(len(x))`."""
    s = x[0]
    for i in range(1, len(x)):
        s = s * 0.5 + x[i] * x[i - 1]
    return s


@spec(x=A(7), n=7)
def for_range_start_stop_step(x, n):
    """`range(1, n, 2)`."""
    s = 0.0
    for i in range(1, n, 2):
        s = s + np.exp(x[i]) * x[i - 1]
    return s


@spec(x=A(5))
def for_range_backwards(x):
    """`range(n - 1, -1, -1)`: a loop counting down."""
    acc = 0.0
    for i in range(x.shape[0] - 1, -1, -1):
        acc = np.tanh(acc + x[i])
    return acc


@spec(wrt=("x", "W"), x=A(3), W=A(3, 3), n=4)
def for_matvec_recurrence(x, W, n):
    """A loop-carried vector through `tanh(W @ h)`."""
    h = x
    for _ in range(n):
        h = np.tanh(W @ h)
    return np.sum(h)


@spec(x=A(3, lo=0.5, hi=1.2), n=5)
def for_product(x, n):
    """A loop-carried product (the adjoint needs every intermediate)."""
    p = np.ones_like(x)
    for _ in range(n):
        p = p * x
    return np.sum(p)


@spec(wrt=("x", "y"), x=A(2), y=A(2), n=5)
def for_two_carried(x, y, n):
    """Two loop-carried values updated together (a Fibonacci-like swap)."""
    a = x
    b = y
    for _ in range(n):
        a, b = b, 0.5 * a + 0.5 * np.sin(b)
    return np.sum(a * b)


@spec(label="three", x=A(3), n=3)
@spec(label="zero", x=A(3), n=0)
def for_maybe_zero_trips(x, n):
    """A loop that may run zero times: the carried value is then the initial one."""
    y = x * 1.5
    for _ in range(n):
        y = y * np.cos(y)
    return np.sum(y * y)


@spec(x=A(3), n=4)
def for_index_used_after(x, n):
    """The loop variable and a value computed inside are read after the loop."""
    last = x
    i = 0
    for i in range(n):
        last = x * (i + 1.0)
    return np.sum(last * last) + i


@spec(x=A(3), n=3)
def for_reads_outer_value(x, n):
    """The body reads a value defined before the loop and never changed."""
    base = np.exp(x)
    s = 0.0
    for i in range(n):
        s = s + np.sum(base * (i + 1.0)) * np.sum(x)
    return s


@spec(x=A(3))
def for_over_tuple_literal(x):
    """`for c in (1.0, 2.0, 3.0)`."""
    s = 0.0
    for c in (1.0, 2.0, 3.0):
        s = s + c * np.sum(x**2) + np.sum(np.sin(c * x))
    return s


@spec(x=A(5))
def for_over_constant_list(x):
    """`for k in [0, 3, 1]`: a list literal of indices."""
    s = 0.0
    for k in [0, 3, 1]:
        s = s + x[k] * x[k + 1]
    return s


# ===========================================================================
# for over rows of an array, enumerate, zip
# ===========================================================================
category("for_iter")


@spec(x=A(4, 3))
def for_rows(x):
    """`for row in x` over a 2-D array."""
    s = 0.0
    for row in x:
        s = s + np.sum(row * row) * row[0]
    return s


@spec(x=A(5))
def for_elements(x):
    """`for v in x` over a 1-D array: each v is a scalar."""
    s = 0.0
    for v in x:
        s = s + v * np.sin(v)
    return s


@spec(wrt=("x", "W"), x=A(4, 3), W=A(3, 2))
def for_rows_matmul(x, W):
    """Each row goes through a matrix product; the weights are shared."""
    total = 0.0
    for row in x:
        total = total + np.sum(np.tanh(row @ W))
    return total


@spec(x=A(4, 2))
def for_enumerate(x):
    """`for i, row in enumerate(x)`."""
    s = 0.0
    for i, row in enumerate(x):
        s = s + i * np.sum(row**2)
    return s


@spec(x=A(3))
def for_enumerate_start(x):
    """`enumerate(x, start=1)`."""
    s = 0.0
    for k, v in enumerate(x, start=1):
        s = s + v / k
    return s * s


@spec(wrt=("x", "y"), x=A(4), y=A(4))
def for_zip(x, y):
    """`for a, b in zip(x, y)`."""
    s = 0.0
    for a, b in zip(x, y):
        s = s + a * b + a * a
    return s


@spec(wrt=("x", "y"), x=A(3, 2), y=A(3, 2))
def for_enumerate_zip(x, y):
    """`for i, (a, b) in enumerate(zip(x, y))`: nested unpacking in the target."""
    s = 0.0
    for i, (a, b) in enumerate(zip(x, y)):
        s = s + (i + 1) * np.sum(a * np.cos(b))
    return s


@spec(wrt=("x", "y", "z"), x=A(3), y=A(3), z=A(3))
def for_zip_three(x, y, z):
    """`zip` of three arrays."""
    s = 0.0
    for a, b, c in zip(x, y, z):
        s = s + a * b * c
    return s


@spec(x=A(3, 2))
def for_rows_reversed_slice(x):
    """Iterating over `x[::-1]`."""
    h = np.zeros(2)
    for row in x[::-1]:
        h = np.tanh(h + row)
    return np.sum(h)


# ===========================================================================
# Nested loops
# ===========================================================================
category("nested_loops")


@spec(x=A(3, 4))
def nested_range(x):
    """Two nested `range` loops reading `x[i, j]`."""
    s = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            s = s + x[i, j] * x[i, j] * (i + j + 1)
    return s


@spec(x=A(4))
def nested_triangular(x):
    """The inner bound depends on the outer index."""
    s = 0.0
    for i in range(x.shape[0]):
        for j in range(i):
            s = s + x[i] * x[j]
    return s


@spec(x=A(3, 3))
def nested_rows_then_elements(x):
    """`for row in x: for v in row`."""
    s = 0.0
    for row in x:
        for v in row:
            s = s + np.sin(v) * v
    return s


@spec(wrt=("x", "W"), x=A(3, 2), W=A(2, 2), n=2)
def nested_inner_state_reset(x, W, n):
    """The inner loop's carried value restarts at every outer iteration."""
    total = 0.0
    for row in x:
        h = row
        for _ in range(n):
            h = np.tanh(W @ h)
        total = total + np.sum(h)
    return total


@spec(x=A(2, 2, 2))
def nested_three_levels(x):
    """Three nested loops."""
    s = 0.0
    for i in range(2):
        for j in range(2):
            for k in range(2):
                s = s + x[i, j, k] ** 2 * (1.0 + i - j + k)
    return s


@spec(x=A(3), n=3)
def nested_while_in_for(x, n):
    """A `while` inside a `for`."""
    s = 0.0
    for i in range(n):
        j = 0
        while j < i:
            s = s + np.sum(x * (j + 1.0)) * x[i]
            j = j + 1
    return s


# ===========================================================================
# while with a data-dependent trip count
# ===========================================================================
category("while")


@spec(x=A(3, lo=1.0, hi=2.0))
def while_halving(x):
    """Halve until small: the trip count depends on the data."""
    y = x * x
    while np.sum(y) > 0.3:
        y = y * 0.5
    return np.sum(y * x)


@spec(x=A(3), n=4)
def while_counter(x, n):
    """A counting `while` (the trip count is an argument)."""
    i = 0
    h = x
    while i < n:
        h = np.sin(h) + x
        i = i + 1
    return np.sum(h)


@spec(x=A(3, lo=0.2, hi=0.4))
def while_grow(x):
    """Grow until the sum passes a threshold; the trip count is read after."""
    y = x
    steps = 0
    while np.sum(y) < 10.0:
        y = y * 1.5 + x
        steps = steps + 1
    return np.sum(y) / steps


@spec(label="small", wrt="a", a=2.3)
@spec(label="big", wrt="a", a=17.0)
def while_newton_sqrt(a):
    """Newton iterations for sqrt(a) until the residual is small."""
    y = a
    while abs(y * y - a) > 1e-3:
        y = 0.5 * (y + a / y)
    return y


@spec(x=A(3, lo=0.1, hi=0.3), n=50)
def while_two_conditions(x, n):
    """`while` with `and`: stop at a data threshold or after n steps."""
    i = 0
    y = x
    while i < n and np.max(y) < 2.0:
        y = y * 1.3 + 0.05
        i = i + 1
    return np.sum(y * y)


@spec(x=A(3, lo=0.3, hi=0.5))
def while_true_break(x):
    """`while True` left by `break`."""
    y = x
    while True:
        y = y + np.exp(-y)
        if np.sum(y) > 4.0:
            break
    return np.sum(y * y)


# ===========================================================================
# break, continue
# ===========================================================================
category("break_continue")


@spec(x=np.array([0.3, -0.4, 0.8, 1.7, 0.2]))
def for_break_on_data(x):
    """`break` when an element passes a threshold."""
    s = 0.0
    for v in x:
        if v > 1.0:
            break
        s = s + v * v
    return s


@spec(x=A(6), n=3)
def for_break_on_index(x, n):
    """`break` on the loop index."""
    s = 0.0
    for i in range(x.shape[0]):
        if i >= n:
            break
        s = s + np.exp(x[i])
    return s


@spec(x=np.array([0.3, -0.4, 0.8, -1.7, 0.2]))
def for_continue_on_data(x):
    """`continue` on negative elements."""
    s = 0.0
    for v in x:
        if v < 0:
            continue
        s = s + v**3
    return s


@spec(x=A(6))
def for_continue_on_index(x):
    """`continue` on even indices."""
    s = 0.0
    for i in range(x.shape[0]):
        if i % 2 == 0:
            continue
        s = s + np.sin(x[i]) * x[i - 1]
    return s


@spec(x=np.array([0.3, -0.4, 0.8, -0.1, 2.5, 0.6]))
def for_break_and_continue(x):
    """Both `continue` and `break` in one loop."""
    s = 0.0
    for v in x:
        if v < 0:
            continue
        if v > 2.0:
            break
        s = s + v * v
    return s


@spec(x=np.array([[0.3, 1.5, 0.2], [0.1, 0.4, 2.0], [1.1, 0.2, 0.3]]))
def nested_break_inner(x):
    """`break` leaves only the inner loop."""
    s = 0.0
    for row in x:
        for v in row:
            if v > 1.0:
                break
            s = s + v * v
        s = s + row[0]
    return s


@spec(x=A(3, lo=0.1, hi=0.3), n=20)
def while_with_break(x, n):
    """A counting `while` left early by a data-dependent `break`."""
    i = 0
    y = x
    while i < n:
        y = y * 1.4 + 0.1
        if np.sum(y) > 3.0:
            break
        i = i + 1
    return np.sum(y) + i


@spec(x=A(4), n=8)
def while_with_continue(x, n):
    """`continue` inside a `while` (the counter is advanced before it)."""
    i = 0
    s = 0.0
    while i < n:
        i = i + 1
        if i % 3 == 0:
            continue
        s = s + np.sum(np.sin(x * i))
    return s


@spec(x=np.array([0.5, 0.25, -0.3, 0.9]))
def break_carried_used_after(x):
    """The value carried out of a broken loop is what was computed before `break`."""
    h = 0.0
    for v in x:
        h = np.tanh(h + v)
        if v < 0:
            break
    return h * h


# ===========================================================================
# Early and multiple return
# ===========================================================================
category("returns")


@spec(label="early", x=Pos(3))
@spec(label="late", x=Neg(3))
def early_return(x):
    """`return` inside an `if`, then more code."""
    s = np.sum(x)
    if s > 0:
        return s * s
    y = np.exp(x)
    return np.sum(y * x)


@spec(label="a", x=Pos(3))
@spec(label="b", x=A(3, lo=-0.2, hi=0.2))
@spec(label="c", x=Neg(3))
def return_in_every_branch(x):
    """A `return` in each arm of an `if`/`elif`/`else`."""
    s = np.sum(x)
    if s > 1.0:
        return np.sum(np.log(x))
    elif s > -1.0:
        return np.sum(x * x)
    else:
        return np.sum(np.exp(x)) * s


@spec(label="found", x=np.array([0.2, 0.5, 1.4, 0.3]))
@spec(label="not_found", x=np.array([0.2, 0.5, 0.4, 0.3]))
def return_inside_for(x):
    """`return` from inside a `for` when an element passes a threshold."""
    s = 0.0
    for i, v in enumerate(x):
        if v > 1.0:
            return v * s + i
        s = s + v * v
    return -s


@spec(x=A(3, lo=0.2, hi=0.3))
def return_inside_while(x):
    """`return` from inside `while True`."""
    y = x
    k = 0
    while True:
        y = y * 1.5
        k = k + 1
        if np.sum(y) > 5.0:
            return np.sum(y * y) / k


@spec(label="found", x=np.array([[0.2, 0.5], [1.4, 0.3]]))
@spec(label="not_found", x=np.array([[0.2, 0.5], [0.4, 0.3]]))
def return_inside_nested_loop(x):
    """`return` from an inner loop leaves both loops."""
    s = 0.0
    for row in x:
        for v in row:
            if v > 1.0:
                return s * v
            s = s + np.sin(v)
    return s


@spec(label="empty", x=A(3), n=0)
@spec(label="loop", x=A(3), n=3)
def return_before_loop(x, n):
    """A guard `return` before a loop."""
    if n == 0:
        return np.sum(x)
    h = x
    for _ in range(n):
        h = np.tanh(h) * 2.0
    return np.sum(h * h)


@spec(label="pos", x=Pos(3))
@spec(label="neg", x=Neg(3))
def return_in_nested_if(x):
    """`return` two `if`s deep, fallthrough at the end."""
    s = np.sum(x)
    if s > 0:
        if np.max(x) > 0.5:
            return s * np.max(x)
    return np.sum(x**3)


# ===========================================================================
# print and assert inside differentiated code
# ===========================================================================
category("print_assert")


@spec(x=A(3))
def print_value(x):
    """`print` of an intermediate value."""
    y = np.tanh(x)
    print("y =", y)
    return np.sum(y * x)


@spec(x=A(3), n=3)
def print_in_loop(x, n):
    """`print` in a loop body, with the loop index and an f-string."""
    h = x
    for i in range(n):
        h = np.sin(h) + x
        print(f"step {i}: {np.sum(h):.3f}")
    return np.sum(h)


@spec(x=A(4))
def assert_shape(x):
    """`assert` on a shape."""
    assert x.ndim == 1
    assert x.shape[0] == 4, "expects 4 values"
    return np.sum(np.exp(x))


@spec(x=A(3))
def assert_on_data(x):
    """`assert` on a condition computed from the data."""
    y = x * x
    assert np.all(y >= 0.0), "squares are not negative"
    return np.sum(np.sqrt(y + 1.0))


@spec(x=A(3), n=3)
def assert_in_loop(x, n):
    """`assert` inside a loop."""
    h = x
    for _ in range(n):
        h = np.tanh(h)
        assert np.all(np.abs(h) <= 1.0)
    return np.sum(h)


# ===========================================================================
# Tuples
# ===========================================================================
category("tuples")


@spec(wrt=("x", "y"), x=A(3), y=A(3))
def tuple_pack_unpack(x, y):
    """Pack two arrays into a tuple and unpack them."""
    t = (x * 2.0, y + 1.0)
    a, b = t
    return np.sum(a * b)


@spec(x=A(3))
def tuple_index(x):
    """Read a tuple with positive and negative indices."""
    t = (x, np.sin(x), x * x)
    return np.sum(t[0] * t[-1]) + np.sum(t[1])


@spec(wrt=("x", "y"), x=A(3), y=A(3))
def tuple_swap(x, y):
    """`a, b = b, a`."""
    a = x * 2.0
    b = np.exp(y)
    a, b = b, a
    return np.sum(a * a + b)


def _stats(v):
    return np.sum(v), np.sum(v * v), v.shape[0]


@spec(x=A(4))
def tuple_from_helper(x):
    """A helper returns a tuple (two arrays and an int) that the caller unpacks."""
    s, ss, n = _stats(x)
    return ss / n - (s / n) ** 2


@spec(x=A(3))
def tuple_nested_unpack(x):
    """`a, (b, c) = ...`."""
    a, (b, c) = x[0], (x[1], x[2])
    return a * b + np.sin(c) * a


@spec(x=A(4))
def tuple_starred_unpack(x):
    """`first, *rest = ...` on a tuple."""
    first, *rest = (x[0], x[1], x[2], x[3])
    return first * sum(rest)


@spec(x=A(3))
def tuple_len_and_iterate(x):
    """`len` of a tuple and a loop over it."""
    t = (x, 2.0 * x, np.cos(x))
    s = 0.0
    for item in t:
        s = s + np.sum(item * item) / len(t)
    return s


@spec(wrt=("x", "W"), x=A(2), W=A(2, 2), n=3)
def tuple_loop_state(x, W, n):
    """A tuple carried through a loop (the state of an LSTM-like cell)."""
    state = (x, np.zeros_like(x))
    for _ in range(n):
        h, c = state
        c = 0.5 * c + np.tanh(W @ h)
        state = (np.tanh(c), c)
    return np.sum(state[0]) + np.sum(state[1] ** 2)


# ===========================================================================
# Lists
# ===========================================================================
category("lists")


@spec(wrt=("x", "y"), x=A(3), y=A(3))
def list_literal_sum(x, y):
    """`sum` of a list literal of scalars."""
    return sum([np.sum(x * x), np.sum(y), np.sum(x * y)])


@spec(x=A(3), n=4)
def list_append_stack(x, n):
    """`append` in a loop, then `np.stack`."""
    outs = []
    h = x
    for _ in range(n):
        h = np.tanh(h + 0.5)
        outs.append(h)
    stacked = np.stack(outs)
    return np.sum(stacked * stacked)


@spec(x=A(4))
def list_append_scalars_array(x):
    """`append` scalars, then `np.array` of the list."""
    vals = []
    for v in x:
        vals.append(v * v)
    arr = np.array(vals)
    return np.sum(arr * np.arange(4.0))


@spec(x=A(3))
def list_index(x):
    """Read list elements by positive and negative index."""
    items = [x, x * 2.0, np.exp(x)]
    return np.sum(items[0] * items[-1]) + np.sum(items[1])


@spec(x=A(3, 2))
def list_comprehension(x):
    """A list comprehension over rows, then `np.stack`."""
    rows = [np.sin(r) * r for r in x]
    return np.sum(np.stack(rows))


@spec(x=np.array([[0.5, 0.2], [-0.9, 0.1], [0.4, 0.4]]))
def list_comprehension_filter(x):
    """A comprehension with an `if` filter on the data."""
    kept = [r * r for r in x if np.sum(r) > 0]
    return np.sum(np.stack(kept))


@spec(x=A(4), n=4)
def list_comprehension_range(x, n):
    """`[... for i in range(n)]`, then `sum`."""
    return sum([x[i] * x[i] * i for i in range(n)])


@spec(x=A(4))
def generator_in_sum(x):
    """A generator expression inside `sum`."""
    return sum(v * np.exp(v) for v in x)


@spec(x=A(3))
def list_setitem(x):
    """Overwrite a list element."""
    items = [x, x * x]
    items[1] = np.sin(items[1]) + items[0]
    return np.sum(items[0] * items[1])


@spec(x=A(3))
def list_concatenate(x):
    """`np.concatenate` of a list built from pieces."""
    parts = [x, x * x, x[:1]]
    return np.sum(np.concatenate(parts) ** 2)


@spec(x=A(3), n=3)
def list_len(x, n):
    """`len` of a list built in a loop, used as a number."""
    parts = []
    for i in range(n):
        parts.append(x * (i + 1.0))
    return np.sum(sum(parts)) / len(parts)


@spec(x=A(3))
def list_plus(x):
    """`+` between lists, then iterate."""
    items = [x] + [x * x, np.cos(x)]
    s = 0.0
    for item in items:
        s = s + np.sum(item)
    return s


@spec(x=A(2, 3))
def list_nested_comprehension(x):
    """A nested comprehension producing a flat list of scalars."""
    vals = [v * w for row in x for v in row for w in (1.0, 2.0)]
    return sum(vals) * x[0, 0]


@spec(x=A(3))
def list_of_lists(x):
    """A list of lists, read with double indexing."""
    grid = [[x[0], x[1]], [x[2], x[0] * x[1]]]
    return grid[0][1] * grid[1][0] + grid[1][1]


# ===========================================================================
# Dicts
# ===========================================================================
category("dicts")


@spec(wrt=("x", "y"), x=A(3), y=A(3))
def dict_literal(x, y):
    """A dict literal read with constant keys."""
    d = {"a": x * 2.0, "b": np.sin(y)}
    return np.sum(d["a"] * d["b"])


@spec(x=A(3))
def dict_setitem(x):
    """Insert and overwrite keys."""
    d = {"h": x}
    d["g"] = np.exp(d["h"])
    d["h"] = d["h"] * d["g"]
    return np.sum(d["h"] + d["g"])


@spec(x=A(3))
def dict_items_loop(x):
    """Iterate over `.items()` of a dict built in the function."""
    d = {"one": x, "two": x * x, "three": np.tanh(x)}
    s = 0.0
    for _, v in d.items():
        s = s + np.sum(v * v)
    return s


@spec(x=A(3))
def dict_keys_loop(x):
    """`for k in d` then `d[k]`."""
    d = {"a": x, "b": 2.0 * x}
    s = 0.0
    for k in d:
        s = s + np.sum(np.sin(d[k]))
    return s


@spec(x=A(3))
def dict_values_loop(x):
    """Iterate over `.values()`."""
    d = {"a": x, "b": np.exp(x)}
    s = 0.0
    for v in d.values():
        s = s + np.sum(v) ** 2
    return s


@spec(x=A(3), n=3)
def dict_update_in_loop(x, n):
    """A dict entry carried through a loop."""
    state = {"h": np.zeros_like(x), "count": 0}
    for _ in range(n):
        state["h"] = np.tanh(state["h"] + x)
        state["count"] = state["count"] + 1
    return np.sum(state["h"]) * state["count"]


@spec(x=A(3))
def dict_comprehension(x):
    """A dict comprehension over `.items()`."""
    d = {"a": x, "b": x * x}
    scaled = {k: v * 2.0 for k, v in d.items()}
    return np.sum(scaled["a"] * scaled["b"])


@spec(x=A(3), config={"scale": 2.0, "power": 3})
def dict_config_argument(x, config):
    """A dict argument of static settings (not differentiated)."""
    return config["scale"] * np.sum(x ** config["power"])


@spec(x=A(3))
def dict_get_default(x):
    """`d.get(key, default)`."""
    d = {"a": x}
    return np.sum(d.get("a", 0.0) * d.get("b", 1.5))


# ===========================================================================
# Nested structures
# ===========================================================================
category("nested_structures")


@spec(x=A(3, 2))
def list_of_tuples(x):
    """A list of (row, weight) tuples."""
    pairs = [(row, float(i + 1)) for i, row in enumerate(x)]
    s = 0.0
    for row, weight in pairs:
        s = s + weight * np.sum(row * row)
    return s


@spec(x=A(3))
def dict_of_tuples(x):
    """A dict whose values are tuples."""
    d = {"p": (x, x * x), "q": (np.sin(x), 2.0)}
    a, b = d["p"]
    c, k = d["q"]
    return np.sum(a * b + c * k)


@spec(wrt="x", x=A(2), layers=[{"W": A(2, 2), "b": A(2)}, {"W": A(2, 2), "b": A(2)}])
def list_of_dicts(x, layers):
    """Iterate over a list of layer dicts (not differentiated here)."""
    h = x
    for layer in layers:
        h = np.tanh(layer["W"] @ h + layer["b"])
    return np.sum(h)


@spec(x=A(3))
def tuple_of_lists(x):
    """A tuple of two lists."""
    t = ([x, x * 2.0], [np.exp(x)])
    return np.sum(t[0][1] * t[1][0]) + np.sum(t[0][0])


@spec(x=A(3))
def dict_of_lists_append(x):
    """Append to lists held in a dict."""
    hist = {"h": [], "c": []}
    h = x
    for _ in range(3):
        h = np.sin(h) + 0.5
        hist["h"].append(h)
        hist["c"].append(np.sum(h))
    return np.sum(np.stack(hist["h"])) * sum(hist["c"])


# ===========================================================================
# wrt naming a dict, list or tuple of arrays
# ===========================================================================
category("wrt_structures")


@spec(wrt="params", params={"W": A(2, 3), "b": A(2)}, x=A(3))
def wrt_dict(params, x):
    """The gradient of a dict of parameters is a dict with the same keys."""
    return np.sum(np.tanh(params["W"] @ x + params["b"]))


@spec(wrt="ws", ws=[A(3), A(3), A(3)], x=A(3))
def wrt_list(ws, x):
    """The gradient of a list of arrays is a list."""
    s = 0.0
    for w in ws:
        s = s + np.sum(np.sin(w * x))
    return s


@spec(wrt="pair", pair=(A(3), A(3)), x=A(3))
def wrt_tuple(pair, x):
    """The gradient of a tuple of arrays is a tuple."""
    a, b = pair
    return np.sum(a * x * b + a * a)


@spec(
    wrt="layers",
    layers=[{"W": A(3, 2), "b": A(3)}, {"W": A(1, 3), "b": A(1)}],
    x=A(2),
)
def wrt_list_of_dicts(layers, x):
    """A list of layer dicts (the usual shape of an MLP's parameters)."""
    h = x
    for layer in layers:
        h = np.tanh(layer["W"] @ h + layer["b"])
    return np.sum(h * h)


@spec(wrt=("params", "x"), params={"w": A(3), "c": A()}, x=A(3))
def wrt_dict_and_array(params, x):
    """`wrt` naming a dict and an array at once."""
    return np.sum(np.exp(params["w"] * x)) * params["c"]


@spec(wrt="params", params={"used": A(3), "unused": A(2)}, x=A(3))
def wrt_dict_unused_entry(params, x):
    """An entry the output does not depend on still gets a (zero) gradient."""
    return np.sum(params["used"] * x)


@spec(wrt="params", params={"a": 0.7, "b": A(3)}, x=A(3))
def wrt_dict_float_leaf(params, x):
    """A Python float inside the parameter dict."""
    return params["a"] * np.sum(params["b"] * x) + params["a"] ** 2


@spec(wrt="params", params={"W": A(2, 2), "b": A(2)}, xs=A(3, 2))
def wrt_dict_in_loop(params, xs):
    """Dict parameters read in every iteration of a loop."""
    h = np.zeros(2)
    for x in xs:
        h = np.tanh(params["W"] @ h + x + params["b"])
    return np.sum(h)


@spec(wrt="params", params={"W": A(2, 2), "b": A(2)}, x=A(2))
def wrt_dict_items(params, x):
    """`.items()` over the differentiated dict."""
    s = 0.0
    for _, p in params.items():
        s = s + np.sum(p * p)
    return s + np.sum(params["W"] @ x)


# ===========================================================================
# Calls to module-level functions
# ===========================================================================
category("calls")


def _inner(v):
    return np.sin(v) * v


def _middle(v):
    return _inner(v) + np.exp(-v)


def _outer(v):
    return np.tanh(_middle(v))


def _scaled(v, scale=2.0, shift=0.0):
    return scale * v + shift


def _step(h, x, W):
    return np.tanh(W @ h + x)


def _signed(v):
    if np.sum(v) > 0:
        return v * v
    return -v


def _cumulate(v, n):
    acc = v
    for _ in range(n):
        acc = acc + np.sin(acc)
    return acc


@spec(x=A(3))
def call_chain(x):
    """A chain of helpers: `_outer` calls `_middle` calls `_inner`."""
    return np.sum(_outer(x))


@spec(wrt=("x", "W"), x=A(3, 2), W=A(2, 2))
def call_in_loop(x, W):
    """A helper called once per iteration."""
    h = np.zeros(2)
    for row in x:
        h = _step(h, row, W)
    return np.sum(h * h)


@spec(label="pos", x=Pos(3))
@spec(label="neg", x=Neg(3))
def call_in_branch(x):
    """Different helpers in the two arms of an `if`."""
    if np.sum(x) > 0:
        y = _outer(x)
    else:
        y = _inner(x)
    return np.sum(y)


@spec(x=A(3))
def call_keyword_arguments(x):
    """Keyword arguments, in an order different from the signature."""
    return np.sum(_scaled(x, shift=1.0, scale=3.0) ** 2)


@spec(x=A(3))
def call_defaults(x):
    """A helper called with its defaults, and with one of them overridden."""
    return np.sum(_scaled(x) * _scaled(x, 0.5))


@spec(x=A(4))
def call_returns_tuple(x):
    """A helper in another module returns a tuple."""
    m, m2 = helpers.moments(x)
    return m2 - m * m


@spec(x=A(3))
def call_other_module_attribute(x):
    """`helpers.softplus(x)`: a helper reached through a module."""
    return np.sum(helpers.softplus(x) * x)


@spec(wrt=("W", "b"), W=A(2, 3), b=A(2), x=A(3))
def call_other_module_imported_name(W, b, x):
    """`dense(...)` imported by name; it calls `softplus` in its own module."""
    return np.sum(dense(W, b, x, activation="softplus")) + np.sum(dense(W, b, x))


@spec(x=A(3))
def call_helper_with_loop(x):
    """A helper (other module) with a loop inside."""
    return np.sum(helpers.repeat_tanh(x, 3))


@spec(label="pos", x=Pos(3))
@spec(label="neg", x=Neg(3))
def call_helper_with_branch(x):
    """A helper (same module) with a data branch inside."""
    return np.sum(_signed(x) * x)


@spec(x=A(3))
def call_same_helper_twice(x):
    """The same helper called twice with different arguments."""
    return np.sum(_inner(x) * _inner(2.0 * x))


@spec(x=A(3), n=3)
def call_helper_loop_in_loop(x, n):
    """A helper with a loop, itself called in a loop."""
    s = 0.0
    for i in range(n):
        s = s + np.sum(_cumulate(x * (i + 1.0), 2))
    return s


@spec(x=np.array([0.4, 1.6, -0.7]))
def call_scalar_helper_in_loop(x):
    """A scalar helper with a branch, called per element with a keyword argument."""
    s = 0.0
    for v in x:
        s = s + helpers.clipped_square(v, limit=1.0)
    return s


@spec(x=A(3))
def call_keyword_default_other_module(x):
    """A keyword default in a helper of another module."""
    return squared_norm(x) + squared_norm(np.sin(x), scale=0.5)


# ===========================================================================
# Nested def and lambda
# ===========================================================================
category("closures")


@spec(wrt=("x", "w"), x=A(3), w=A(3))
def nested_def_closure(x, w):
    """A nested function closing over an argument."""

    def scale(z):
        return z * w

    return np.sum(scale(x) * scale(np.sin(x)))


@spec(wrt=("x", "W"), x=A(3, 2), W=A(2, 2))
def nested_def_in_loop(x, W):
    """A nested function that closes over weights, called in a loop."""

    def cell(h, inp):
        return np.tanh(W @ h + inp)

    h = np.zeros(2)
    for row in x:
        h = cell(h, row)
    return np.sum(h)


@spec(x=A(3))
def nested_def_reads_local(x):
    """A nested function closing over a local computed before it."""
    shift = np.mean(x)

    def centered(z):
        return z - shift

    return np.sum(centered(x) ** 2)


@spec(x=A(3))
def nested_def_default(x):
    """A nested function with a default argument."""

    def power(z, k=2):
        return z**k

    return np.sum(power(x) + power(x, 3))


@spec(x=A(3))
def nested_def_late_binding(x):
    """A closure reads the variable's value at call time, not at `def` time."""
    w = x * 2.0

    def scale(z):
        return z * w

    w = np.sin(x)
    return np.sum(scale(x))


@spec(x=A(3))
def lambda_basic(x):
    """A lambda bound to a name."""
    square = lambda z: z * z  # noqa: E731
    return np.sum(square(x) + square(np.sin(x)))


@spec(wrt=("x", "w"), x=A(3), w=A(3))
def lambda_closure(x, w):
    """A lambda closing over an argument."""
    f = lambda z: np.tanh(z * w)  # noqa: E731
    return np.sum(f(x) * f(2.0 * x))


@spec(x=A(3, 2))
def lambda_in_comprehension(x):
    """A lambda applied inside a comprehension."""
    act = lambda r: np.exp(-r * r)  # noqa: E731
    return sum([np.sum(act(r)) for r in x])


# ===========================================================================
# Recursion on a non-differentiated argument
# ===========================================================================
category("recursion")


def _tanh_tower(v, depth):
    if depth == 0:
        return v
    return np.tanh(_tanh_tower(v, depth - 1) + v)


def _power(v, n):
    if n == 0:
        return np.ones_like(v)
    return v * _power(v, n - 1)


def _tree(v, depth):
    if depth <= 1:
        return np.sin(v)
    return _tree(v * 0.5, depth - 1) + _tree(v * v, depth - 2)


def _even(v, n):
    if n == 0:
        return v
    return _odd(np.sin(v), n - 1)


def _odd(v, n):
    if n == 0:
        return v * v
    return _even(v + 1.0, n - 1)


@spec(x=A(3), depth=4)
def recursion_depth(x, depth):
    """Recursion on an int depth."""
    return np.sum(_tanh_tower(x, depth))


@spec(x=A(3), n=4)
def recursion_power(x, n):
    """x**n by recursion."""
    return np.sum(_power(x, n))


@spec(x=A(2), depth=4)
def recursion_tree(x, depth):
    """Two recursive calls per level."""
    return np.sum(_tree(x, depth))


@spec(x=A(2), n=5)
def recursion_mutual(x, n):
    """Mutual recursion between two helpers."""
    return np.sum(_even(x, n))


@spec(label="default", x=A(3))
@spec(label="deep", x=A(3), depth=5)
def recursion_self(x, depth=3):
    """The differentiated function itself recurses."""
    if depth == 0:
        return np.sum(x * x)
    return recursion_self(np.sin(x) + x, depth - 1)


# ===========================================================================
# Builtins
# ===========================================================================
category("builtins")


@spec(x=A(3, 2))
def builtin_len(x):
    """`len` of an array (its first dimension)."""
    return np.sum(x * x) / len(x)


@spec(label="pos", wrt="a", a=0.8, x=A(2))
@spec(label="neg", wrt="a", a=-0.6, x=A(2))
def builtin_abs_scalar(a, x):
    """`abs` of a scalar."""
    return abs(a) * np.sum(x) + a


@spec(x=np.array([0.5, -0.8, 1.3]))
def builtin_abs_array(x):
    """`abs` of an array."""
    return np.sum(abs(x) * x)


@spec(label="a", wrt=("a", "b"), a=0.9, b=0.3)
@spec(label="b", wrt=("a", "b"), a=-0.2, b=0.6)
def builtin_min_max(a, b):
    """`min` and `max` of two scalars."""
    return max(a, b) * 2.0 + min(a, b) ** 2


@spec(x=np.array([0.4, 1.1, -0.3]))
def builtin_max_of_elements(x):
    """`max` and `min` of three scalars taken from an array."""
    return max(x[0], x[1], x[2]) * min(x[0], x[1], x[2])


@spec(x=A(3, 2))
def builtin_sum_list(x):
    """`sum` of a list of arrays (starts from 0)."""
    rows = [r * r for r in x]
    return np.sum(sum(rows) * np.array([1.0, 2.0]))


@spec(x=A(3))
def builtin_float(x):
    """`float(...)` of a differentiable scalar keeps the gradient."""
    s = float(np.sum(x))
    return s * s + float(x[0])


@spec(x=A(3, lo=0.5, hi=1.0))
def builtin_int(x):
    """`int(...)` as a loop count (no gradient through it)."""
    n = int(np.sum(x)) + 1
    h = x
    for _ in range(n):
        h = np.sin(h) + x
    return np.sum(h)


@spec(x=A(4))
def builtin_range_len(x):
    """`range(len(x))` with `min` of ints to clip the bound."""
    s = 0.0
    for i in range(min(len(x), 3)):
        s = s + x[i] ** 2
    return s


# ===========================================================================
# Mutation
# ===========================================================================
category("mutation")


@spec(x=A(3))
def setitem_into_zeros(x):
    """Write elements into `np.zeros(...)`."""
    y = np.zeros(3)
    y[0] = x[0] * 2.0
    y[1] = np.sin(x[1])
    y[2] = x[0] * x[2]
    return np.sum(y * y)


@spec(x=A(4))
def setitem_into_copy(x):
    """Write into a `.copy()` of the argument: the overwritten element has no gradient."""
    y = x.copy()
    y[1] = 0.5
    return np.sum(y**3)


@spec(x=A(3))
def setitem_iadd(x):
    """`y[i] += v`."""
    y = x.copy()
    y[0] += x[1] * x[2]
    y[2] += np.exp(x[0])
    return np.sum(y * y)


@spec(x=A(4))
def setitem_isub_imul_idiv(x):
    """`-=`, `*=` and `/=` on elements."""
    y = x * 1.0
    y[0] -= x[1]
    y[1] *= x[2]
    y[2] /= 2.0 + x[3] * x[3]
    return np.sum(y * y)


@spec(x=A(4))
def slice_assign(x):
    """`y[a:b] = v`."""
    y = np.zeros(6)
    y[1:4] = x[:3] * 2.0
    y[4:] = np.sin(x[2:])
    return np.sum(y * np.arange(6.0))


@spec(x=A(6))
def slice_assign_step(x):
    """`y[::2] = v`."""
    y = x.copy()
    y[::2] = y[1::2] * y[::2]
    return np.sum(y * y)


@spec(x=A(4))
def slice_assign_overlapping_iadd(x):
    """`y[1:] += y[:-1]`: NumPy reads the old values of the overlapping slice."""
    y = x.copy()
    y[1:] += y[:-1]
    return np.sum(y**3)


@spec(x=A(3, 4))
def row_assign_2d(x):
    """Assign rows and a column of a 2-D array."""
    H = np.zeros((3, 4))
    H[0] = x[0] * 2.0
    H[1] = np.tanh(x[1] + H[0])
    H[:, 3] = x[:, 0] * x[:, 1]
    return np.sum(H * H)


@spec(x=A(2, 3))
def setitem_2d_element(x):
    """Write `A[i, j]` elements."""
    y = x.copy()
    y[0, 1] = y[1, 2] * y[0, 0]
    y[1, 0] = np.exp(y[0, 1])
    return np.sum(y * y)


@spec(x=A(3), n=3)
def scalar_iadd_imul(x, n):
    """`+=` and `*=` on a scalar accumulator."""
    s = 0.0
    p = 1.0
    for i in range(n):
        s += np.sum(x * x) * (i + 1)
        p *= np.sum(np.cos(x))
    return s + p


@spec(x=A(3))
def array_iadd_imul(x):
    """`+=` and `*=` on arrays (in place on a fresh array)."""
    y = x * 2.0
    y += x * x
    y *= np.sin(x)
    return np.sum(y)


@spec(x=A(3))
def overwrite_after_read(x):
    """An element is read, then overwritten: the gradient must use the old value."""
    y = x.copy()
    a = y[0] * y[1]
    y[0] = np.sin(y[1])
    return a + np.sum(y * y)


@spec(x=A(4, lo=0.5, hi=1.2))
def overwrite_in_loop_reads_old(x):
    """An in-place running product: `y[i] = y[i - 1] * y[i]` (cumprod in place)."""
    y = x.copy()
    for i in range(1, y.shape[0]):
        y[i] = y[i - 1] * y[i]
    return np.sum(y)


@spec(x=A(3))
def overwrite_whole_array(x):
    """`y[:] = f(y)`: the whole contents replaced by a function of the old ones."""
    y = x * 1.0
    y[:] = np.tanh(y) * y
    return np.sum(y * x)


@spec(x=A(4), n=4)
def fill_in_loop(x, n):
    """Fill a preallocated array in a loop, then reduce it."""
    out = np.zeros(n)
    for i in range(n):
        out[i] = np.sum(np.sin(x * (i + 1.0)))
    return np.sum(out * out)


@spec(x=A(4))
def setitem_negative_index(x):
    """`y[-1] = v`."""
    y = x.copy()
    y[-1] = y[0] * y[-1]
    return np.sum(y**2)


@spec(x=np.array([0.5, -0.7, 1.2, -0.3]))
def setitem_boolean_mask(x):
    """`y[y < 0] = 0.0` (a ReLU written by masking)."""
    y = x.copy()
    y[y < 0] = 0.0
    return np.sum(y * y * x)


@spec(label="pos", x=Pos(3))
@spec(label="neg", x=Neg(3))
def setitem_in_branch(x):
    """A write that happens in one branch only."""
    y = x.copy()
    if np.sum(x) > 0:
        y[0] = y[1] * y[2]
    return np.sum(y * y)


@spec(x=A(3))
def setitem_zeros_like(x):
    """Write into `np.zeros_like(x)` in a loop."""
    y = np.zeros_like(x)
    for i in range(x.shape[0]):
        y[i] = x[i] * np.sum(x[: i + 1])
    return np.sum(y)


@spec(x=A(4), n=3)
def mutate_copy_in_loop(x, n):
    """`*=` on elements of a copy, repeatedly."""
    y = x.copy()
    for i in range(n):
        y[i] *= 2.0 + y[i + 1]
    return np.sum(y * y)


def _filled(v):
    out = np.zeros((2, v.shape[0]))
    out[0] = v
    out[1] = v * v
    return out


@spec(x=A(3))
def mutation_in_helper(x):
    """A helper that writes into an array it created."""
    return np.sum(_filled(x) ** 2)


@spec(x=A(3))
def setitem_then_read_slice(x):
    """A write followed by a read of a slice that contains it."""
    y = np.zeros(4)
    y[1] = x[0]
    first = np.sum(y[:2] * x[1])
    y[1] = x[2] * x[2]
    return first + np.sum(y)


@spec(x=A(2, 2), n=3)
def matrix_rows_rewritten(x, n):
    """Rows of a 2-D state array rewritten from each other in a loop."""
    S = x.copy()
    for _ in range(n):
        S[0] = np.tanh(S[0] + S[1])
        S[1] = S[1] * S[0]
    return np.sum(S)


# ===========================================================================
# Aliasing: two names for one array, and NumPy views (Python semantics)
# ===========================================================================
category("aliasing")


@spec(x=A(3))
def alias_then_iadd(x):
    """`z = y; z += v` changes y too (they are one array)."""
    y = x * 1.0
    z = y
    z += np.exp(x)
    return np.sum(y * x)


@spec(x=A(4))
def view_then_write(x):
    """A slice is a view: a later write into the base shows through it."""
    y = x.copy()
    v = y[1:3]
    y[1] = y[0] * 2.0
    return np.sum(v * x[1:3])


@spec(x=A(2, 3))
def row_view_then_row_write(x):
    """`r = H[0]` is a view of the row; `H[0] = ...` changes what r reads."""
    H = x.copy()
    r = H[0]
    H[0] = np.tanh(H[1]) * H[0]
    return np.sum(r * r) + np.sum(H)


@spec(x=A(4))
def iadd_through_view(x):
    """`v = y[2:]; v *= 3` writes into y."""
    y = x * 1.0
    v = y[2:]
    v *= np.cos(x[:2])
    return np.sum(y * y)


@spec(x=A(3))
def list_alias_append(x):
    """`b = a; b.append(...)`: a sees the new element."""
    a = [x]
    b = a
    b.append(np.sin(x))
    return np.sum(np.stack(a) ** 2)


@spec(x=A(3))
def dict_alias_setitem(x):
    """`e = d; e["k"] = ...`: d sees the new entry."""
    d = {"k": x}
    e = d
    e["k"] = d["k"] * np.exp(x)
    return np.sum(d["k"])


# ===========================================================================
# Realistic models
# ===========================================================================
category("models")


@spec(wrt=("Wh", "Wx", "b"), Wh=A(3, 3), Wx=A(3, 2), b=A(3), xs=A(4, 2), h0=A(3))
def rnn_prealloc(Wh, Wx, b, xs, h0):
    """An RNN that fills a preallocated state array `H[t + 1] = tanh(...)`."""
    T = xs.shape[0]
    H = np.zeros((T + 1, h0.shape[0]))
    H[0] = h0
    for t in range(T):
        H[t + 1] = np.tanh(Wh @ H[t] + Wx @ xs[t] + b)
    return np.sum(H[1:] ** 2) / T


@spec(wrt=("Wh", "Wx", "Wy"), Wh=A(3, 3), Wx=A(3, 2), Wy=A(1, 3), xs=A(4, 2), ys=A(4, 1))
def rnn_list_outputs(Wh, Wx, Wy, xs, ys):
    """An RNN that appends outputs to a list, stacks them, and takes a squared loss."""
    h = np.zeros(3)
    outs = []
    for x in xs:
        h = np.tanh(Wh @ h + Wx @ x)
        outs.append(Wy @ h)
    pred = np.stack(outs)
    return np.mean((pred - ys) ** 2)


@spec(wrt="params", params={"Wf": A(2, 4), "Wc": A(2, 4)}, xs=A(3, 2))
def lstm_like(params, xs):
    """A gated cell with tuple state over a sequence, parameters in a dict."""
    h = np.zeros(2)
    c = np.zeros(2)
    for x in xs:
        z = np.concatenate([h, x])
        f = 1.0 / (1.0 + np.exp(-(params["Wf"] @ z)))
        c = f * c + (1.0 - f) * np.tanh(params["Wc"] @ z)
        h = np.tanh(c)
    return np.sum(h) + np.sum(c * c)


@spec(wrt=("v0", "drag"), v0=np.array([1.0, 2.0]), drag=0.3)
def simulate_until_ground(v0, drag):
    """A projectile stepped until it falls below ground; returns the distance."""
    pos = np.array([0.0, 0.0])
    vel = v0 * 1.0
    dt = 0.05
    steps = 0
    while pos[1] >= 0.0 or steps == 0:
        acc = -drag * vel + np.array([0.0, -9.8])
        vel = vel + dt * acc
        pos = pos + dt * vel
        steps = steps + 1
    return pos[0] + 0.1 * np.sum(vel * vel)


@spec(
    wrt="params",
    params={"W1": A(4, 3), "b1": A(4), "W2": A(2, 4), "b2": A(2)},
    x=A(5, 3),
    y=np.eye(2)[[0, 1, 1, 0, 1]],
)
def mlp_dict_params(params, x, y):
    """A two-layer MLP whose parameters live in a dict; softmax cross-entropy."""
    h = np.tanh(x @ params["W1"].T + params["b1"])
    logits = h @ params["W2"].T + params["b2"]
    logits = logits - np.max(logits, axis=1, keepdims=True)
    log_probs = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    return -np.sum(y * log_probs) / x.shape[0]


@spec(
    wrt=("pred", "target"),
    pred=np.array([0.1, 2.5, -1.7, 0.4]),
    target=np.array([0.3, 0.2, -0.1, 0.1]),
)
def piecewise_huber(pred, target, delta=1.0):
    """A Huber loss written element by element with branches."""
    total = 0.0
    for p, t in zip(pred, target):
        r = p - t
        if abs(r) <= delta:
            total = total + 0.5 * r * r
        else:
            total = total + delta * (abs(r) - 0.5 * delta)
    return total / len(pred)


@spec(x=np.array([-30.0, -1.5, 0.3, 2.0, 25.0]))
def softplus_branches(x):
    """Softplus with branches for large |x|, element by element."""
    total = 0.0
    for v in x:
        if v > 20.0:
            sp = v
        elif v < -20.0:
            sp = np.exp(v)
        else:
            sp = np.log1p(np.exp(v))
        total = total + sp * (1.0 + 0.1 * v)
    return total


@spec(wrt=("A_", "b"), A_=np.array([[2.0, 0.3], [0.3, 1.5]]), b=A(2), steps=5)
def unrolled_gradient_descent(A_, b, steps, lr=0.1):
    """An inner optimisation loop (meta-learning): differentiate through its steps."""
    w = np.zeros(2)
    for _ in range(steps):
        grad = A_ @ w - b
        w = w - lr * grad
    return np.sum(w * w)


def _dynamics(y, theta):
    return np.array([y[1], -theta[0] * np.sin(y[0]) - theta[1] * y[1]])


@spec(wrt=("y0", "theta"), y0=np.array([0.5, 0.0]), theta=np.array([1.5, 0.2]), n=10)
def euler_pendulum(y0, theta, n, dt=0.1):
    """Euler integration of a damped pendulum through a helper that builds an array."""
    y = y0
    for _ in range(n):
        y = y + dt * _dynamics(y, theta)
    return y[0] ** 2 + 0.5 * y[1] ** 2


@spec(wrt="coeffs", coeffs=[A(), A(), A(), A()], x=A(5))
def horner_polynomial(coeffs, x):
    """Horner's rule over a list of coefficients (the gradient is a list)."""
    y = np.zeros_like(x)
    for c in coeffs:
        y = y * x + c
    return np.sum(y * y)


@spec(wrt=("x", "w"), x=A(7), w=A(3))
def conv1d_loops(x, w):
    """A valid 1-D convolution written with loops into a preallocated output."""
    n = x.shape[0] - w.shape[0] + 1
    out = np.zeros(n)
    for i in range(n):
        for k in range(w.shape[0]):
            out[i] += x[i + k] * w[k]
    return np.sum(np.tanh(out))


@spec(wrt=("means", "log_scales"), means=A(3), log_scales=A(3), x=A(6))
def mixture_loop(means, log_scales, x):
    """A Gaussian mixture log-likelihood with a loop over components."""
    total = np.zeros_like(x)
    for k in range(means.shape[0]):
        z = (x - means[k]) / np.exp(log_scales[k])
        total = total + np.exp(-0.5 * z * z - log_scales[k])
    return -np.sum(np.log(total + 1e-12))


@spec(wrt="x", x=A(4, lo=0.5, hi=1.5), n_iter=200)
def fixed_point_iteration(x, n_iter, tol=1e-13):
    """A fixed-point solve `z = cos(z) * x` stopped by tolerance or an iteration cap."""
    z = np.zeros_like(x)
    for _ in range(n_iter):
        z_next = np.cos(z) * x
        if np.max(np.abs(z_next - z)) < tol:
            break
        z = z_next
    return np.sum(z)


# ===========================================================================
# Not in SPECS: tests/test_control.py uses these directly
# ===========================================================================


def mutates_argument(x):
    """Writes into the caller's array: Python semantics make the caller see it."""
    x[0] = x[0] * x[1]
    x *= 2.0
    return np.sum(x * x)


def long_loop_big_constant(h, W, xs):
    """1,000 steps whose body reads a large matrix W that the loop never changes.

    The reverse sweep needs per step only what the body's adjoint reads (the
    state h, a vector), never a copy of W per step.
    """
    for t in range(xs.shape[0]):
        h = np.tanh(W @ h + xs[t])
    return np.sum(h)


def helper_names_kept(x):
    """Calls `_outer` (which calls `_middle` and `_inner`): their names should appear."""
    return np.sum(_outer(x))
