"""The functions users call: `grad`, `value_and_grad`, `vjp`, `source`, `ir`.

Each transform lowers the function once, differentiates and loads the
generated code, and caches the result per (function, transform, wrt): the
second ``ad.grad(f)`` is a dictionary lookup. Every transform can be used
directly or as a decorator::

    dloss = ad.grad(loss, wrt=("w", "b"))

    @ad.value_and_grad(wrt="w")
    def loss(w, x, y): ...
"""

from __future__ import annotations

import functools
import inspect
import re
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from adcompiler import depends, diskcache, specialize
from adcompiler import ssa as _ir
from adcompiler.codegen.emit import emit_function
from adcompiler.errors import DifferentiationTypeError, UnsupportedSyntaxError, WrtError
from adcompiler.frontend import lower_function
from adcompiler.load import load
from adcompiler.ops.calls import CALL, CALL_BWD, CALL_FWD, CALL_JVP
from adcompiler.reverse import reverse

_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _transform(kind: str, via: str = "compiled"):
    """Build the public function for one transform kind (usable as a decorator); `via`
    names the function that compiles it (`compiled`, or `compiled_forward`)."""

    def public(f: Callable | None = None, wrt: Any = None, *, check_finite: bool = False):
        if f is None:
            return functools.partial(public, wrt=wrt, check_finite=check_finite)
        return _entry(via, f, kind + FINITE * bool(check_finite), wrt)

    def public_aux(
        f: Callable | None = None,
        wrt: Any = None,
        *,
        has_aux: bool = False,
        check_finite: bool = False,
    ):
        if f is None:
            return functools.partial(
                public_aux, wrt=wrt, has_aux=has_aux, check_finite=check_finite
            )
        full = (f"{kind}+aux" if has_aux else kind) + FINITE * bool(check_finite)
        return _entry(via, f, full, wrt)

    return public_aux if kind in ("grad", "value_and_grad") else public


# The suffix of a transform's kind ("grad+finite", "grad+aux+finite") for the version that
# checks every statement's result (check_finite=True): its own cache entries, memory and disk.
FINITE = "+finite"


def split_finite(kind: str) -> tuple[str, bool]:
    """`kind` without the check_finite suffix, and whether it had it."""
    return kind.removesuffix(FINITE), kind.endswith(FINITE)


def _entry(via: str, f: Callable, kind: str, wrt: Any) -> Callable:
    """`compiled` or `compiled_forward` for `f`; a `functools.partial`, a bound method or
    a lambda go through adcompiler.pytree.bound (their arguments bound around the
    generated function of the underlying function)."""
    from adcompiler import pytree

    if isinstance(f, (functools.partial, pytree.Bound)) or inspect.ismethod(f):
        return pytree.bound(via, f, kind, wrt, globals()[via], _rebuilt)
    call = inspect.getattr_static(type(f), "__call__", None)
    if pytree.is_record(f) and inspect.isfunction(call):  # a callable object: its __call__
        return pytree.bound(via, call.__get__(f), kind, wrt, globals()[via], _rebuilt)
    if pytree.packed_at(f) is not None:  # def loss(x, *ws): the generated code takes ws
        g = globals()[via](f, kind, wrt)
        return pytree.Packed(g, f, kind, (via, f, kind, wrt), _rebuilt)
    return globals()[via](f, kind, wrt)


grad = _transform("grad")
grad.__doc__ = """The gradient of scalar-valued `f` with respect to `wrt`.

Args:
    f: a Python function over NumPy arrays, returning a scalar: a `def`, a lambda, a
        `functools.partial`, a bound method (`model.loss`, with `wrt="self"` for the
        object) or a callable object.
    wrt: an argument name or position, or a tuple of them; default: the first.
        Arguments may be pytrees: dicts, lists, tuples, NamedTuples, dataclasses,
        objects holding arrays in attributes (adcompiler.pytree).
    has_aux: `f` returns ``(loss, aux)``; the function returns ``(gradient, aux)``.
    check_finite: a version that checks every statement's result, in the forward and the
        adjoint sweep, and raises `adcompiler.NonFiniteError` at the first NaN or
        infinity, naming the user's line, the operator and its inputs (docs/debugging.md).
        Slower; the function generated without it is unchanged.

Returns:
    A function with f's signature returning the gradient (a tuple for a tuple `wrt`),
    each with its argument's structure and type. It can be pickled (by reference).
"""
value_and_grad = _transform("value_and_grad")
value_and_grad.__doc__ = """Like `grad`, but the function returns ``(f(...), gradient)``;
with has_aux=True, ``((loss, aux), gradient)``."""
vjp = _transform("vjp")
vjp.__doc__ = """A vector-Jacobian product: a function ``(*args, cotangent) -> (f(...), vjp)``.

The cotangent is shaped like f's output: an array, or for a function returning a tuple
one tuple with an array (or number) per returned value.
"""


def compiled(f: Callable, kind: str, wrt: Any = None) -> Callable:
    """The cached generated function for `f` and this transform."""
    key = (kind, wrt if not isinstance(wrt, list) else tuple(wrt))
    try:
        per_function = _cache.get(f)
    except TypeError:  # not a Python function: let the frontend say so
        return _build(f, kind, wrt)
    if per_function is not None and key in per_function:
        return per_function[key]
    structured = _may_be_structured(f, wrt) or _packed(f) is not None
    if kind.split("+")[0] in ("grad", "value_and_grad", "vjp") and structured:
        g = Structured(f, kind, wrt)
    else:

        def make():
            return _build(f, kind, wrt)

        make.recipe = ("compiled", f, kind, wrt)  # what a pickled `g` is rebuilt from
        routed = None
        plain, finite = split_finite(kind)
        if plain in ("grad", "value_and_grad", "vjp"):
            routed = functools.partial(
                _route_containers, f=f, wrt=wrt, make=lambda: Structured(f, kind, wrt)
            )
        g = _guarded(make, specializing=not finite, after=routed)
    _cache.setdefault(f, {})[key] = g
    return g


def _route_containers(g: Callable, f: Callable, wrt: Any, make: Callable) -> None:
    """Code generated for array arguments, where the bytecode did not show a `wrt`
    argument used as a container (`np.stack(xs)`): a dict, list or tuple given for one
    goes to `make()`'s function, which generates code for its structure."""
    if not isinstance(g, specialize.Specializing):
        return  # specialization off: check_float refuses a container
    try:
        names = list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        return
    items = [0 if wrt is None else wrt] if not isinstance(wrt, (tuple, list)) else wrt
    positions = [names.index(w) if isinstance(w, str) else w for w in items]
    made: list = []

    def structured() -> Callable:
        if not made:
            made.append(make())
        return made[0]

    g.containers = (positions, [names[i] for i in positions], structured)


