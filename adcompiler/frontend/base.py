"""What the parts of the frontend's `Lowering` (lower.py and its mixins: containers,
control, methods, records, views) share: the kinds of values a name can hold besides an IR
value, and the error one expression reports. The mixins import it, never lower.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adcompiler import depends

MAX_INLINE_DEPTH = 32  # calls of helpers and nested functions inlined into each other


# a write into an object other functions hold, refused inside an `if` or a loop
IN_REGION_HINT = (
    "do the write outside the `if` or loop (compute the new value there and write it "
    "after), or return the new value and assign it in the enclosing function"
)

@dataclass(frozen=True)
class Static:
    """A value known at compile time: a literal, a module, a function, a global."""

    obj: Any
    name: str | None = None  # the global or closure variable it was read from
    # where it was read (a global, a cell, an attribute or item of one): a fact the
    # generated code relies on (adcompiler.depends)
    origin: depends.Fact | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, eq=False)
class LocalFunction:
    """A function defined inside the function being lowered (`def` or `lambda`).

    `scope` is the `Lowering` of the function that defines it: a call reads the
    enclosing variables from there, as they are at the call (Python's closures are
    lexical and late-binding), not from the caller."""

    name: str
    names: list
    defaults: dict
    body: list | None
    expression: Any
    scope: Any = None
    vararg: str | None = None  # the name of its `*args` parameter
    positional: int | None = None  # how many of `names` are positional


class LoweringError(Exception):
    """One problem in one expression; collected as a diagnostic (unless `silent`: a
    consequence of a problem already reported)."""

    def __init__(self, node, message: str, suggestion: str = "", silent: bool = False):
        super().__init__(message)
        self.node = node
        self.message = message
        self.suggestion = suggestion
        self.silent = silent


@dataclass(eq=False)
class Stale:
    """A name whose value NumPy would have changed in a way the compiler cannot follow:
    reading it again is an error."""

    name: str
    message: str
    suggestion: str
