"""Find every construct the compiler cannot differentiate, before lowering.

    def f(x):                      model.py:3:5: error: `try` is not supported
        try:               ──▶         try:
            ...                        ^
                                     suggestion: move error handling outside the function ...

`find_unsupported(parsed)` returns all diagnostics in source order; the
frontend raises them together so the user sees every problem at once.
"""

from __future__ import annotations

import gast

from adcompiler.errors import Diagnostic
from adcompiler.frontend.source import ParsedSource

# Statement and expression types refused here, with what to write instead.
UNSUPPORTED: dict[type, tuple[str, str]] = {
    gast.Try: ("`try` is not supported", "move error handling to the caller"),
    gast.With: ("`with` is not supported", "move the context manager to the caller"),
    gast.AsyncWith: ("`async with` is not supported", "differentiate a synchronous function"),
    gast.AsyncFor: ("`async for` is not supported", "differentiate a synchronous function"),
    gast.AsyncFunctionDef: (
        "`async def` is not supported",
        "differentiate a synchronous function",
    ),
    gast.Await: ("`await` is not supported", "differentiate a synchronous function"),
    gast.Yield: ("`yield` is not supported", "return a list or an array instead of yielding"),
    gast.YieldFrom: ("`yield from` is not supported", "return a list or array instead"),
    gast.Global: (
        "`global` is not supported",
        "pass the value in as an argument and return the new value",
    ),
    gast.Nonlocal: (
        "`nonlocal` is supported only in a function defined inside the one differentiated",
        "pass the value in as an argument and return the new value",
    ),
    gast.ClassDef: ("class definitions are not supported", "define the class at module level"),
    gast.Raise: ("`raise` is not supported", "validate inputs before calling the gradient"),
    gast.Delete: ("`del` is not supported", "drop the `del`; values are freed when unused"),
    gast.Import: ("`import` inside the function is not supported", "import at module level"),
    gast.ImportFrom: ("`import` inside the function is not supported", "import at module level"),
    gast.Set: ("sets are not supported", "use a list or a tuple"),
    gast.SetComp: ("set comprehensions are not supported", "use a list comprehension"),
    gast.NamedExpr: ("`:=` is not supported", "assign on a line of its own"),
    gast.JoinedStr: ("f-strings are not supported", "compute values only; format outside"),
}

# Supported by a later stage of the compiler; refused for now with a rewrite.
NOT_YET: dict[type, tuple[str, str]] = {}


def find_unsupported(parsed: ParsedSource) -> list[Diagnostic]:
    """All unsupported constructs in the body of `parsed`, in source order."""
    found: list[Diagnostic] = []
    tree = parsed.tree
    if tree.args.kwarg:
        found.append(
            Diagnostic(
                parsed.loc(tree),
                "`**kwargs` parameters are not supported",
                "name each keyword parameter",
            )
        )
    allowed = _allowed_in_context(tree)
    for stmt in tree.body:
        for node in gast.walk(stmt):
            entry = UNSUPPORTED.get(type(node)) or NOT_YET.get(type(node))
            if entry is None or id(node) in allowed:
                continue
            message, suggestion = entry
            found.append(Diagnostic(parsed.loc(node), message, suggestion))
    found.sort(key=lambda d: (d.loc.line, d.loc.col))
    return _one_per_place(found)


def _allowed_in_context(root) -> set[int]:
    """Ids of nodes refused elsewhere but fine where they stand: f-strings given to
    `print`, a starred name in an unpacking target (`first, *rest = t`), and `nonlocal`
    in a function defined inside the function (it names a variable of an enclosing
    function that is being lowered too, see `Lowering.assign_nonlocal`)."""
    allowed: set[int] = set()
    for node in gast.walk(root):
        if isinstance(node, gast.FunctionDef) and node is not root:
            allowed.update(id(n) for n in node.body if isinstance(n, gast.Nonlocal))
        if (
            isinstance(node, gast.Call)
            and isinstance(node.func, gast.Name)
            and node.func.id == "print"
        ):
            for a in node.args:
                if isinstance(a, gast.JoinedStr):
                    allowed.update(id(n) for n in gast.walk(a) if isinstance(n, gast.JoinedStr))
        if isinstance(node, gast.Starred) and isinstance(node.ctx, gast.Store):
            allowed.add(id(node))
    return allowed


def _one_per_place(found: list[Diagnostic]) -> list[Diagnostic]:
    """Keep one diagnostic per place and message."""
    seen = set()
    out = []
    for d in found:
        key = (d.loc.line, d.loc.col, d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