class Structured:
    """A gradient with respect to arguments that may hold dicts, lists or tuples of arrays.

    The gradient has the argument's structure. Code is generated for each structure
    the function is called with (the keys of a dict, the length of a list), once; an
    array argument goes to the ordinary generated function.
    """

    def __init__(self, f: Callable, kind: str, wrt: Any):
        # first: update_wrapper copies f's __dict__, which for a generated function of
        # this kind (grad of grad) holds its own `f`, `versions`, ...: ours replace them
        functools.update_wrapper(self, f)
        self.f, self.kind, self.wrt = f, kind, wrt
        self.names = list(inspect.signature(f, follow_wrapped=False).parameters)
        items = [0 if wrt is None else wrt] if not isinstance(wrt, (tuple, list)) else wrt
        self.indices = [self.names.index(w) if isinstance(w, str) else w for w in items]
        self.versions: dict = {}
        self.latest: Callable | None = None
        self.__name__ = f"{_python_name(f)}_{split_finite(kind)[0].removesuffix('+aux')}"

    def __call__(self, *args, **kwargs):
        from adcompiler import pytree

        g, key, others, values = self.version_for(args, kwargs)
        self.latest = g
        if others or any(pytree.has_records(s) for s in key):
            return pytree.call_with_records(self, g, key, others, values, args, kwargs)
        return g(*args, **kwargs)

    def version_for(self, args: tuple, kwargs: dict):
        """The version for these arguments (generated on first use), the structures of the
        `wrt` arguments, the records among the others, and the `wrt` arguments."""
        from adcompiler import pytree

        values = [args[i] if i < len(args) else kwargs[self.names[i]] for i in self.indices]
        key = tuple(pytree.structure_of(v) for v in values)
        others = pytree.other_records(self.names, self.indices, args, kwargs)
        packed = _packed(self.f)  # `*ws`, not differentiated: read as the tuple it is
        if packed is not None and packed not in self.indices:
            name = self.names[packed]
            if name not in dict(others):
                others = (*others, (name, pytree.structure_of(tuple(args[packed]))))
        full = (key, "records", others) if others else key
        g = self.versions.get(full)
        if g is None:
            structures = {self.names[i]: s for i, s in zip(self.indices, key) if s is not None}
            structures.update(others)
            g = self.build(structures or None)
            self.versions[full] = g
        return g, key, others, values

    def __reduce__(self):  # pickled by reference: rebuilt (or loaded from disk) on load
        via = "compiled_forward" if isinstance(self, ForwardStructured) else "compiled"
        return (_rebuilt, (via, self.f, self.kind, self.wrt))

    def build(self, structures: dict | None) -> Callable:
        return _guarded(
            lambda: _build(self.f, self.kind, self.wrt, structures),
            specializing=not split_finite(self.kind)[1],
        )

    @property
    def flat(self) -> Callable:
        """The version for array arguments (what grad of grad and `ad.source` start from)."""
        key = tuple(None for _ in self.indices)
        if key not in self.versions:
            self.versions[key] = self.build(None)
        return self.versions[key]

    def __getattr__(self, name: str):  # anything else: as the version for arrays
        if name in ("f", "versions", "flat", "build", "latest") or name.startswith("__"):
            if name not in ("__defaults__", "__kwdefaults__", "__adcompiler_emitted__",
                            "__adcompiler_refresh__"):  # fmt: skip
                raise AttributeError(name)
        return getattr(self.flat, name)

    @property
    def __adcompiler_ir__(self):
        return self.flat.__adcompiler_ir__

    @property
    def __adcompiler_result_tree__(self):
        return self.flat.__adcompiler_result_tree__

    @property
    def __code__(self):
        return self.flat.__code__

    @property
    def __adcompiler_source__(self) -> str:
        # Before a first call, the version for array arguments.
        return (self.latest or self.flat).__adcompiler_source__


def _packed(f: Callable) -> int | None:
    """The position of f's `*args` parameter, if it has one."""
    from adcompiler import pytree

    return pytree.packed_at(f)


def _may_be_structured(f: Callable, wrt: Any) -> bool:
    """True if the bytecode uses a `wrt` argument as a container: `p["key"]`,
    `p.items()`, `for ... in p` (also through zip/enumerate), `a, b = p`."""
    import dis

    code = getattr(f, "__code__", None)
    if code is None:
        return False
    params = list(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])
    items = [0 if wrt is None else wrt] if not isinstance(wrt, (tuple, list)) else wrt
    names = {params[w] if isinstance(w, int) and w < len(params) else w for w in items}
    ops = list(dis.get_instructions(code))
    if _reads_attributes(ops, params) or _helpers_read_attributes(f):
        return True
    zipping = False
    for i, ins in enumerate(ops):
        if ins.opname == "LOAD_GLOBAL" and str(ins.argval) in ("zip", "enumerate"):
            zipping = True
        elif ins.opname == "GET_ITER":
            zipping = False
        if not ins.opname.startswith("LOAD_FAST") or _last_loaded(ins) not in names:
            continue
        after = ops[i + 1] if i + 1 < len(ops) else None
        after2 = ops[i + 2] if i + 2 < len(ops) else None
        if after is None:
            continue
        if after.opname in ("GET_ITER", "UNPACK_SEQUENCE", "UNPACK_EX") or zipping:
            return True
        if after.opname in ("LOAD_ATTR", "LOAD_METHOD") and after.argval in (
            "items",
            "keys",
            "values",
        ):
            return True
        if (
            after.opname == "LOAD_CONST"
            and isinstance(after.argval, str)
            and after2 is not None
            and after2.opname == "BINARY_SUBSCR"
        ):
            return True
    return False


def _reads_attributes(ops: list, params: list) -> bool:
    """True if the bytecode reads an attribute of an argument that an array does not have
    (`params.W`, `self.forward(x)`): the argument may be a record (adcompiler.pytree)."""
    from adcompiler.frontend import methods
    from adcompiler.ops.structure import ATTRIBUTES

    known = {"T", "mT", *ATTRIBUTES, *methods.METHODS}
    for ins, after in zip(ops, ops[1:]):
        if ins.opname.startswith("LOAD_FAST") and _last_loaded(ins) in params:
            if after.opname in ("LOAD_ATTR", "LOAD_METHOD") and after.argval not in known:
                return True
    return False


def _last_loaded(ins) -> str | None:
    """The local variable a LOAD_FAST-like instruction pushes last: LOAD_FAST_CHECK (3.12),
    and LOAD_FAST_LOAD_FAST (3.13: `x @ q.W` loads `x` and `q` in one instruction, whose
    argval is the pair)."""
    name = ins.argval
    return name[-1] if isinstance(name, tuple) else name


