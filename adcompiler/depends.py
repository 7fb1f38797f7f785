"""What generated code depends on besides its arguments: the globals and closure cells
the compiler read while lowering, each recorded as a *fact* checked at call time.

The frontend resolves a name that is not a local (a module global, a closure cell,
an attribute of a module or an item of a global dict read through one) while
compiling: a number is folded into the code (`x * 2.0`, `axis=0`, `range(3)`), a
function is inlined, an array is bound as a constant of the generated code. Each
such read is a `Fact` (where it was read, the path taken, the object found), and
a gradient is valid only while every fact still holds. `Depends.holds` checks them
all in one compiled expression:

    SCALE = 2.0                       G0.get('SCALE', MISSING) is V0 or ... == V0
    def f(x):               ──▶       G0.get('np', MISSING) is V1
        return np.sum(x * SCALE)

identity first, then (for immutable values) type and equality; an array must be the
same object with the same shape (the code reads it when it runs, so a write into it
is seen); a global list or dict must hold the same items (a loop over it is unrolled,
its items folded). When a fact fails, the api regenerates the function (`api.Guarded`).

Facts are recorded into every active `recording()`: a gradient's build records the
facts of the helpers it inlines (two levels down too), and a cached piece of
generated code (a helper's forward and adjoint functions) `replay`s its facts into
the builds that reuse it.
"""

from __future__ import annotations

import hashlib
import marshal
import sys
import threading
import types
from contextlib import contextmanager
from typing import Any

import numpy as np

MISSING = object()

# Attributes of these modules (np.sum, math.pi) are taken as fixed: only the name the
# module is bound to is checked.
LIBRARIES = ("numpy", "scipy", "math", "builtins", "operator", "functools")

_LITERALS = (int, float, complex, str, bytes, bool, type(None), slice, np.generic, np.dtype)


class Fact:
    """One read: `scope` is a module's globals dict or a closure cell, `name` the
    variable, `path` the attribute and item steps taken from it, `value` what was found."""

    __slots__ = ("scope", "name", "path", "value", "shape", "items")

    def __init__(self, scope, name: str, path: tuple, value: Any):
        self.scope, self.name, self.path, self.value = scope, name, path, value
        self.shape = value.shape if type(value) is np.ndarray else None
        self.items = snapshot(value) if type(value) in (list, dict) else None

    def child(self, kind: str, key: Any, value: Any) -> Fact | None:
        """The fact for `value`, read from this one's value by an attribute or an item;
        None where nothing needs recording (an attribute of a library module) or the
        step cannot be written down (an index that is not a constant)."""
        if isinstance(self.value, types.ModuleType) and _is_library(self.value):
            return None
        if self.shape is not None and not _is_literal(value):
            return None  # a view of a global array (`W.T`, `W[0]`): the array's fact covers it
        if not (isinstance(key, (str, int)) or _is_literal(key) and isinstance(key, tuple)):
            return None
        return Fact(self.scope, self.name, (*self.path, (kind, key)), value)

    @property
    def key(self) -> tuple:
        return (id(self.scope), self.name, repr(self.path))

    def where(self) -> str:
        """How it reads in the source: ``CFG['k']``, ``config.SCALE``."""
        text = self.name
        for kind, key in self.path:
            text += f".{key}" if kind == "attr" else f"[{key!r}]"
        return text

    def current(self) -> Any:
        """What the read finds now (MISSING if it fails)."""
        try:
            if isinstance(self.scope, dict):
                value = self.scope.get(self.name, MISSING)
            else:
                value = self.scope.cell_contents
            for kind, key in self.path:
                value = getattr(value, key) if kind == "attr" else value[key]
            return value
        except Exception:  # noqa: BLE001 - a read that fails now: the fact does not hold
            return MISSING


def _is_library(module: types.ModuleType) -> bool:
    return module.__name__.split(".")[0] in LIBRARIES


