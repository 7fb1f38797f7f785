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
import math
import warnings
from typing import Any

import numpy as np

with warnings.catch_warnings():
    # On import, astor reads `ast.Num`, `ast.Str`, ... (deprecated since Python 3.12; each
    # read warns once). Those warnings are astor's own: they are silenced here, and only
    # they, so that a program (or the test suite) run with `-W error::DeprecationWarning`
    # keeps astor as its emitter and gets the same text as on 3.11.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"astor(\.|$)")
    try:
        import astor
    except Exception:  # noqa: BLE001 - any failure to import astor means: use the fallback
        astor = None


def to_source(module: ast.Module) -> str:
    """The source of `module`, one line per statement, ending in a newline."""
    if astor is not None:
        try:
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