def _helpers_read_attributes(f: Callable, depth: int = 3) -> bool:
    """True if a helper `f` calls (a module-level function or one in a closure cell, any
    depth down to `depth`) reads an attribute of its arguments that arrays do not have:
    an argument of `f` passed on to it may be a record."""
    import dis
    import types

    code = getattr(f, "__code__", None)
    if code is None or depth == 0:
        return False
    cells = dict(zip(code.co_freevars, getattr(f, "__closure__", None) or ()))
    for ins in dis.get_instructions(code):
        helper = None
        if ins.opname == "LOAD_GLOBAL":
            helper = getattr(f, "__globals__", {}).get(str(ins.argval))
        elif ins.opname == "LOAD_DEREF" and ins.argval in cells:
            try:
                helper = cells[ins.argval].cell_contents
            except ValueError:
                continue
        if not isinstance(helper, types.FunctionType) or helper is f:
            continue
        if (helper.__module__ or "").startswith(("numpy", "scipy", "adcompiler.")):
            continue
        hcode = helper.__code__
        params = list(hcode.co_varnames[: hcode.co_argcount + hcode.co_kwonlyargcount])
        if _reads_attributes(list(dis.get_instructions(hcode)), params):
            return True
        if _helpers_read_attributes(helper, depth - 1):
            return True
    return False


def _rebuilt(via: str, f: Callable, kind: str, wrt: Any) -> Callable:
    """A pickled generated function, in the process that loads it: the same transform of
    the same function (from the memory or disk cache, or generated again)."""
    return _entry(via, f, kind, wrt)


def _build(f: Callable, kind: str, wrt: Any, structures: dict | None = None) -> Callable:
    """Generate and load the function for `f` (from the disk cache where it is there)."""
    entry = None
    if not structures and diskcache.enabled() and not hasattr(f, "__adcompiler_ir__"):
        entry = diskcache.key(f, kind, wrt)
        record = diskcache.read(entry) if entry else None
        if record is not None:
            cached = _from_record(f, kind, wrt, record, entry)
            if cached is not None:
                return cached
    with depends.recording() as facts:
        g = _generate(f, kind, wrt, structures)
    if entry is not None:
        _remember(entry, f, g, facts)
    return g


def _specializing(g: Callable, cls: type | None = None) -> Callable:
    """`g`, running from its second call with one signature of arguments a version
    specialized on their shapes and dtypes (adcompiler.specialize); `cls`: a subclass
    of `specialize.Specializing` to make."""
    if not specialize.enabled():
        return g

    def build(fn: _ir.Function, note: str | None, extra: dict | None = None) -> Callable:
        doc = inspect.cleandoc(g.__doc__ or "")
        return _loaded(fn, g.__name__, doc if note is None else f"{doc}\n{note}",
                       g.__adcompiler_result_tree__, g.__defaults__, g.__kwdefaults__,
                       extra)  # fmt: skip

    return (cls or specialize.Specializing)(g, build)


# ---------------------------------------------------------------------------
# Globals and closure cells: regenerate when what the code was compiled with changes
# ---------------------------------------------------------------------------


def _guarded(
    make: Callable[[], Callable], specializing: bool = True, after: Callable | None = None
) -> Callable:
    """The function `make()` generates (specialized on its arguments, unless
    `specializing` is False), checking on each call that the globals and closure
    cells it was compiled with still hold what they held (adcompiler.depends), and
    regenerating itself from `make` when one does not. `after(g)`, if given, finishes
    each version made (the routing of container arguments)."""
    with depends.recording() as facts:
        g = make()
    g.__adcompiler_depends__ = facts
    special = _specializing(g, GuardedSpecializing) if specializing else g
    if not isinstance(special, GuardedSpecializing):
        special = GuardedFunction(g)
    special._holds = facts.checker()
    special._make = (make, specializing, after)
    if after is not None:
        after(special)
    return special


class _Guard:
    """What `GuardedFunction` and `GuardedSpecializing` share: the check of the facts,
    and the regeneration when one fails (the object stays the same: ``ad.grad(f)``
    returns it again)."""

    _holds: Callable[[], bool]
    _make: tuple

    def __reduce__(self):
        """Pickled by reference to the function and the options: the process that loads
        it makes the same transform (from its caches, or generating it)."""
        recipe = getattr(self._make[0], "recipe", None)
        if recipe is None:
            raise TypeError(
                f"{getattr(self, '__name__', 'this function')} cannot be pickled: it is not "
                f"the result of an adcompiler transform called on a function"
            )
        return (_rebuilt, recipe)

    def __adcompiler_refresh__(self) -> depends.Depends:
        """Regenerate if a fact no longer holds; the facts (what transforms of this
        function depend on too)."""
        if not self._holds():
            fresh = _guarded(*self._make).__dict__
            self.__dict__.update(fresh)  # (a call in another thread sees old or new)
            for name in [name for name in self.__dict__ if name not in fresh]:
                del self.__dict__[name]
        return self.__adcompiler_depends__


class GuardedSpecializing(_Guard, specialize.Specializing):
    """A `specialize.Specializing` whose first step, on each call, checks the facts."""

    def __call__(self, *args, **kwargs):
        if not self._holds():
            self.__adcompiler_refresh__()
        g = self.versions.get(specialize.signature(args, kwargs))
        if g is not None and not self.unchecked:  # the steady state, in one frame
            self.latest = g
            return g(*args, **kwargs)
        return specialize.Specializing.__call__(self, *args, **kwargs)


class GuardedFunction(_Guard):
    """A generated function (not specialized) whose first step checks the facts."""

    def __init__(self, g: Callable):
        functools.update_wrapper(self, g)
        self._function = g

    def __call__(self, *args, **kwargs):
        if not self._holds():
            self.__adcompiler_refresh__()
        return self._function(*args, **kwargs)

    def __getattr__(self, name: str):  # __code__, __globals__, ...: the function's
        if name in ("_function", "_holds", "_make"):
            raise AttributeError(name)
        return getattr(self._function, name)


def _loaded(
    fn: _ir.Function,
    name: str,
    doc: str,
    tree,
    defaults,
    kwdefaults,
    extra: dict | None = None,
    check_finite: bool = False,
) -> Callable:
    """`fn` written as the Python function `name`, compiled, with its source and IR
    (with `check_finite`: each statement's result checked, codegen.emit)."""
    reserved: set = set()
    if _has_calls(fn):
        from adcompiler import calls

        calls.name_helper_calls(fn)
        reserved = calls.generated_names(fn)
    if check_finite:
        doc += "\nEvery value is checked: a NaN or an infinity raises NonFiniteError."
    emitted = emit_function(fn, name, doc, tree, reserved, check_finite)
    emitted.callees = _callees(fn)
    g = load(emitted, defaults, kwdefaults, extra=extra)
    g.__adcompiler_source__ = emitted.source
    g.__adcompiler_emitted__ = emitted
    g.__adcompiler_ir__ = fn
    g.__adcompiler_result_tree__ = tree
    return g


def _remember(entry: str, f: Callable, g: Callable, facts: depends.Depends) -> None:
    """Write `g`'s source to the disk cache, if a fresh process could load it alone."""
    emitted = g.__adcompiler_emitted__
    from adcompiler import runtime

    if any(re.search(rf"\b{re.escape(name)}\(", emitted.source) for name in runtime.EXTERNAL):
        return  # a custom rule is registered per process: the code depends on it
    written = _written_facts(f, facts)
    if emitted.callees or written is None:
        return
    constants = {}
    for name, value in emitted.constants.items():
        found = [i for i, fact in enumerate(facts) if fact.value is value]
        if not found:
            return  # not read from a global or a cell: another process cannot find it
        constants[name] = found[0]
    diskcache.write(entry, {
        "name": emitted.name,
        "source": emitted.source,
        "helpers": sorted(emitted.helpers),
        "constants": constants,
        "depends": written,
        "tree": repr(g.__adcompiler_result_tree__),
    })  # fmt: skip


