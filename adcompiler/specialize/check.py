"""`ADCOMPILER_CHECK=1`: every specialized version is checked against the generic one.

On the first `CALLS` calls of each specialized version, the generic version also runs,
on copies of the arguments, and the two must agree: the same structure, types, shapes
and dtypes, the same values (NaN equal to NaN; floats to `RTOL`, as the order of sums
may differ; a 0-d array and a NumPy scalar of one dtype count as one type), and the
caller's arguments not written into. On a disagreement the version is made again with
only the first k rewrites of `rewrite.REWRITES`, for k found by bisection, and
`SpecializationMismatchError` names the first rewrite with which the version differs.
The test suite runs with the check on (tests/conftest.py)."""

from __future__ import annotations

import contextlib
import copy
import io
import os

import numpy as np

from adcompiler.codegen.naming import base_name
from adcompiler.errors import SpecializationMismatchError
from adcompiler.ops.random import is_generator
from adcompiler.specialize import streams
from adcompiler.specialize.rewrite import REWRITES, specialize
from adcompiler.ssa import Function

CALLS = 3  # calls of each specialized version that are checked
RTOL = 1e-10  # relative tolerance; absolute: ATOL times the largest magnitude of a result
ATOL = 1e-12  # (for float64; float32 rounds at 1e-7: 1000 and 100 of its epsilons)


def enabled() -> bool:
    return os.environ.get("ADCOMPILER_CHECK", "0") not in ("", "0")


def checked_call(spec, key, version, args: tuple, kwargs: dict):
    """`version(*args, **kwargs)`, checked against `spec.generic` (see the module)."""
    spec.unchecked[key] -= 1
    if spec.unchecked[key] <= 0:
        del spec.unchecked[key]
    source_ir = getattr(spec, "source_ir", None)  # the IR the versions are made from
    fn = source_ir() if source_ir is not None else None
    if streams.seeded_by_the_system(fn):  # two runs draw different values
        return version(*args, **kwargs)
    try:
        originals = copy.deepcopy((args, kwargs))
    except Exception:  # noqa: BLE001 - arguments that cannot be copied are not checked
        return version(*args, **kwargs)
    # The generic version draws from copies of the arguments' generators and from the
    # shared ones (globals), whose states are then put back: the version draws the same
    # values, and the user's streams advance once (specialize/streams.py).
    shared = streams.generators(fn, (), {})
    with streams.kept(shared):
        expected, failure = _generic(spec, originals)
        drawn = [streams.state(g) for g in shared]
    try:
        result = version(*args, **kwargs)
    except Exception as err:
        if failure is None or type(failure) is not type(err):
            _fail(spec, key, originals, expected, failure,
                  f"it raises {type(err).__name__}: {err}" + _raised(failure), err)  # fmt: skip
        raise
    if failure is not None:
        _fail(spec, key, originals, expected, failure,
              f"it returns, where the generic version raises {type(failure).__name__}: "
              f"{failure}")  # fmt: skip
    problem = _written(originals, (args, kwargs)) or _difference(result, expected)
    if not problem and not all(map(streams.same_state, map(streams.state, shared), drawn)):
        problem = "it draws a different number of random values"
    if problem:
        with streams.kept(shared):
            _fail(spec, key, originals, expected, failure, problem)
    return result


def _raised(failure) -> str:
    if failure is None:
        return ", the generic version does not"
    return f", the generic version {type(failure).__name__}: {failure}"


