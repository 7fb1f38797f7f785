"""Arguments as pytrees: nested dicts, lists, tuples, NamedTuples, dataclasses and
objects whose attributes hold arrays; and functions that bind arguments (a
`functools.partial`, a bound method).

`structure_of` describes an argument (hashable: it keys the generated versions, see
api.Structured). Records (NamedTuples, dataclasses, objects) are read by the generated
code as a dict of their array attributes (`to_generated`), and a gradient of one is
rebuilt as the same type (`rebuild`): a copy of the argument whose array attributes are
the gradients and whose other attributes (ints, strings, functions: constants of the
compiled code) are the argument's own.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from adcompiler.errors import WrtError

_LEAVES = (np.ndarray, np.generic, float, complex)
_CONSTANTS = (int, bool, str, bytes, type(None))


def is_namedtuple(value) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def is_record(value) -> bool:
    """A NamedTuple, or an object holding its attributes in a __dict__ (a dataclass, an
    instance of a user class): not an array, a number, a container, a function, a
    module or a class."""
    if is_namedtuple(value):
        return True
    if isinstance(value, (*_LEAVES, *_CONSTANTS, dict, list, tuple, type)):
        return False
    if inspect.ismodule(value) or inspect.isroutine(value):
        return False
    if type(value).__module__.partition(".")[0] in _LIBRARIES:  # np.tanh (a ufunc), ...
        return False
    return hasattr(value, "__dict__")


# objects of these packages are never records: constants of the compiled code
_LIBRARIES = {"numpy", "scipy", "builtins", "functools", "types", "collections", "adcompiler"}


def structure_of(value, in_record: bool = False):
    """("dict", ((key, sub), ...)), ("list", (sub, ...)), ("tuple", (sub, ...)),
    ("namedtuple" or "object", (class, ((attribute, sub), ...))), ("static", (value, type))
    for a constant held by a record, or None for a leaf (an array or a number)."""
    if isinstance(value, dict):
        return ("dict", tuple((k, structure_of(v, in_record)) for k, v in value.items()))
    if is_namedtuple(value):
        items = tuple((k, structure_of(getattr(value, k), True)) for k in value._fields)
        return ("namedtuple", (type(value), items))
    if type(value) in (list, tuple):
        return (type(value).__name__, tuple(structure_of(v, in_record) for v in value))
    if in_record and isinstance(value, (*_CONSTANTS, np.integer, np.bool_)):
        return _static(value)
    if isinstance(value, _LEAVES) or isinstance(value, _CONSTANTS):
        return None
    if is_record(value):
        items = tuple((k, structure_of(v, True)) for k, v in vars(value).items())
        return ("object", (type(value), items))
    if not in_record:
        return None  # what the generated code checks (an array is expected)
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"adcompiler cannot hold a {type(value).__name__} in a differentiated argument's "
            f"attributes (neither an array, a number, a container nor a record)"
        ) from None
    return _static(value)  # a function, a class, an enum: a constant of the code


def _static(value) -> tuple:
    """A constant of the compiled code, keyed by its type too (True, 1 and 1.0 are equal
    but may not compile alike: `flag is True`)."""
    return ("static", (value, type(value)))


def has_records(structure) -> bool:
    if structure is None:
        return False
    kind, items = structure
    if kind in ("namedtuple", "object"):
        return True
    if kind == "static":
        return False
    subs = (sub for _, sub in items) if kind == "dict" else items
    return any(has_records(sub) for sub in subs)


def to_generated(value, structure):
    """`value` as the generated code reads it: each record as a dict of its arrays."""
    if not has_records(structure):
        return value
    kind, items = structure
    if kind in ("namedtuple", "object"):
        fields = value._asdict() if kind == "namedtuple" else vars(value)
        return {
            k: to_generated(fields[k], sub)
            for k, sub in items[1]
            if sub is None or sub[0] != "static"
        }
    if kind == "dict":
        return {k: to_generated(value[k], sub) for k, sub in items}
    out = [to_generated(v, sub) for v, sub in zip(value, items)]
    return out if kind == "list" else tuple(out)


def rebuild(grad, structure, original):
    """The gradient `grad` (dicts for records) with `original`'s types."""
    if not has_records(structure):
        return grad
    kind, items = structure
    if kind in ("namedtuple", "object"):
        fields = original._asdict() if kind == "namedtuple" else vars(original)
        changes = {
            k: rebuild(grad[k], sub, fields[k])
            for k, sub in items[1]
            if sub is None or sub[0] != "static"
        }
        if kind == "namedtuple":
            return original._replace(**changes)
        out = copy.copy(original)
        for k, v in changes.items():
            vars(out)[k] = v  # (a frozen dataclass too; never through a property)
        return out
    if kind == "dict":
        return {k: rebuild(grad[k], sub, original[k]) for k, sub in items}
    out = [rebuild(g, sub, o) for g, sub, o in zip(grad, items, original)]
    return out if kind == "list" else tuple(out)