def _written_facts(f: Callable, facts: depends.Depends) -> list | None:
    """The facts as the disk cache keeps them: where each read is made (a module's global
    or a cell of `f`, and the path) and what it found; None if one cannot be written."""
    out = []
    for fact in facts:
        where, seen = depends.describe(fact, f), depends.fingerprint(fact.value)
        if where is None or seen is None:
            return None
        out.append([where, seen])
    return out


def _facts_now(f: Callable, written: list) -> list | None:
    """The facts of a disk cache entry, read in this process: None unless every read
    finds what the entry was generated with."""
    facts = []
    for where, seen in written:
        fact = depends.resolve(where, f)
        if fact is None or depends.fingerprint(fact.value) != seen:
            return None
        facts.append(fact)
    return facts


def _from_record(f: Callable, kind: str, wrt: Any, record: dict, entry: str):
    import ast as _ast

    from adcompiler.codegen.emit import Emitted

    try:
        facts = _facts_now(f, record["depends"])
        if facts is None:
            return None  # a global or a cell changed since: generate again
        constants = {name: facts[i].value for name, i in record["constants"].items()}
        emitted = Emitted(record["source"], record["name"], set(record["helpers"]), constants)
        emitted.callees = []
        g = load(
            emitted,
            _defaults_for(f, kind),
            f.__kwdefaults__,
            code=diskcache.read_code(entry, record),
            filename=diskcache.filename(entry, emitted.name),
        )
        g.__adcompiler_result_tree__ = _ast.literal_eval(record["tree"])
    except (KeyError, SyntaxError, ValueError, TypeError, AttributeError, IndexError):
        return None
    for fact in facts:
        depends.record(fact)
    g.__adcompiler_source__ = emitted.source
    g.__adcompiler_emitted__ = emitted
    g.__adcompiler_rebuild__ = lambda: _generate(f, kind, wrt, None)
    if kind.removesuffix("+aux") in ("grad", "value_and_grad"):
        _rebuild_one(g, f, kind, wrt, None)
    g.__wrapped_primal__ = f
    return g


def _generate(
    f: Callable,
    kind: str,
    wrt: Any,
    structures: dict | None = None,
    functions: bool = True,
    seed: str = "like",
) -> Callable:
    """Generate and load `kind` of `f`. `seed="one"` (with `functions=False`) returns the
    IR of a gradient seeded with the constant 1.0 instead, which the specializer makes its
    versions for a float64 scalar output from (adcompiler.reverse)."""
    kind, finite = split_finite(kind)
    functions = functions and not finite  # checked: helpers inlined, their lines checked too
    _refuse_structures_of_generated(f, kind, structures)
    if structures:
        primal = _ir.verify(lower_function(f, structures))
    else:
        primal = primal_ir(f, functions=functions)  # a generated function's IR: grad of grad
    indices, single = resolve_wrt(f, primal, wrt)
    kind, aux = kind.removesuffix("+aux"), kind.endswith("+aux")
    if aux:
        _check_aux(f, primal)
    else:
        _check_no_dict_returned(f, primal, kind)
        if kind in ("grad", "value_and_grad") and primal.returns_tuple:
            raise DifferentiationTypeError(
                f"{kind} needs {f.__name__} to return one scalar, but it returns a tuple; "
                f"use ad.vjp for several outputs, or has_aux=True for `return loss, aux`"
            )
    cotangent = "param" if kind == "vjp" else seed
    wrt_values, grads = _wrt_leaves(primal, indices, single, structures or {})
    adjoint = _ir.verify(
        reverse(primal, wrt_values, cotangent=cotangent, return_value=kind != "grad" or aux)
    )
    if cotangent == "one":
        return _as_emitted(adjoint)
    offset = 0 if kind == "grad" and not aux else len(primal.results)
    shifted = _shift(grads, offset)
    returned = primal.result_tree if primal.result_tree is not None else (0, 1)
    if kind == "grad":
        tree = (shifted, returned[1]) if aux else shifted  # JAX's order: (gradient, aux)
    elif kind == "value_and_grad":
        tree = (returned, shifted) if aux else (0, shifted)
    else:
        value = tuple(range(len(primal.results))) if primal.returns_tuple else 0
        tree = (value, shifted)
        if primal.returns_tuple:  # one cotangent, shaped like the output (a tuple)
            adjoint = _tangents_as_one_parameter(
                adjoint, len(primal.params), kind, value, name="cotangent"
            )
    names = [primal.params[i].hint for i in indices]
    doc = (
        f"{_DESCRIPTION[kind]} {f.__name__} with respect to {', '.join(names)}"
        f"{' (and its aux output)' if aux else ''}.\n\n"
        f"Generated by adcompiler from {primal.source_file}{_first_line(f)}."
        f"{_records_note(structures)}"
    )
    g = _loaded(adjoint, f"{_python_name(f)}_{kind}", doc, tree, _defaults_for(f, kind),
                f.__kwdefaults__, check_finite=finite)  # fmt: skip
    if g.__adcompiler_emitted__.callees and functions:  # what transforms of it start from
        g.__adcompiler_rebuild_inline__ = lambda: _generate(
            f, kind, wrt, structures, functions=False
        )
    if cotangent == "like":
        _rebuild_one(g, f, kind, wrt, structures)
    g.__wrapped_primal__ = f
    return g


def _as_emitted(fn: _ir.Function) -> _ir.Function:
    """`fn` with its writes moved down as emitting it moves them (what the specializer
    starts from is the IR of a function that was emitted)."""
    from adcompiler.codegen.emit import sink_writes

    sink_writes(fn.body)
    return fn


def _rebuild_one(g: Callable, f: Callable, kind: str, wrt: Any, structures: dict | None):
    """Give generated gradient `g` the way to its IR seeded with the constant 1.0 (for
    `specialize.Specializing.seeded_ir`)."""
    build = _build_forward if kind == "hvp" else _generate
    inline = bool(getattr(g, "__adcompiler_rebuild_inline__", None))  # as `source_ir` does
    g.__adcompiler_rebuild_one__ = lambda: build(
        f, kind, wrt, structures, functions=not inline, seed="one"
    )


def _check_aux(f: Callable, primal: _ir.Function) -> None:
    """has_aux=True: `f` must return a pair ``(scalar loss, aux)`` (aux: anything that can
    be returned, dicts too)."""
    returned = primal.result_tree
    if returned is not None:
        pair = isinstance(returned, tuple) and len(returned) == 2 and returned[0] == 0
    else:
        pair = primal.returns_tuple and len(primal.results) == 2
    if not pair:
        got = f"{len(primal.results)} values" if primal.returns_tuple else "one value"
        if isinstance(returned, tuple):
            got = f"{len(returned)} values"
        raise DifferentiationTypeError(
            f"has_aux=True needs {f.__name__} to return a pair `return loss, aux`, but it "
            f"returns {got}; put several aux values in a tuple: `return loss, (a, b)`"
        )