def _is_literal(value) -> bool:
    if isinstance(value, tuple):
        return all(_is_literal(v) for v in value)
    return isinstance(value, _LITERALS) or value is Ellipsis


def _is_nan(value) -> bool:
    return isinstance(value, (float, np.floating)) and value != value


def snapshot(value, within: frozenset = frozenset()) -> tuple:
    """What a global list or dict holds: its type, keys and items (by identity), and the
    same of the lists and dicts in it (a loop over a list folds its items)."""
    within = within | {id(value)}
    pairs = value.items() if type(value) is dict else enumerate(value)
    return (type(value), [
        (key, item, snapshot(item, within)
         if type(item) in (list, dict) and id(item) not in within else None)
        for key, item in pairs
    ])  # fmt: skip


def same_items(current, items: tuple) -> bool:
    """A global list or dict still holds what `snapshot` saw (the same objects)."""
    kind, saved = items
    if type(current) is not kind or len(current) != len(saved):
        return False
    pairs = current.items() if kind is dict else enumerate(current)
    for (key, item), (old_key, old_item, inner) in zip(pairs, saved):
        if key != old_key or item is not old_item:
            return False
        if inner is not None and not same_items(item, inner):
            return False
    return True


class Depends:
    """The facts one piece of generated code relies on, and a fast check of them all."""

    def __init__(self, facts=()):
        self.facts: dict[tuple, Fact] = {}
        for fact in facts:
            self.add(fact)
        self._check = None

    def add(self, fact: Fact) -> None:
        if fact.key not in self.facts:
            self.facts[fact.key] = fact
            self._check = None

    def __iter__(self):
        return iter(self.facts.values())

    def __len__(self) -> int:
        return len(self.facts)

    def holds(self) -> bool:
        """Whether every fact still holds (a fraction of a microsecond per fact)."""
        return self.checker()()

    def checker(self):
        """The function (no arguments) that `holds` calls: one compiled expression."""
        if self._check is None:
            self._check = _compile_check(list(self.facts.values()))
        return self._check

    def changed(self) -> list[Fact]:
        """The facts that no longer hold (slow; for messages and tests)."""
        return [fact for fact in self if not _compile_check([fact])()]


def _compile_check(facts: list[Fact]):
    """One function that checks every fact: ``G0.get('SCALE', M) is V0 or ...``."""
    namespace: dict = {"M": MISSING, "same_items": same_items}
    scopes: dict[int, str] = {}
    terms = []
    for i, fact in enumerate(facts):
        if id(fact.scope) not in scopes:
            scopes[id(fact.scope)] = f"S{len(scopes)}"
            namespace[scopes[id(fact.scope)]] = fact.scope
        scope = scopes[id(fact.scope)]
        if isinstance(fact.scope, dict):
            read = f"{scope}.get({fact.name!r}, M)"
        else:
            read = f"{scope}.cell_contents"
        for kind, key in fact.path:
            read = f"getattr({read}, {key!r})" if kind == "attr" else f"{read}[{key!r}]"
        value = f"V{i}"
        namespace[value] = fact.value
        if fact.shape is not None:
            terms.append(f"({read} is {value} and {value}.shape == {fact.shape!r})")
        elif fact.items is not None:
            namespace[f"I{i}"] = fact.items
            terms.append(f"same_items({read}, I{i})")
        elif _is_literal(fact.value):
            namespace[f"T{i}"] = type(fact.value)
            same = "x != x" if _is_nan(fact.value) else f"x == {value}"
            terms.append(f"((x := {read}) is {value} or type(x) is T{i} and {same})")
        else:
            terms.append(f"{read} is {value}")
    body = " and\n            ".join(terms) or "True"
    source = (
        "def holds():\n"
        "    try:\n"
        f"        return ({body})\n"
        "    except Exception:\n"
        "        return False\n"
    )
    exec(compile(source, "<adcompiler: facts>", "exec"), namespace)  # noqa: S102 - our own
    return namespace["holds"]


