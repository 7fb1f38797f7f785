"""The emitter's fallback (issue 16): where astor does not work (Python 3.14+), generated
code is written by `ast.unparse`, and it is the same program."""

import ast
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import adcompiler as ad
from adcompiler.codegen import emit, to_source
from tests import corpus_control as C
from tests import corpus_models as m

astor = pytest.importorskip("astor")


def fresh(fn):
    """A new function object for `fn` (same code): nothing cached in memory applies to it."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__,
                              fn.__closure__)  # fmt: skip
    copy.__kwdefaults__ = fn.__kwdefaults__
    return copy


@pytest.mark.slow
def test_the_fallback_writes_the_same_program_for_the_whole_corpus(monkeypatch):
    """Every module the emitter writes while the corpus is compiled (gradients, helpers'
    forward and adjoint functions, specialized versions): astor's text and the fallback's
    parse to the same AST."""
    monkeypatch.setenv("ADCOMPILER_DISK_CACHE", "0")
    modules = []

    def recording(module):
        modules.append(module)
        return to_source.to_source(module)

    monkeypatch.setattr(emit, "to_source", recording)
    for case in C.cases():
        fn = fresh(case.fn)
        try:
            g = ad.value_and_grad(fn, wrt=case.wrt)
            g(*C.build(case))
            g(*C.build(case))  # the second call builds the specialized version
        except (ad.UnsupportedSyntaxError, NotImplementedError, TypeError, ValueError):
            continue  # refused by design (test_control says which); nothing to compare
    assert len(modules) > 150
    for module in modules:
        with to_source._without_astors_warnings():  # (3.12+: astor's own, about ast.Str)
            by_astor = astor.to_source(module, pretty_source="".join)
        by_unparse = to_source.unparse(module)
        assert ast.dump(ast.parse(by_unparse)) == ast.dump(ast.parse(by_astor)), by_unparse
        assert by_unparse.count("\n") == by_astor.count("\n")  # one line per statement
        # As text, they differ only where astor drops redundant parentheses:
        # `return a, b` (astor), `return (a, b)` (ast.unparse).


def test_forced_fallback_end_to_end(monkeypatch):
    """With astor unavailable (as on Python 3.14), a gradient is generated, loaded and
    computes what the astor-made one computes."""
    monkeypatch.setenv("ADCOMPILER_DISK_CACHE", "0")
    rng = np.random.default_rng(0)
    shapes = [(4, 5), (5,), (5, 3), (3,), (6, 4)]
    args = [rng.normal(size=s) for s in shapes] + [np.eye(3)[rng.integers(0, 3, 6)]]
    wrt = ("W1", "b1", "W2", "b2")
    expected = ad.grad(fresh(m.mlp), wrt=wrt)(*args)
    with_astor = ad.source(ad.grad(fresh(m.mlp), wrt=wrt), generic=True)
    monkeypatch.setattr(to_source, "astor", None)
    g = ad.grad(fresh(m.mlp), wrt=wrt)
    got = g(*args)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    without = ad.source(g, generic=True)
    assert ast.dump(ast.parse(without)) == ast.dump(ast.parse(with_astor))
    assert "# line" in without  # the comments quoting the user's lines are there


def test_an_astor_that_fails_at_run_time_falls_back(monkeypatch):
    class BrokenAstor:
        @staticmethod
        def to_source(module, pretty_source=None):
            raise AttributeError("module 'ast' has no attribute 'Num'")

    monkeypatch.setattr(to_source, "astor", BrokenAstor)
    module = ast.parse("def f(x):\n    return x * 2\n")
    assert to_source.to_source(module) == "def f(x):\n    return x * 2\n"


_GRADIENT_SOURCE = """
import adcompiler as ad
from adcompiler.codegen import to_source
from tests import corpus_control as C, corpus_models as m
assert to_source.astor is not None, "the fallback was taken"
print(ad.source(ad.grad(m.mlp, wrt=("W1", "b1", "W2", "b2")), generic=True), end="")
print(ad.source(ad.grad(C.print_in_loop), generic=True), end="")  # an f-string
"""


@pytest.mark.skipif(
    sys.version_info < (3, 12), reason="astor warns from Python 3.12 on (.ci/run runs 3.12+)"
)
def test_astors_deprecation_warnings_do_not_fail_a_strict_program():
    """astor's import reads `ast.Num` (deprecated since 3.12), and it reads `ast.Str` when
    it writes an f-string. Under `-W error::DeprecationWarning` the first became an
    exception and the emitter silently fell back to `ast.unparse` (other text than on
    3.11); the second failed the generation. astor's own warnings are silenced there, so
    the strict program gets astor and the same generated code."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "ADCOMPILER_DISK_CACHE": "0", "PYTHONPATH": str(root)}
    run = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", _GRADIENT_SOURCE],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    expected = ad.source(ad.grad(fresh(m.mlp), wrt=("W1", "b1", "W2", "b2")), generic=True)
    expected += ad.source(ad.grad(fresh(C.print_in_loop)), generic=True)
    assert "f'step {i}" in expected
    assert run.stdout == expected