def _generic(spec, originals) -> tuple:
    """What the generic version returns on a copy of the arguments, or the exception it
    raises (what it prints is not printed twice). It must not write into them either."""
    args, kwargs = copy.deepcopy(originals)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = spec.generic(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - compared with what the version does
        return None, err
    problem = _written(originals, (args, kwargs))
    if problem:
        name = getattr(spec, "__name__", "the function")
        raise SpecializationMismatchError(f"the generic version of {name}: {problem}")
    return result, None


def _disagreement(version, originals, expected, failure) -> str | None:
    """How `version` disagrees with the generic version on a copy of the arguments."""
    args, kwargs = copy.deepcopy(originals)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = version(*args, **kwargs)
    except Exception as err:  # noqa: BLE001
        if failure is not None and type(failure) is type(err):
            return None
        return f"it raises {type(err).__name__}: {err}" + _raised(failure)
    if failure is not None:
        return "it returns where the generic version raises"
    return _written(originals, (args, kwargs)) or _difference(result, expected)


def _fail(spec, key, originals, expected, failure, problem: str, cause=None):
    recipe = spec.recipes.get(key)
    where = ""
    if recipe is not None:
        fn, known, note = recipe
        args, kwargs = originals
        where = _first_rewrite(spec, fn, known, note, originals, expected, failure)
        signature = describe_signature(fn, args, kwargs)
    else:
        signature = repr(key)
    name = getattr(spec, "__name__", "the function")
    message = (
        f"the version of {name} specialized for its arguments disagrees with the generic "
        f"version: {problem}.\n  {signature}\n  {where}"
    )
    raise SpecializationMismatchError(message) from cause


def _first_rewrite(spec, fn, known, note, originals, expected, failure) -> str:
    """Which rewrite makes the version differ, found by bisection over `REWRITES`."""

    def differs(k: int) -> bool:
        try:
            version = spec._build(specialize(fn, known, REWRITES[:k]), note)
        except Exception:  # noqa: BLE001 - a rewrite that breaks the code differs too
            return True
        return _disagreement(version, originals, expected, failure) is not None

    if differs(0):
        return ("It differs with no rewrite applied: the IR it is made from (helpers "
                "inlined) or the code written for it is at fault.")  # fmt: skip
    lo, hi = 0, len(REWRITES)
    if not differs(hi):
        return "Made again, the version agrees: the difference did not reproduce."
    while hi - lo > 1:  # the first `lo` rewrites agree, the first `hi` differ
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if differs(mid) else (mid, hi)
    return (f"It differs from the rewrite {REWRITES[hi - 1]!r} on (adcompiler/specialize/"
            f"rewrite.py, REWRITES): with the rewrites before it, it agrees.")  # fmt: skip


def _written(originals, now) -> str | None:
    """Where the caller's arguments were written into, if they were."""
    (args, kwargs), (args_now, kwargs_now) = originals, now
    pairs = [(f"argument {i}", a, b) for i, (a, b) in enumerate(zip(args_now, args))]
    pairs += [(f"argument {k!r}", kwargs_now[k], kwargs[k]) for k in kwargs]
    for path, a, b in pairs:
        where = _difference(a, b, path, exact=True, theirs="it was")
        if where:
            return f"it writes into the caller's arguments: {where}"
    return None


def _difference(got, want, path: str = "result", exact: bool = False,
                theirs: str = "the generic version's") -> str | None:  # fmt: skip
    """Where and how `got` differs from `want` (structure, types, shapes, dtypes,
    values), or None; `theirs` introduces what `want` has."""
    if is_generator(want):  # drawn from (generators in the result: compared as states)
        return None if exact or streams.same_state(*map(streams.state, (got, want))) else \
            f"{path}, a generator, is in another state than {theirs}"  # fmt: skip
    if type(got) is not type(want) and not _scalars(got, want) and not _arrays(got, want):
        return f"{path} is a {type(got).__name__}, {theirs} a {type(want).__name__}"
    if isinstance(want, dict):
        if list(got) != list(want):
            return f"{path} has the keys {list(got)}, {theirs} {list(want)}"
        for k in want:
            found = _difference(got[k], want[k], f"{path}[{k!r}]", exact, theirs)
            if found:
                return found
        return None
    if isinstance(want, (list, tuple)):
        if len(got) != len(want):
            return f"{path} has {len(got)} items, {theirs} {len(want)}"
        for i, (a, b) in enumerate(zip(got, want)):
            found = _difference(a, b, f"{path}[{i}]", exact, theirs)
            if found:
                return found
        return None
    if isinstance(want, (np.ndarray, np.generic, float, complex)):
        a, b = np.asarray(got), np.asarray(want)
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"{path} has shape {a.shape} and dtype {a.dtype}, {theirs} {b.shape} " \
                   f"and {b.dtype}"  # fmt: skip
        if _same_values(a, b, exact):
            return None
        return f"{path} is {_show(a, b, theirs)}"
    try:
        same = bool(got == want)
    except Exception:  # noqa: BLE001 - values that cannot be compared are not checked
        return None
    return None if same else f"{path} is {got!r}, {theirs} {want!r}"


def _arrays(a, b) -> bool:
    """True for two arrays of which one or both are of an ndarray subclass (a memmap's
    slice, a user's subclass): whether a result keeps the subclass depends on which NumPy
    function made it (`x * y` does, `np.zeros` does not), a choice the rewrites may
    change; shapes, dtypes and values are still compared."""
    return isinstance(a, np.ndarray) and isinstance(b, np.ndarray)


def _scalars(a, b) -> bool:
    """True for a 0-d array and a NumPy scalar (either way round): NumPy makes one from
    the other across `x += y` and `x = x + y`, which the code generator chooses between;
    their dtypes are still compared."""
    return all(isinstance(v, np.generic) or isinstance(v, np.ndarray) and v.ndim == 0
               for v in (a, b))  # fmt: skip


def _same_values(a: np.ndarray, b: np.ndarray, exact: bool) -> bool:
    if a.dtype.kind not in "fc":
        try:
            return bool(np.array_equal(a, b))
        except Exception:  # noqa: BLE001
            return True
    if exact:
        return bool(np.array_equal(a, b, equal_nan=True))
    finite = np.abs(b[np.isfinite(b)])
    scale = float(finite.max()) if finite.size else 0.0
    # float32 rounds at 1e-7: a sum taken in another order differs by more than 1e-10
    eps = float(np.finfo(b.dtype).eps)
    rtol, atol = max(RTOL, 1000 * eps), max(ATOL, 100 * eps)
    return bool(np.allclose(a, b, rtol=rtol, atol=atol * scale, equal_nan=True))


def _show(a: np.ndarray, b: np.ndarray, theirs: str) -> str:
    """The first element where `a` and `b` differ most, each side."""
    if a.ndim == 0:
        return f"{a.item()!r}, {theirs} {b.item()!r}"
    with np.errstate(invalid="ignore"):
        gap = np.abs(a.astype(complex) - b.astype(complex))
    gap[np.isnan(gap) & ~(np.isnan(a) & np.isnan(b))] = np.inf
    gap[np.isnan(gap)] = 0
    at = np.unravel_index(int(np.argmax(gap)), a.shape)
    return f"{a[at].item()!r} at {[int(i) for i in at]} (of shape {a.shape}), {theirs} " \
           f"{b[at].item()!r}"  # fmt: skip


def describe_signature(fn: Function, args: tuple, kwargs: dict) -> str:
    """`W: (784, 128) float64, b: float`: what a specialized version is for."""
    names = [base_name(p) for p in fn.params]
    items = list(zip(names, args)) + sorted(kwargs.items())
    parts = [
        f"{n}: {a.shape} {a.dtype}" if isinstance(a, np.ndarray) else f"{n}: {type(a).__name__}"
        for n, a in items
    ]
    return "Specialized for " + ", ".join(parts) + "."