# ---------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------

_local = threading.local()  # .active: the recordings open in this thread


@contextmanager
def recording():
    """Collect the facts recorded while the block runs (nested recordings each get them)."""
    depends = Depends()
    active = _local.__dict__.setdefault("active", [])
    active.append(depends)
    try:
        yield depends
    finally:
        active.remove(depends)


def record(fact: Fact | None) -> None:
    if fact is not None:
        for depends in getattr(_local, "active", ()):
            depends.add(fact)


def replay(depends: Depends | None) -> None:
    """Record the facts of a cached piece of code into the builds that reuse it."""
    if depends is not None:
        for fact in depends:
            record(fact)


def of(f) -> Depends | None:
    """The facts a function adcompiler generated relies on (None for others), after
    regenerating it if they no longer hold: what a transform of it starts from."""
    refresh = getattr(f, "__adcompiler_refresh__", None)
    if refresh is None:
        return None
    return refresh()


# ---------------------------------------------------------------------------
# The disk cache: facts written down, and checked in another process
# ---------------------------------------------------------------------------


def describe(fact: Fact, f) -> dict | None:
    """How another process finds the object `fact` read, starting from `f`: a global of
    a module (by the module's name) or one of f's closure cells, then the path; None
    where it cannot be said (a cell of another function)."""
    if isinstance(fact.scope, dict):
        module = fact.scope.get("__name__")
        if getattr(sys.modules.get(module), "__dict__", None) is not fact.scope:
            return None
        where: dict = {"module": module}
    else:
        cells = dict(zip(f.__code__.co_freevars, f.__closure__ or ()))
        if cells.get(fact.name) is not fact.scope:
            return None
        where = {"cell": True}
    return {**where, "name": fact.name, "path": [list(step) for step in fact.path]}


def resolve(description: dict, f) -> Fact | None:
    """The fact a `describe`d read finds in this process, or None."""
    try:
        if "module" in description:
            module = sys.modules.get(description["module"])
            if module is None:
                return None
            scope = module.__dict__
        else:
            cells = dict(zip(f.__code__.co_freevars, f.__closure__ or ()))
            scope = cells[description["name"]]
        path = tuple((kind, key) for kind, key in description["path"])
        probe = Fact(scope, description["name"], path, None)
        value = probe.current()
        if value is MISSING:
            return None
        return Fact(scope, description["name"], path, value)
    except (KeyError, TypeError, ValueError):
        return None


def fingerprint(value: Any, within: frozenset = frozenset()) -> str | None:
    """What of `value` the generated code depends on, the same in every process; None
    for an object that cannot be described (the code is then not written to disk)."""
    if _is_literal(value):
        return f"{type(value).__module__}.{type(value).__qualname__}:{value!r}"
    if isinstance(value, np.ndarray):  # bound, not folded: its shape may have been used
        return f"ndarray:{value.shape}:{value.dtype.str}"
    if isinstance(value, types.ModuleType):
        return f"module:{value.__name__}"
    if isinstance(value, types.FunctionType):
        code = hashlib.sha256(marshal.dumps(value.__code__)).hexdigest()
        return f"function:{value.__module__}.{value.__qualname__}:{code}:{value.__defaults__!r}"
    if isinstance(value, (types.BuiltinFunctionType, np.ufunc, type)):
        module = getattr(value, "__module__", None) or "builtins"
        return f"callable:{module}.{getattr(value, '__qualname__', value.__name__)}"
    if type(value) in (list, dict) and id(value) not in within:
        items = value.items() if type(value) is dict else enumerate(value)
        parts = []
        for key, item in items:
            part = fingerprint(item, within | {id(value)})
            if part is None:
                return None
            parts.append(f"{key!r}={part}")
        return f"{type(value).__name__}[{', '.join(parts)}]"
    return None