def rebuild_result(kind: str, single: bool, out, structures: list, originals: list):
    """A generated function's result with each gradient (or H·v) rebuilt as its
    argument's type."""

    def grads(g):
        if single:
            return rebuild(g, structures[0], originals[0])
        return tuple(rebuild(x, s, o) for x, s, o in zip(g, structures, originals))

    if kind in ("grad", "hvp"):
        return grads(out)
    if kind == "grad+aux":
        return grads(out[0]), out[1]
    if kind in ("value_and_grad", "value_and_grad+aux", "vjp"):
        return out[0], grads(out[1])
    return out  # jvp: f's value and tangent


# ---------------------------------------------------------------------------
# functools.partial and bound methods
# ---------------------------------------------------------------------------

_TRAILING = ("vjp", "jvp", "hvp")  # transforms whose function takes one more argument


def unbind(f) -> tuple[Callable, tuple, dict]:
    """The function under a partial or a bound method, and the arguments bound to it."""
    args: tuple = ()
    kwargs: dict = {}
    while True:
        if isinstance(f, functools.partial):
            args, kwargs = (*f.args, *args), {**f.keywords, **kwargs}
            f = f.func
        elif inspect.ismethod(f):
            args = (f.__self__, *args)
            f = f.__func__
        elif isinstance(f, Bound):  # a transform of a partial: the generated function's
            args, kwargs = (*f.args, *args), {**f.kwargs, **kwargs}
            f = f.generated
        else:
            return f, args, kwargs


def bound(via: str, f, kind: str, wrt: Any, transform: Callable, rebuild: Callable) -> Bound:
    """The transform of a partial or a bound method: the transform of the function under
    it (`wrt` by position counts the arguments left to pass; by name, any argument,
    `"self"` too), called with the bound arguments. `transform(func, kind, wrt)` makes
    the generated function of the function under it (api's function named `via`);
    `rebuild(via, f, kind, wrt)` makes the whole again where a pickle is loaded."""
    func, args, kwargs = unbind(f)
    if packed_at(func) is not None:
        raise TypeError(
            f"{getattr(func, '__qualname__', func)} has a `*args` parameter: adcompiler "
            f"differentiates it directly (`ad.grad(f, wrt=...)`), not through a partial or "
            f"a bound method; write a function with named parameters around it"
        )
    if not inspect.isfunction(func) and not hasattr(func, "__adcompiler_source__"):
        from adcompiler.errors import SourceUnavailableError

        raise SourceUnavailableError(
            f"adcompiler differentiates Python functions written with `def` or `lambda`; this "
            f"{type(f).__name__} binds {getattr(func, '__qualname__', type(func).__name__)!r}, "
            f"of type {type(func).__name__} (wrap it in a def, or register a rule for it)"
        )
    inner_wrt = bound_wrt(func, args, kwargs, wrt)
    inner = transform(func, kind, inner_wrt)
    recipe = (via, f, kind, wrt)
    plain = kind.removesuffix("+finite").removesuffix("+aux")  # (api.split_finite)
    return Bound(inner, func, args, kwargs, plain, recipe, rebuild)