def _records_note(structures: dict | None) -> str:
    """For the docstring: the arguments that hold records reach the code as dicts."""
    import textwrap

    from adcompiler import pytree

    lines = []
    for name, structure in (structures or {}).items():
        if structure[0] in ("namedtuple", "object"):
            what = f"a {structure[1][0].__name__}, read here as a dict of its arrays"
        elif pytree.has_records(structure):
            what = "holds records, read here as dicts of their arrays"
        else:
            continue
        lines.append(f"{name}: {what}")
    if not lines:
        return ""
    text = "; ".join(lines) + " (the function adcompiler returns converts them)."
    return "\n" + "\n".join(textwrap.wrap(text, 84))


def _check_no_dict_returned(f: Callable, primal: _ir.Function, kind: str) -> None:
    """A dict in what `f` returns is supported as the aux output of has_aux=True only."""
    if primal.result_tree is not None:
        raise DifferentiationTypeError(
            f"{kind} of {f.__name__}: it returns a dict; only the aux output of "
            f"has_aux=True may hold dicts (`return loss, {{'acc': acc}}`); return a tuple"
        )


def _python_name(f: Callable) -> str:
    """f's name as the start of a Python identifier (`<lambda>`: `lambda`, as in
    `lambda_grad`)."""
    name = f.__name__
    return name if name.isidentifier() else re.sub(r"\W", "", name) or "function"


def _callees(fn: _ir.Function) -> list:
    """The functions generated for recursive helpers that `fn` calls (all the way down)."""
    if not _has_calls(fn):
        return []
    from adcompiler import calls

    return calls.callees(fn)


def _has_calls(fn: _ir.Function) -> bool:
    """True if `fn` calls a helper or a function generated for one."""
    return any(n.op in _CALL_OPS for n in _ir.walk(fn.body))


_CALL_OPS = (CALL, CALL_FWD, CALL_BWD, CALL_JVP)


def _wrt_leaves(primal: _ir.Function, indices: list[int], single: bool, structures: dict):
    """The values to differentiate with respect to (the leaves of structured arguments),
    and how their adjoints nest in the result (the arguments' own structures)."""
    values: list = []

    def tree_of(leaves, structure):
        if structure is None:
            values.append(leaves)
            return len(values) - 1
        kind, items = structure
        if kind in ("namedtuple", "object"):  # a dict of the gradients of its arrays
            return {
                k: tree_of(leaves.fields[k], sub)
                for k, sub in items[1]
                if sub is None or sub[0] != "static"
            }
        if kind == "dict":
            return {k: tree_of(leaves[k], sub) for k, sub in items}
        subtrees = [tree_of(leaf, sub) for leaf, sub in zip(leaves, items)]
        return subtrees if kind == "list" else tuple(subtrees)

    trees = []
    for i in indices:
        name = primal.params[i].hint
        trees.append(tree_of(primal.leaves.get(name, primal.params[i]), structures.get(name)))
    return values, trees[0] if single else tuple(trees)


_DESCRIPTION = {
    "grad": "Gradient of",
    "value_and_grad": "Value and gradient of",
    "vjp": "Value and vector-Jacobian product of",
}


def _shift(tree, offset):
    if isinstance(tree, tuple):
        return tuple(_shift(t, offset) for t in tree)
    if isinstance(tree, list):
        return [_shift(t, offset) for t in tree]
    if isinstance(tree, dict):
        return {k: _shift(t, offset) for k, t in tree.items()}
    return tree + offset


def _defaults_for(f: Callable, kind: str):
    if split_finite(kind)[0] == "vjp" and f.__defaults__:
        return None  # the cotangent parameter follows; defaults cannot precede it
    return f.__defaults__


def resolve_wrt(f: Callable, primal: _ir.Function, wrt: Any) -> tuple[list[int], bool]:
    """Turn `wrt` (names or positions, one or a tuple) into parameter indices."""
    names = [p.hint for p in primal.params]
    if not names:
        raise WrtError(f"{f.__name__} takes no arguments: there is nothing to differentiate")
    single = not isinstance(wrt, (tuple, list))
    items = [0 if wrt is None else wrt] if single else list(wrt)
    indices = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            if not -len(names) <= item < len(names):
                raise WrtError(
                    f"wrt={item} is out of range: {f.__name__} has {len(names)} arguments "
                    f"({', '.join(names)})"
                )
            indices.append(item % len(names))
        elif isinstance(item, str) and item in names:
            indices.append(names.index(item))
        else:
            raise WrtError(
                f"wrt={item!r} is not an argument of {f.__name__}; choose from: {', '.join(names)}"
            )
        if indices.count(indices[-1]) > 1:
            raise WrtError(
                f"wrt={tuple(items)!r} names the argument {names[indices[-1]]!r} twice; name "
                f"each argument once (a gradient with respect to one argument is one value)"
            )
    return indices, single


def source(g: Callable, generic: bool = False) -> str:
    """The generated source of a function made by adcompiler, after the functions
    generated for the helpers it calls (if any): the version that ran last (specialized
    on its arguments' shapes from the second call on), or with `generic=True` the one
    for any shapes (what the first call runs and the CLI writes)."""
    g = _version_shown(g)
    if generic:
        g = getattr(g, "generic", g)
    text = getattr(g, "__adcompiler_source__", None)
    if text is None:
        raise TypeError(f"{getattr(g, '__name__', g)!r} was not generated by adcompiler")
    emitted = getattr(g, "__adcompiler_emitted__", None)
    callees = getattr(emitted, "callees", None) or []
    if callees:
        from adcompiler import calls

        parts = [e.source for e in calls.helper_sources(callees)]
        text = "\n\n".join([*parts, text])
    return text


def _version_shown(g: Callable) -> Callable:
    """What `source` and `ir` show of a generated function: for one whose code depends on
    the structure of its arguments (`Structured`), the version that ran last; before a
    first call, the version for array arguments, if the function can take arrays."""
    from adcompiler import pytree

    if isinstance(g, pytree.Bound):
        g = g.generated
    if not isinstance(g, Structured):
        return g
    if g.latest is not None:
        return g.latest
    try:
        return g.flat
    except UnsupportedSyntaxError as err:
        raise TypeError(
            f"the code of {g.__name__} depends on the structure of its arguments (the keys "
            f"of a dict, the attributes of an object): call it once, then ad.source and "
            f"ad.ir show the version that ran, or give ad.ir example arguments: "
            f"ad.ir(g, *args) (for arrays alone: {err.diagnostics[0].message})"
        ) from None


def _generated_ir(f: Callable):
    """The IR a generated function came from (rebuilt if it was loaded from disk)."""
    f = _version_shown(f)
    depends.replay(depends.of(f))  # a transform of it relies on what it relies on
    fn = getattr(f, "__adcompiler_ir__", None)
    if fn is None and hasattr(f, "__adcompiler_rebuild__"):
        fn = f.__adcompiler_ir__ = f.__adcompiler_rebuild__().__adcompiler_ir__
    return fn


