"""Errors users see, and the diagnostics they are made of.

Every construct the compiler cannot differentiate is collected as a
`Diagnostic` while the function is read; they are raised together, before any
code runs, as one `UnsupportedSyntaxError`::

    model.py:12:9: error: `while` loops are not supported yet
        while err > tol:
        ^
      suggestion: rewrite as `for _ in range(max_steps):` with `if err <= tol: break`
"""

from __future__ import annotations

from dataclasses import dataclass

from adcompiler.ssa import Loc


@dataclass(frozen=True)
class Diagnostic:
    """One problem at one place in the user's source."""

    loc: Loc
    message: str
    suggestion: str = ""

    def format(self) -> str:
        lines = [f"{self.loc}: error: {self.message}"]
        if self.loc.text:
            text = self.loc.text.rstrip("\n")
            stripped = text.lstrip()
            indent = len(text) - len(stripped)
            lines.append(f"    {stripped}")
            lines.append("    " + " " * max(0, self.loc.col - indent) + "^")
        if self.suggestion:
            lines.append(f"  suggestion: {self.suggestion}")
        return "\n".join(lines)


class UnsupportedSyntaxError(SyntaxError):
    """The function uses constructs adcompiler cannot differentiate; lists all of them."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        first = self.diagnostics[0].loc
        count = len(self.diagnostics)
        head = f"{count} construct{'s' if count > 1 else ''} adcompiler cannot differentiate:"
        body = "\n".join(d.format() for d in self.diagnostics)
        super().__init__(f"{head}\n{body}")
        self.filename, self.lineno, self.offset = first.file, first.line, first.col + 1
        self.text = first.text

    def __str__(self) -> str:  # SyntaxError's own __str__ would show only the first place
        return self.msg


class SourceUnavailableError(ValueError):
    """The source of a function cannot be read (defined in a REPL, builtin, ...)."""


class DifferentiationTypeError(TypeError):
    """A value has the wrong type for what was asked (integer wrt, non-scalar output)."""


class WrtError(ValueError):
    """A `wrt` names an argument the function does not have, or names one twice."""


class SpecializationMismatchError(AssertionError):
    """With ADCOMPILER_CHECK=1: a version specialized on its arguments' shapes disagrees
    with the generic version (names the function, the signature, the output and the
    rewrite; adcompiler/specialize/check.py)."""


class NonFiniteError(FloatingPointError):
    """Code generated with ``check_finite=True`` computed a NaN or an infinity: the message
    names the user's line (file.py:LINE and its text), whether the value is a forward value,
    an adjoint or a tangent (and of which variable), the operator, and a summary of each
    input (shape, min, max, how many are not finite)."""
