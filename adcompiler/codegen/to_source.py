"""Python AST -> source text: astor where it works, `ast.unparse` where it does not.

astor (0.8) still refers to AST classes that Python 3.14 removed (`ast.Num`,
`ast.Str`, ...), so on such a Python it fails to import or to run. Then the
standard library's `ast.unparse` writes the same program: one line per
statement, the same names and the same expressions; only redundant
parentheses differ (``return (a, b)`` where astor writes ``return a, b``).
`tests/test_to_source.py` forces the fallback and checks that both give the
same AST.
"""

from __future__ import annotations

import ast
import contextlib
import math
import sys
import warnings
from typing import Any

import numpy as np


@contextlib.contextmanager
def _without_astors_warnings():
    """astor's own DeprecationWarnings silenced, and only they. On Python 3.12 and 3.13,
    astor reads `ast.Num`, `ast.Str`, ... on import, and `ast.Str` and `Constant.s` when it
    writes an f-string: each read warns (those names go in 3.14). A program run with
    `-W error::DeprecationWarning` (as the test suite is, for adcompiler's own code) keeps
    astor as its emitter, and so the same text as on 3.11. (`catch_warnings` swaps the
    process's filters: a filter another thread adds meanwhile may be undone; Python 3.11,
    where astor does not warn, skips it.)"""
    if sys.version_info < (3, 12):
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"astor(\.|$)")
        yield


with _without_astors_warnings():
    try:
        import astor
    except Exception:  # noqa: BLE001 - any failure to import astor means: use the fallback
        astor = None


def to_source(module: ast.Module) -> str:
    """The source of `module`, one line per statement, ending in a newline."""
    if astor is not None:
        try:
            with _without_astors_warnings():
                return astor.to_source(module, pretty_source="".join)
        except AttributeError:  # astor on an `ast` module without the classes it expects
            pass
    return unparse(module)


def unparse(module: ast.Module) -> str:
    """The fallback emitter: `ast.unparse` (which reads line numbers, so they are filled
    in), with astor's final newline."""
    return ast.unparse(ast.fix_missing_locations(module)) + "\n"


def constant_ast(value: Any) -> ast.expr:
    """The AST of a compile-time constant: literals, tuples, dtypes, slices."""
    if isinstance(value, float) and not math.isfinite(value):
        text = "np.nan" if math.isnan(value) else ("np.inf" if value > 0 else "-np.inf")
        return ast.parse(text, mode="eval").body
    if isinstance(value, tuple):
        return ast.Tuple([constant_ast(v) for v in value], ast.Load())
    if isinstance(value, slice):
        args = [constant_ast(v) for v in (value.start, value.stop, value.step)]
        return ast.Call(ast.Name("slice", ast.Load()), args, [])
    if isinstance(value, type):
        if value.__module__ == "builtins":
            return ast.Name(value.__name__, ast.Load())
        if value.__module__ == "numpy":
            return ast.parse(f"np.{value.__name__}", mode="eval").body
    if isinstance(value, np.dtype):
        return ast.parse(f"np.dtype({value.name!r})", mode="eval").body
    return ast.Constant(value)