def ir(f: Callable, *example_args, **example_kwargs) -> str:
    """The printed IR of `f` (or, for a generated function, of the gradient it computes).

    For a gradient whose code depends on the structure of its arguments (a dict, a
    NamedTuple, an object), the version for `example_args` if given (nothing runs), else
    the version that ran last."""
    return _ir.format_function(ir_function(f, *example_args, **example_kwargs))


def ir_function(f: Callable, *example_args, **example_kwargs) -> _ir.Function:
    """The IR that `ir` prints (and adcompiler.draw draws): `f`'s own, lowered from its
    source, or, for a generated function, the IR of what it computes."""
    from adcompiler import pytree

    inner = f.generated if isinstance(f, pytree.Bound) else f
    if (example_args or example_kwargs) and isinstance(inner, Structured):
        if isinstance(f, pytree.Bound):
            example_args, example_kwargs = f.bind_arguments(example_args, example_kwargs)
        f = inner.version_for(example_args, example_kwargs)[0]
    fn = _generated_ir(f)
    return fn if fn is not None else _ir.verify(lower_function(f))


def is_generated(f: Callable) -> bool:
    """Whether `f` is a function adcompiler generated (a gradient, a jvp, ...)."""
    from adcompiler import pytree

    if isinstance(f, (Structured, pytree.Bound)):
        return True
    return hasattr(f, "__adcompiler_ir__") or hasattr(f, "__adcompiler_rebuild__")


# ---------------------------------------------------------------------------
# Forward mode and higher order: jvp, hvp, hessian, jacobian
# ---------------------------------------------------------------------------
# Each is a composition of the two IR transforms: jvp = forward(f); hvp =
# forward(reverse(f)) (forward over reverse); hessian and jacobian call those
# generated functions once per basis vector. grad(grad(f)) differentiates the
# IR that the inner `grad` generated (kept as `__adcompiler_ir__`), not its
# source: generated code is plain Python too, but its IR is already at hand.


def primal_ir(f: Callable, *, for_reverse: bool = True, functions: bool = False) -> _ir.Function:
    """The IR of `f`: lowered from its source, or, for a function adcompiler generated,
    the IR it was generated from (so that transforms compose: grad of grad).
    functions: helpers called with arrays stay calls (reverse mode only)."""
    fn = _generated_ir(f)
    if fn is None:
        return _ir.verify(lower_function(f, functions=functions))
    if hasattr(f, "__adcompiler_rebuild_inline__"):  # helpers as calls: use the inlined one
        inline = f.__adcompiler_rebuild_inline__()
        fn, f = inline.__adcompiler_ir__, inline
    if for_reverse and (reason := _reverse_over_tapes_refused(fn)):
        raise NotImplementedError(
            f"reverse mode over {f.__name__}: {reason}; for second derivatives use ad.hvp "
            f"or ad.hessian (forward over reverse)"
        )
    tree = getattr(f, "__adcompiler_result_tree__", 0)
    results = list(fn.results)
    if isinstance(tree, tuple):  # keep the returned structure: a tuple of results
        order = list(_leaves(tree))
        results = [fn.results[i] for i in order]
    return _ir.Function(
        name=f.__name__,
        params=list(fn.params),
        body=_copy_block(fn.body),  # transforms may edit blocks in place (tapes in loops)
        results=results,
        source_file=fn.source_file,
        doc=fn.doc,
        returns_tuple=isinstance(tree, tuple),
    )


def _reverse_over_tapes_refused(fn: _ir.Function) -> str | None:
    """Why reverse mode cannot follow `fn`'s values through the tapes its loops save for
    its adjoint loops (adcompiler.reverse.tapes_refused), or None."""
    from adcompiler.reverse import tapes_refused

    return tapes_refused(fn)


def _copy_block(block: _ir.Block) -> _ir.Block:
    """A copy of `block`'s structure (nodes, regions, lists); the values are shared."""
    nodes = [
        _ir.Node(
            n.op, list(n.inputs), dict(n.attrs), list(n.outputs),
            [_copy_block(r) for r in n.regions], n.loc,
        )
        for n in block.nodes
    ]  # fmt: skip
    return _ir.Block(list(block.params), nodes, list(block.yields))


def _leaves(tree):
    if isinstance(tree, tuple):
        for t in tree:
            yield from _leaves(t)
    else:
        yield tree


jvp = _transform("jvp", "compiled_forward")
jvp.__doc__ = """A Jacobian-vector product, by forward mode.

The generated function maps ``(*args, tangent)`` to ``(f(*args), J·tangent)``.

Args:
    f: a Python function over NumPy arrays (any output: scalar, array or tuple).
    wrt: an argument name or position, or a tuple of them; default: the first.

Returns:
    A generated function taking f's arguments and then the tangent: an array shaped
    like the `wrt` argument, or a tuple of them for a tuple `wrt`. It returns f's
    value and its directional derivative, with the structure of f's output.
"""
hvp = _transform("hvp", "compiled_forward")
hvp.__doc__ = """A Hessian-vector product by forward over reverse: ``(*args, v) -> H·v``.

`f` must return a scalar. For a tuple `wrt`, `v` is a tuple with one array per
argument and so is the result (the blocks of H·v).
"""


def compiled_forward(f: Callable, kind: str, wrt: Any = None) -> Callable:
    """The cached generated function for `f` and a forward-mode transform."""
    return _cached(f, kind, wrt, _build_forward)


def _cached(f: Callable, kind: str, wrt: Any, build: Callable) -> Callable:
    key = (kind, wrt if not isinstance(wrt, list) else tuple(wrt))
    try:
        per_function = _cache.get(f)
    except TypeError:
        return build(f, kind, wrt)
    if per_function is not None and key in per_function:
        return per_function[key]
    if _may_be_structured(f, wrt) or _packed(f) is not None:
        g = ForwardStructured(f, kind, wrt)
    else:

        def make():
            return build(f, kind, wrt)

        if build is _build_forward:
            make.recipe = ("compiled_forward", f, kind, wrt)
        routed = functools.partial(
            _route_containers, f=f, wrt=wrt, make=lambda: ForwardStructured(f, kind, wrt)
        )
        g = _guarded(make, specializing=not split_finite(kind)[1], after=routed)
    _cache.setdefault(f, {})[key] = g
    return g


class ForwardStructured(Structured):
    """`Structured` for jvp and hvp: code per structure of the `wrt` arguments; the tangent
    (and an hvp's result) has the structure of the arguments."""

    def build(self, structures: dict | None) -> Callable:
        return _guarded(
            lambda: _build_forward(self.f, self.kind, self.wrt, structures), specializing=False
        )


