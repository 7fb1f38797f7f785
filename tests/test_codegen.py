"""Generated code: golden files, names, comments, and that Python tooling can see it.

Regenerate the golden files after an intended change with
``ADCOMPILER_UPDATE_GOLDEN=1 python -m pytest tests/test_codegen.py`` and review the diff.
"""

import inspect
import linecache
import os
import re
import traceback
from pathlib import Path

import numpy as np
import pytest

import adcompiler as ad
from tests import corpus_models as m

GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "rnn": (m.rnn, ("Wh", "Wx", "b")),
    "damped_until_small": (m.damped_until_small, ("x", "rate")),
    "logistic_regression": (m.logistic_regression, ("w", "b")),
    "mlp": (m.mlp, ("W1", "b1", "W2", "b2")),
    "broadcast_reduce": (m.broadcast_reduce, ("a", "b", "c")),
}


def normalized(source: str) -> str:
    """Drop the absolute path of the checkout from the docstring."""
    source = source.replace(f"from {Path(__file__).resolve().parent.parent}/", "from ")
    return re.sub(r"from .*corpus_models\.py", "from tests/corpus_models.py", source)


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_source_matches_golden_file(name):
    fn, wrt = CASES[name]
    source = normalized(ad.source(ad.value_and_grad(fn, wrt=wrt), generic=True))
    path = GOLDEN / f"{name}_value_and_grad.py"
    if os.environ.get("ADCOMPILER_UPDATE_GOLDEN") or not path.exists():
        path.write_text(source)
    assert source == path.read_text(), f"generated code changed; review and update {path}"


def test_dict_parameters_golden_file():
    rng = np.random.default_rng(0)
    params = {"W1": rng.normal(size=(3, 4)), "b1": np.zeros(4),
              "W2": rng.normal(size=(4, 2)), "b2": np.zeros(2)}  # fmt: skip
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    g = ad.value_and_grad(m.mlp_params, wrt="params")
    value, grads = g(params, x, y)
    assert set(grads) == set(params) and value == pytest.approx(m.mlp_params(params, x, y))
    source = normalized(ad.source(g, generic=True))
    path = GOLDEN / "mlp_params_value_and_grad.py"
    if os.environ.get("ADCOMPILER_UPDATE_GOLDEN") or not path.exists():
        path.write_text(source)
    assert source == path.read_text(), f"generated code changed; review and update {path}"


def test_names_follow_the_policy():
    source = ad.source(ad.grad(m.mlp, wrt=("W1", "b1")), generic=True)
    assert "def mlp_grad(W1, b1, W2, b2, x, y):" in source
    for name in ("W1_bar", "b1_bar", "h_bar", "logits_bar"):
        assert re.search(rf"\b{name} = ", source), name
    assert "# line " in source and "# adjoint of line " in source


def test_adjoint_names_never_collide_with_user_names():
    def f(x, x_bar):
        y_bar = x * x_bar
        return np.sum(y_bar * x)

    source = ad.source(ad.grad(f, wrt=("x", "x_bar")))
    rng = np.random.default_rng(0)
    args = (rng.normal(size=3), rng.normal(size=3))
    ad.check_grad(f, args, wrt=("x", "x_bar"))
    assert "def f_grad(x, x_bar):" in source
    assert "x_bar_1" in source  # the adjoint of x had to step aside


def test_user_names_colliding_with_generated_globals_are_renamed():
    def f(a, b):
        unbroadcast = a * b
        check_float = unbroadcast + 1.0
        return check_float.sum()

    rng = np.random.default_rng(0)
    ad.check_grad(f, (rng.normal(size=(2, 3)), rng.normal(size=3)), wrt=(0, 1))


def test_parameter_named_like_a_generated_global_is_refused():
    def f(unbroadcast, x):
        return np.sum(x * unbroadcast)

    with pytest.raises(ValueError, match="parameter `unbroadcast`"):
        ad.grad(f, wrt="x")


def test_inspect_getsource_shows_generated_code():
    g = ad.grad(m.logistic_regression, wrt="w")
    assert inspect.getsource(g) == ad.source(g, generic=True)
    assert linecache.getline(g.__code__.co_filename, 1).startswith("def logistic_regression_grad")