def bound_wrt(func: Callable, args: tuple, kwargs: dict, wrt: Any):
    """`wrt` for `func` called with `args` and `kwargs` bound before the caller's
    arguments, as names: a position counts the arguments left to pass; the default is the
    first of them."""
    names = [
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    free = [n for n in names[len(args) :] if n not in kwargs]
    described = (
        f"{func.__name__} with {len(args)} positional and {len(kwargs)} keyword arguments bound"
    )

    def name_of(item):
        if isinstance(item, str):
            if item not in names:
                raise WrtError(
                    f"wrt={item!r} is not an argument of {func.__name__}; choose from: "
                    f"{', '.join(names)}"
                )
            return item
        if isinstance(item, int) and not isinstance(item, bool):
            if not -len(free) <= item < len(free):
                raise WrtError(
                    f"wrt={item} is out of range: {described} takes {len(free)} more "
                    f"({', '.join(free)})"
                )
            return free[item]
        raise WrtError(f"wrt={item!r}: give an argument's name or position")

    if wrt is None:
        if not free:
            raise WrtError(f"{described}: no argument is left to differentiate with respect to")
        return free[0]
    if isinstance(wrt, (tuple, list)):
        return tuple(name_of(w) for w in wrt)
    return name_of(wrt)


def unbound_call(f, args, wrt) -> tuple[Callable, list, Any]:
    """A partial or bound method called with `args`, as the function under it called with
    all its arguments by position, and `wrt` by name (what check_grad differentiates)."""
    func, bound_args, bound_kwargs = unbind(f)
    names = bound_wrt(func, bound_args, bound_kwargs, wrt)
    call = inspect.signature(func).bind(*bound_args, *args, **bound_kwargs)
    call.apply_defaults()
    if call.kwargs:
        raise TypeError(f"check_grad: {func.__name__} has keyword-only arguments; bind them")
    return func, list(call.args), names


class Bound:
    """A generated function with some of its arguments bound (by a partial or a method)."""

    def __init__(self, g, func, args: tuple, kwargs: dict, kind: str, recipe: tuple, rebuild):
        self.generated, self.func, self.args, self.kwargs = g, func, args, kwargs
        self.signature = inspect.signature(func)
        self.trailing = 1 if kind in _TRAILING else 0
        self.recipe, self.rebuild = recipe, rebuild
        self.__name__ = getattr(g, "__name__", func.__name__)
        self.__doc__ = getattr(g, "__doc__", None)

    def __call__(self, *args, **kwargs):
        args, kwargs = self.bind_arguments(args, kwargs)
        return self.generated(*args, **kwargs)

    def bind_arguments(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """The arguments of the generated function: the bound ones, then these."""
        head = args[: len(args) - self.trailing]
        tail = args[len(args) - self.trailing :]
        call = self.signature.bind(*self.args, *head, **{**self.kwargs, **kwargs})
        return (*call.args, *tail), call.kwargs

    def __getattr__(self, name: str):  # the source, the IR, ...: the generated function's
        own = ("generated", "func", "args", "kwargs", "signature", "trailing", "recipe", "rebuild")
        if name in own or (
            name.startswith("__") and not name.startswith("__adcompiler") and name != "__code__"
        ):
            raise AttributeError(name)
        return getattr(self.generated, name)

    def __reduce__(self):
        return (self.rebuild, self.recipe)

    def __repr__(self) -> str:
        return f"<adcompiler {self.__name__} of {self.func.__qualname__} (bound arguments)>"


def packed_at(f) -> int | None:
    """The position of the `*args` parameter of the Python function `f` (None: none)."""
    if not inspect.isfunction(f):
        return None
    try:
        params = list(inspect.signature(f, follow_wrapped=False).parameters.values())
    except (TypeError, ValueError):
        return None
    return next((i for i, p in enumerate(params) if p.kind is p.VAR_POSITIONAL), None)


class Packed:
    """The transform of a function with a `*args` parameter (``def loss(x, *ws)``): the
    generated function takes the packed arguments as one tuple, ``g(x, (w1, w2))``; this
    packs them, so the transform is called as the function is, ``g(x, w1, w2)`` (and a
    jvp's, hvp's or vjp's trailing argument after them). With ``wrt="ws"`` the gradient
    is a tuple, one array per packed argument."""

    def __init__(self, g, func, kind: str, recipe: tuple, rebuild):
        self.generated, self.func = g, func
        self.at = packed_at(func)
        self.trailing = 1 if kind.removesuffix("+aux") in _TRAILING else 0
        self.recipe, self.rebuild = recipe, rebuild
        self.__name__ = getattr(g, "__name__", func.__name__)
        self.__doc__ = getattr(g, "__doc__", None)

    def __call__(self, *args, **kwargs):
        end = len(args) - self.trailing
        head, packed, tail = args[: self.at], args[self.at : end], args[end:]
        return self.generated(*head, tuple(packed), *tail, **kwargs)

    def __getattr__(self, name: str):  # the source, the IR, ...: the generated function's
        own = ("generated", "func", "at", "trailing", "recipe", "rebuild")
        if name in own or (
            name.startswith("__") and not name.startswith("__adcompiler") and name != "__code__"
        ):
            raise AttributeError(name)
        return getattr(self.generated, name)

    def __reduce__(self):
        return (self.rebuild, self.recipe)

    def __repr__(self) -> str:
        return f"<adcompiler {self.__name__} of {self.func.__qualname__} (*args packed)>"


# ---------------------------------------------------------------------------
# Calling a generated function with records
# ---------------------------------------------------------------------------


def other_records(names: list, indices: list, args: tuple, kwargs: dict) -> tuple:
    """``((name, structure), ...)`` for the arguments not differentiated that hold records
    (the model whose method is differentiated with respect to its input): their array
    attributes become values of the generated code too, and their other attributes
    constants."""
    out = []
    for i, name in enumerate(names):
        if i in indices:
            continue
        value = args[i] if i < len(args) else kwargs.get(name)
        if value is not None and not isinstance(value, _LEAVES) and is_record(value):
            out.append((name, structure_of(value)))
        elif isinstance(value, (dict, list, tuple)):
            structure = structure_of(value)
            if has_records(structure):
                out.append((name, structure))
    return tuple(out)


def call_with_records(wrapper, g, key: tuple, others: tuple, values: list, args, kwargs):
    """Call `g` with each record as the dict it reads, and rebuild the gradients (or H·v)
    as the arguments' types."""
    names = wrapper.names
    structures = dict(others)
    structures.update({names[i]: s for i, s in zip(wrapper.indices, key)})
    args = list(args)
    kind = wrapper.kind.removesuffix("+finite")  # checked or not: the same layout
    trailing = 1 if kind in _TRAILING else 0
    for i in range(len(args) - trailing):
        if i < len(names) and names[i] in structures:
            args[i] = to_generated(args[i], structures[names[i]])
    kwargs = {
        k: to_generated(v, structures[k]) if k in structures else v for k, v in kwargs.items()
    }
    if trailing and kind in ("jvp", "hvp") and args:  # the tangent has the wrt structure
        single = not isinstance(wrapper.wrt, (tuple, list))
        args[-1] = (
            to_generated(args[-1], key[0])
            if single
            else tuple(to_generated(t, s) for t, s in zip(args[-1], key))
        )
    out = g(*args, **kwargs)
    single = not isinstance(wrapper.wrt, (tuple, list))
    return rebuild_result(kind, single, out, list(key), values)


# ---------------------------------------------------------------------------
# Leaves (for check_grad)
# ---------------------------------------------------------------------------


def leaves(value) -> list:
    """The arrays and numbers of a pytree, in order (a record's constants left out)."""
    out: list = []
    map_leaves(value, lambda leaf: out.append(leaf) or leaf)
    return out


def map_leaves(value, fn: Callable):
    """A copy of `value` (same types) with each leaf replaced by ``fn(leaf)``, in the order
    of `leaves`."""
    return _map(value, structure_of(value), fn)


def _map(value, structure, fn):
    if structure is None:
        return fn(value)
    kind, items = structure
    if kind == "static":
        return value
    if kind in ("namedtuple", "object"):
        fields = value._asdict() if kind == "namedtuple" else vars(value)
        changes = {k: _map(fields[k], sub, fn) for k, sub in items[1]}
        if kind == "namedtuple":
            return value._replace(**changes)
        out = copy.copy(value)
        for k, v in changes.items():
            vars(out)[k] = v
        return out
    if kind == "dict":
        return {k: _map(value[k], sub, fn) for k, sub in items}
    out = [_map(v, sub, fn) for v, sub in zip(value, items)]
    return out if kind == "list" else tuple(out)