def _refuse_structures_of_generated(f: Callable, kind: str, structures: dict | None):
    if structures and _generated_ir(f) is not None:
        raise DifferentiationTypeError(
            f"{kind.removesuffix('+aux')} of the generated function {_python_name(f)} with "
            f"respect to a dict, list, tuple or record argument is not supported yet; "
            f"use ad.hvp for second derivatives, or pass arrays"
        )


def _build_forward(
    f: Callable,
    kind: str,
    wrt: Any,
    structures: dict | None = None,
    functions: bool = True,
    seed: str = "like",
) -> Callable:
    """Generate and load `kind` (jvp, hvp) of `f`; for an hvp with `seed="one"`, return
    the IR of the gradient seeded with the constant 1.0 instead (see `_generate`)."""
    from adcompiler.forward import forward

    kind, finite = split_finite(kind)
    _refuse_structures_of_generated(f, kind, structures)
    if structures:
        primal = _ir.verify(lower_function(f, structures))
    else:
        primal = primal_ir(f, for_reverse=False)
    indices, single = resolve_wrt(f, primal, wrt)
    _check_no_dict_returned(f, primal, kind)
    wrt_values, tangent_tree = _wrt_leaves(primal, indices, single, structures or {})
    n_out = len(primal.results)
    if kind == "hvp":
        if primal.returns_tuple:
            raise DifferentiationTypeError(
                f"hvp needs {f.__name__} to return one scalar, but it returns a tuple"
            )
        gradient = _ir.verify(reverse(primal, wrt_values, cotangent=seed))
        fn = _ir.verify(forward(gradient, wrt_values, return_value=False))
        tree = tangent_tree  # H·v has the structure of the arguments
    else:
        fn = _ir.verify(forward(primal, wrt_values))
        value = tuple(range(n_out)) if primal.returns_tuple else 0
        tangents = tuple(range(n_out, 2 * n_out)) if primal.returns_tuple else n_out
        tree = (value, tangents)
    if not isinstance(tangent_tree, int):
        fn = _tangents_as_one_parameter(fn, len(primal.params), kind, tangent_tree)
    if seed == "one":
        return _as_emitted(fn)
    names = [primal.params[i].hint for i in indices]
    doc = (
        f"{_DESCRIPTION[kind]} {f.__name__} with respect to {', '.join(names)}.\n\n"
        f"Generated by adcompiler from {primal.source_file}"
        f"{_first_line(f)}."
    )
    g = _loaded(fn, f"{_python_name(f)}_{kind}", doc, tree, None,
                getattr(f, "__kwdefaults__", None), check_finite=finite)  # fmt: skip
    if kind == "hvp":
        _rebuild_one(g, f, kind, wrt, structures)
    g.__wrapped_primal__ = f
    return g


_DESCRIPTION.update(
    jvp="Value and Jacobian-vector product (forward mode) of",
    hvp="Hessian-vector product (forward over reverse) of",
)


def _first_line(f: Callable) -> str:
    code = getattr(f, "__code__", None)
    return f":{code.co_firstlineno}" if code is not None and code.co_firstlineno > 1 else ""


def _tangents_as_one_parameter(
    fn: _ir.Function, n_params: int, kind: str, tree: Any, name: str | None = None
) -> _ir.Function:
    """Replace the trailing tangent parameters by one parameter with the structure `tree`
    (a tuple for a tuple `wrt`, a dict for a dict argument), that they are read from:
    ``W_dot = tangent['W']``."""
    from adcompiler.ops.structure import GETITEM

    tangents = fn.params[n_params:]
    taken = {p.hint for p in fn.params[:n_params]}
    name = name or ("v" if kind == "hvp" else "tangent")
    while name in taken:
        name += "_"
    packed = _ir.Value(name)
    reads: list[_ir.Node] = []

    def read(source: _ir.Value, subtree: Any) -> None:
        items = subtree.items() if isinstance(subtree, dict) else enumerate(subtree)
        for key, sub in items:
            target = tangents[sub] if isinstance(sub, int) else _ir.Value(f"{name}_{key}")
            reads.append(_ir.Node(GETITEM, [source], {"index": ((key,), True)}, [target]))
            if not isinstance(sub, int):
                read(target, sub)

    read(packed, tree)
    nodes = list(fn.body.nodes)
    checks = 0  # read the tangents after the argument checks
    while checks < len(nodes) and not nodes[checks].outputs:
        checks += 1
    body = _ir.Block(nodes=[*nodes[:checks], *reads, *nodes[checks:]])
    return _ir.Function(
        fn.name, fn.params[:n_params] + [packed], body, fn.results, fn.source_file, fn.doc
    )


def hessian(f: Callable | None = None, wrt: Any = None) -> Callable:
    """The Hessian of scalar-valued `f`, one Hessian-vector product per input element.

    Returns a function with f's signature. For one `wrt` argument of shape s the
    Hessian has shape s + s; for a tuple `wrt`, it is a tuple of tuples of blocks,
    ``H[i][j]`` of shape s_i + s_j.
    """
    if f is None:
        return functools.partial(hessian, wrt=wrt)
    recipe = (hessian, (f, wrt))
    if isinstance(f, functools.partial) or inspect.ismethod(f):
        return _ByReference(_bound_blocks(hessian, f, wrt), recipe)
    product = hvp(f, wrt=wrt)
    primal = _primal_for_blocks("hessian", f, wrt, False)
    indices, single = resolve_wrt(f, primal, wrt)
    _refuse_packed("hessian", f, indices)

    def hessian_of(*args, **kwargs):
        args = _bind(f, args, kwargs)
        xs = [args[i] for i in indices]
        _arrays_only("hessian", f, xs)
        columns = []  # columns[j][k]: H·e_k for the k-th element of argument j
        same_draws = _same_draws(primal, args)
        for j, x in enumerate(xs):
            per_element = []
            for e in _basis(x):
                hv = same_draws(product, *args, _direction(e, j, xs, single))
                per_element.append([hv] if single else list(hv))
            columns.append(per_element)
        blocks = [
            [
                _stack_columns([col[i] for col in columns[j]], np.shape(xs[j]))
                for j in range(len(xs))
            ]
            for i in range(len(xs))
        ]
        return blocks[0][0] if single else tuple(tuple(row) for row in blocks)

    hessian_of.__name__ = f"{getattr(f, '__name__', 'f')}_hessian"
    hessian_of.__doc__ = f"Hessian of {getattr(f, '__name__', 'f')} (by Hessian-vector products)."
    return _ByReference(hessian_of, recipe)


class _ByReference:
    """What `hessian` and `jacobian` return: `fn`, pickled by reference to the transform and
    its arguments, ``recipe = (transform, args)``, like the functions `grad` returns: the
    process that loads it makes the same transform (from its caches, or generating it)."""

    def __init__(self, fn: Callable, recipe: tuple):
        self._fn, self._recipe = fn, recipe
        self.__name__ = self.__qualname__ = fn.__name__
        self.__doc__ = fn.__doc__

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)

    def __reduce__(self):
        return self._recipe