def test_traceback_shows_the_generated_line_and_its_comment():
    g = ad.grad(m.logistic_regression, wrt="w")
    w, x, y = np.ones(3), np.ones((4, 2)), np.ones(4)  # x does not match w
    with pytest.raises(ValueError) as info:
        g(w, 0.0, x, y)
    text = "".join(traceback.format_exception(info.value))
    assert "logistic_regression_grad" in text and "= x @ w" in text
    # the comment above the failing statement quotes the user's line
    lines = ad.source(g).splitlines()
    failing = next(i for i, line in enumerate(lines) if "= x @ w" in line and "#" not in line)
    assert "logits = x @ w + b" in lines[failing - 1]


def test_temporaries_read_once_are_written_inline():
    def f(x):
        return np.sum(np.tanh(np.exp(x) + 1.0))

    source = ad.source(ad.value_and_grad(f))
    assert "np.tanh(np.exp(x) + 1.0)" in source or "np.tanh(exp + 1.0)" in source


def test_the_max_that_shifts_a_logsumexp_is_not_differentiated():
    """`x - max(x)` inside a logsumexp or a log-softmax: the max's derivative is exactly
    zero, so no `max_adjoint` is emitted; elsewhere it is, and both are right."""

    def log_softmax_loss(x, y):
        shifted = x - np.max(x, axis=1, keepdims=True)
        return -np.sum(y * (shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))))

    def logsumexp(x):
        m = np.max(x, axis=0)
        return np.sum(np.log(np.sum(np.exp(x - m), axis=0)) + m)

    def not_a_shift(x):
        m = np.max(x, axis=0)
        return np.sum((x - m) ** 2)

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 3)), np.eye(3)[[0, 2, 1, 0]]
    for f, args, emitted in ((log_softmax_loss, (x, y), False), (logsumexp, (x,), False),
                             (not_a_shift, (x,), True)):  # fmt: skip
        g = ad.grad(f)
        assert ("max_adjoint" in ad.source(g)) is emitted, f.__name__
        ad.check_grad(f, args)


def _sigmoid_sum(z):
    return np.sum(1.0 / (1.0 + np.exp(-z)))


def test_the_sigmoid_adjoint_reads_only_the_sigmoid():
    """`d(1/a)/da = -(1/a)**2` reads only the result, the two negations the chain
    `1 / (1 + exp(-z))` makes cancel, and `g * s * s * exp(-z)` is `g * s * (1 - s)`:
    neither `1 + exp(-z)` nor `exp(-z)` is kept for the adjoint."""
    g = ad.grad(_sigmoid_sum)
    z = np.linspace(-4.0, 4.0, 9)
    s = 1.0 / (1.0 + np.exp(-z))
    np.testing.assert_allclose(g(z), s * (1 - s), rtol=1e-14)
    source = ad.source(g, generic=True)
    primal, adjoint = source.split("# adjoint of")
    assert "divide_const = 1.0 / (1.0 + np.exp(-z))" in primal, source
    assert "exp" not in adjoint.split("\n", 1)[1], source
    assert "* (1.0 - divide_const)" in adjoint, source


def _sigmoid_loop(w, xs):
    h = np.zeros(w.shape[1])
    for t in range(xs.shape[0]):
        h = 1.0 / (1.0 + np.exp(-(xs[t] @ w + h)))
    return np.sum(h)


def test_a_sigmoid_in_a_loop_saves_only_its_result():
    g = ad.grad(_sigmoid_loop)
    rng = np.random.default_rng(0)
    w, xs = rng.standard_normal((3, 4)), rng.standard_normal((5, 3))
    eps, e = 1e-6, np.zeros_like(w)
    e[1, 2] = eps
    numeric = (_sigmoid_loop(w + e, xs) - _sigmoid_loop(w - e, xs)) / (2 * eps)
    np.testing.assert_allclose(g(w, xs)[1, 2], numeric, rtol=1e-7)
    source = ad.source(g, generic=True)
    assert source.count("_saved = [None] * ") == 2, source  # the sigmoid and xs[t] @ w's rows
    assert "exp" not in source.split("# adjoint of")[1], source
