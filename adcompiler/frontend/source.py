"""Reading a function's source: where it lives, its lines, its gast tree."""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass

import gast

from adcompiler.errors import SourceUnavailableError
from adcompiler.ssa import Loc


@dataclass
class ParsedSource:
    """A function's definition as gast, with what is needed to point back into its file."""

    tree: gast.FunctionDef
    file: str
    first_line: int  # line number of the `def` in `file`
    lines: list[str]  # the dedented source lines
    indent: int  # columns removed by dedenting

    def loc(self, node) -> Loc:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return Loc(
            self.file, self.first_line + line - 1, col + self.indent, " " * self.indent + text
        )


def parse_function(fn) -> ParsedSource:
    """Parse the source of `fn` (a plain Python function) with gast."""
    name = getattr(fn, "__qualname__", repr(fn))
    if not inspect.isfunction(fn):
        raise SourceUnavailableError(
            f"adcompiler differentiates Python functions written with `def`; got {name!r} "
            f"of type {type(fn).__name__} (wrap it in a def, or register a rule for it)"
        )
    try:
        # A decorated function (functools.wraps sets __wrapped__) is the decorator's
        # wrapper: read the wrapper's own source, never the function it wraps.
        raw_lines, first_line = inspect.getsourcelines(
            fn.__code__ if hasattr(fn, "__wrapped__") else fn
        )
        file = inspect.getsourcefile(fn) or fn.__code__.co_filename
    except (OSError, TypeError) as exc:
        raise SourceUnavailableError(
            f"cannot read the source of {name!r} ({exc}); define it in a .py file "
            f"(functions typed into a REPL or made by exec have no source to read)"
        ) from None
    raw = "".join(raw_lines)
    source = textwrap.dedent(raw)
    indent = len(raw_lines[0]) - len(raw_lines[0].lstrip()) if raw_lines else 0
    module = gast.parse(source)
    tree = module.body[0]
    if isinstance(tree, gast.Expr) or not isinstance(tree, gast.FunctionDef):
        raise SourceUnavailableError(
            f"{name!r} is not a `def` function (a lambda?); write it as `def {name}(...):`"
        )
    return ParsedSource(tree, file, first_line, source.splitlines(), indent)
