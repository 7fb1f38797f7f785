"""The frontend: name resolution, lowering, and diagnostics for unsupported code."""

import inspect

import numpy as np
import pytest

import adcompiler as ad
from adcompiler.errors import UnsupportedSyntaxError
from adcompiler.frontend import lower_function
from adcompiler.ssa import verify
from tests import corpus_errors as e
from tests import corpus_models as m


def test_every_problem_is_reported_at_once_with_place_caret_and_suggestion():
    with pytest.raises(UnsupportedSyntaxError) as info:
        ad.grad(e.many_problems)
    err = info.value
    assert isinstance(err, SyntaxError)
    assert [d.message.split()[0] for d in err.diagnostics] == ["`try`", "`del`", "`with`"]
    text = str(err)
    line = inspect.getsourcelines(e.many_problems)[1]
    assert f"corpus_errors.py:{line + 1}:5: error: `try` is not supported" in text
    assert "    try:\n    ^" in text
    assert "suggestion:" in text
    assert err.lineno == line + 1 and err.filename.endswith("corpus_errors.py")


@pytest.mark.parametrize(
    "fn, message",
    [
        (e.unknown_function, "no derivative rule for `np.fft.fft`"),
        (e.assigns_into_array, "writing into the argument `x` would change the caller's array"),
        (e.uses_global_statement, "`global` is not supported"),
    ],
)
def test_unsupported_constructs_have_clear_messages(fn, message):
    with pytest.raises(UnsupportedSyntaxError, match=message) as info:
        ad.grad(fn)
    assert len(info.value.diagnostics) == 1, str(info.value)


def test_nothing_runs_before_the_errors():
    calls = []

    def spy(x):
        calls.append(x)
        return x

    with pytest.raises(UnsupportedSyntaxError):
        ad.grad(e.many_problems)
    assert calls == []


def test_lowering_resolves_numpy_under_any_alias():
    text = ad.ir(m.import_styles)
    assert text.count(" = exp(") == 1 and text.count(" = tanh(") == 1
    assert "sum(" in text


def test_helpers_are_inlined_and_globals_become_constants():
    fn = verify(lower_function(m.calls_helper))
    ops = [n.op.name for n in fn.body.nodes]
    assert ops.count("power") == 2
    fn = verify(lower_function(m.reads_global))
    consts = [n.attrs for n in fn.body.nodes if n.op.name == "const"]
    assert consts == [{"value": 3.0}]  # a scalar global is written as a literal
    fn = verify(lower_function(m.reads_global_array))
    consts = [n.attrs for n in fn.body.nodes if n.op.name == "const"]
    assert consts[0]["name"] == "WEIGHTS"  # an array global is referred to by its name
    x = np.ones(3)
    np.testing.assert_allclose(ad.grad(m.reads_global_array)(x), m.WEIGHTS)


def test_tuples_are_symbolic_and_shapes_unpack():
    def f(x):
        a, b = x * 2.0, x * 3.0
        n, d = x.shape
        pair = (a, b)
        return np.sum(pair[0] + pair[1]) / n

    fn = verify(lower_function(f))
    assert "tuple" not in [n.op.name for n in fn.body.nodes]
    ad.check_grad(f, (np.random.default_rng(1).normal(size=(3, 2)),))


def test_method_calls_map_to_numpy_functions():
    def f(x, y):
        z = x.reshape(2, -1).T.dot(y)
        return z.sum(axis=0).mean() + x.astype(float).copy().max()

    rng = np.random.default_rng(2)
    ad.check_grad(f, (rng.normal(size=6), rng.normal(size=(2, 3))), wrt=("x", "y"))


def test_static_arguments_must_be_known_at_compile_time():
    def f(x, k):
        return np.sum(x, axis=k)

    with pytest.raises(UnsupportedSyntaxError, match="must be known when the function is compiled"):
        ad.grad(f)
