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
    if inspect.isfunction(fn) and fn.__name__ == "<lambda>":
        return parse_lambda(fn)
    if not inspect.isfunction(fn):
        name = _short(fn)
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


def _short(obj) -> str:
    """A name for `obj` in an error message (never the repr of a whole bound array)."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if name is None:
        text = repr(obj)
        name = text if len(text) <= 80 else text[:77] + "..."
    return name


def parse_lambda(fn) -> ParsedSource:
    """A lambda, read from its source line: the file is parsed and the lambda on the line
    where `fn` was made, with `fn`'s parameters, becomes ``def <lambda>(...): return ...``.
    Two such lambdas on one line cannot be told apart: that is refused."""
    try:
        file = inspect.getsourcefile(fn) or fn.__code__.co_filename
        all_lines, _ = inspect.findsource(fn)
    except (OSError, TypeError) as exc:
        raise SourceUnavailableError(
            f"cannot read the source of a lambda ({exc}); define it in a .py file "
            f"(functions typed into a REPL or made by exec have no source to read)"
        ) from None
    line = fn.__code__.co_firstlineno
    code = fn.__code__
    params = list(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])
    candidates = _lambdas_on_line(all_lines, line, params)
    where = f"{file}:{line}"
    if not candidates:
        raise SourceUnavailableError(
            f"cannot find the lambda made at {where} in its source (was the file edited "
            f"since it was imported?); write it as a `def`"
        )
    if len(candidates) > 1:
        raise SourceUnavailableError(
            f"{where} has {len(candidates)} lambdas taking ({', '.join(params)}): adcompiler "
            f"reads a lambda from its source line and cannot tell which one this is; put "
            f"them on separate lines, or write this one as a `def`"
        )
    lam = candidates[0]
    ret = gast.Return(value=lam.body)
    gast.copy_location(ret, lam.body)
    tree = gast.FunctionDef(
        name="<lambda>", args=lam.args, body=[ret], decorator_list=[], returns=None,
        type_comment=None, type_params=[],
    )  # fmt: skip
    gast.copy_location(tree, lam)
    return ParsedSource(tree, file, 1, [s.rstrip("\n") for s in all_lines], 0)


def _lambdas_on_line(all_lines: list[str], line: int, params: list[str]) -> list:
    """The `lambda` expressions starting on `line` (1-based) of the file whose parameters
    are `params`: the smallest enclosing statement that parses is searched."""
    import ast

    start = line - 1
    while start >= 0:  # the statement around the line: grow upwards until it parses
        for stop in range(line, min(len(all_lines), line + 200) + 1):
            text = textwrap.dedent("".join(all_lines[start:stop]))
            try:
                ast.parse(text)
            except SyntaxError:
                continue
            module = gast.parse(text)
            found = [
                node
                for node in gast.walk(module)
                if isinstance(node, gast.Lambda)
                and node.lineno + start == line
                and [a.id for a in node.args.args + node.args.kwonlyargs] == params
            ]
            if found:
                indent = len(all_lines[start]) - len(all_lines[start].lstrip())
                for node in gast.walk(module):  # line numbers and columns in the file
                    if hasattr(node, "lineno"):
                        node.lineno += start
                        node.col_offset = getattr(node, "col_offset", 0) + indent
                return found
            break
        start -= 1
        if line - start > 200:
            break
    return []