def _bound_blocks(make: Callable, f: Callable, wrt: Any) -> Callable:
    """hessian or jacobian of a partial or a bound method: of the function under it,
    called with the bound arguments (`wrt` as for `grad` of a partial)."""
    from adcompiler import pytree

    func, args, kwargs = pytree.unbind(f)
    inner = make(func, wrt=pytree.bound_wrt(func, args, kwargs, wrt))
    signature = inspect.signature(func)

    def of_bound(*more, **more_kwargs):
        call = signature.bind(*args, *more, **{**kwargs, **more_kwargs})
        return inner(*call.args, **call.kwargs)

    of_bound.__name__, of_bound.__doc__ = inner.__name__, inner.__doc__
    return of_bound


def _primal_for_blocks(kind: str, f: Callable, wrt: Any, for_reverse: bool) -> _ir.Function:
    """`primal_ir` for hessian and jacobian, which take arrays: a function whose arguments
    may hold records or dicts (it cannot be lowered for arrays) is refused clearly."""
    try:
        return primal_ir(f, for_reverse=for_reverse)
    except UnsupportedSyntaxError:
        if _may_be_structured(f, wrt):
            _refuse_structured(kind, f, "a structured argument")
        raise


def _refuse_packed(kind: str, f: Callable, indices: list[int]) -> None:
    """hessian and jacobian lay out blocks per array argument: not with respect to a
    `*args` parameter (a tuple) or a parameter after it."""
    packed = _packed(f)
    if packed is not None and any(i >= packed for i in indices):
        raise WrtError(
            f"{kind} of {f.__name__} with respect to its `*args` parameter (or one after "
            f"it) is not supported: name the arrays as parameters, or take the {kind} "
            f"with respect to the parameters before it"
        )


def _arrays_only(kind: str, f: Callable, xs: list) -> None:
    """hessian and jacobian lay out blocks per array: a structured argument is refused."""
    from adcompiler import pytree

    for x in xs:
        if pytree.structure_of(x) is not None:
            _refuse_structured(kind, f, f"a {type(x).__name__}")


def _refuse_structured(kind: str, f: Callable, what: str) -> None:
    raise DifferentiationTypeError(
        f"{kind} of {getattr(f, '__name__', f)} with respect to {what}: {kind} takes "
        f"arrays; for a structured argument use "
        f"ad.{'hvp' if kind == 'hessian' else 'jvp or ad.vjp'}, or pass its arrays"
    )


def _direction(e, j: int, xs: list, single: bool):
    """The basis direction `e` of argument `j`, zero in the other arguments."""
    if single:
        return e
    return tuple(e if m == j else np.zeros_like(y) for m, y in enumerate(xs))


def jacobian(f: Callable | None = None, wrt: Any = None, mode: str = "reverse") -> Callable:
    """The Jacobian of array-valued `f`: ``J[i..., j...] = d f(...)[i...] / d x[j...]``.

    mode="forward" runs one Jacobian-vector product per input element (best for
    few inputs); mode="reverse" one vector-Jacobian product per output element
    (best for few outputs). For a tuple `wrt`, a tuple of Jacobians.
    """
    if f is None:
        return functools.partial(jacobian, wrt=wrt, mode=mode)
    if mode not in ("forward", "reverse"):
        raise ValueError(f'mode must be "forward" or "reverse", not {mode!r}')
    recipe = (jacobian, (f, wrt, mode))
    if isinstance(f, functools.partial) or inspect.ismethod(f):
        return _ByReference(_bound_blocks(functools.partial(jacobian, mode=mode), f, wrt), recipe)
    primal = _primal_for_blocks("jacobian", f, wrt, mode == "reverse")
    if primal.returns_tuple:
        raise DifferentiationTypeError(
            f"jacobian needs {getattr(f, '__name__', f)} to return one array, but it returns a "
            f"tuple; take the Jacobian of each output separately"
        )
    indices, single = resolve_wrt(f, primal, wrt)
    _refuse_packed("jacobian", f, indices)
    product = (jvp if mode == "forward" else vjp)(f, wrt=wrt)

    def jacobian_of(*args, **kwargs):
        args = _bind(f, args, kwargs)
        xs = [args[i] for i in indices]
        _arrays_only("jacobian", f, xs)
        same_draws = _same_draws(primal, args)
        if mode == "forward":
            out = []
            for j, x in enumerate(xs):
                cols = []
                for e in _basis(x):
                    cols.append(same_draws(product, *args, _direction(e, j, xs, single))[1])
                out.append(_stack_columns(cols, np.shape(x)))
        else:
            value = same_draws(f, *args)
            rows = [same_draws(product, *args, e)[1] for e in _basis(value)]
            rows = [[r] if single else list(r) for r in rows]
            out = [_stack_rows([r[j] for r in rows], np.shape(value)) for j in range(len(xs))]
        return out[0] if single else tuple(out)

    jacobian_of.__name__ = f"{getattr(f, '__name__', 'f')}_jacobian"
    jacobian_of.__doc__ = f"Jacobian of {getattr(f, '__name__', 'f')} ({mode} mode)."
    return _ByReference(jacobian_of, recipe)


def _same_draws(primal: _ir.Function, args: list) -> Callable:
    """`call(g, *args)`: `g(*args)` from the states the generators `primal` draws from are
    in now, so that every product of a Hessian or Jacobian is taken of the same sample and
    the streams advance once, as in one call of the function (specialize/streams.py)."""
    from adcompiler.specialize import streams

    gens = streams.generators(primal, tuple(args))
    if not gens:
        return lambda g, *a: g(*a)
    start = [streams.state(gen) for gen in gens]

    def call(g, *a):
        for gen, s in zip(gens, start):
            streams.restore(gen, s)
        return g(*a)

    return call


def _bind(f: Callable, args: tuple, kwargs: dict) -> list:
    """f's arguments by position, with its defaults filled in."""
    bound = inspect.signature(f, follow_wrapped=False).bind(*args, **kwargs)
    bound.apply_defaults()
    return list(bound.args)


def _basis(x):
    """The unit vectors shaped like `x`, one per element (a float for a scalar)."""
    shape = np.shape(x)
    if shape == ():
        yield 1.0
        return
    dtype = np.result_type(x, 0.0)  # float32 in, float32 directions
    for k in range(int(np.prod(shape))):
        e = np.zeros(shape, dtype)
        e.flat[k] = 1.0
        yield e


def _stack_columns(columns: list, in_shape: tuple) -> np.ndarray:
    """``J[..., k] = columns[k]``, with the last axis unflattened to `in_shape`."""
    stacked = np.stack([_floats(c) for c in columns], axis=-1)
    return stacked.reshape(stacked.shape[:-1] + in_shape)


def _stack_rows(rows: list, out_shape: tuple) -> np.ndarray:
    """``J[k, ...] = rows[k]``, with the first axis unflattened to `out_shape`."""
    stacked = np.stack([_floats(r) for r in rows], axis=0)
    return stacked.reshape(out_shape + stacked.shape[1:])


def _floats(x) -> np.ndarray:
    """`x` as an array of its own float dtype (float64 for numbers and integers)."""
    return np.asarray(x, dtype=np.result_type(x, 0.0))
