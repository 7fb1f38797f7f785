"""Specialization of a generated function on the shapes and dtypes of its arguments.

Generic generated code cannot know whether `x + b` broadcast, so the adjoint sums
`unbroadcast(g, np.shape(x))` at run time, and a scalar's adjoint is spread with
`np.broadcast_to`. Once the arguments' shapes and dtypes are known, most of those
disappear: `unbroadcast(g, np.shape(x))` is `g` when the shapes agree and a plain
`np.sum(g, axis=0)` when they do not; a broadcast that a product makes anyway
goes too.

Two facts about each value make that safe:

- its *status*, found statically on the IR: CONST (the value itself is fixed by
  the arguments' shapes, like `np.shape(x)` or `x.shape[0] * 2`), SHAPED (its
  shape and dtype are fixed by them, like `x @ w`), or FREE (its shape may depend
  on the data: a boolean mask, a list grown in a `while` loop, a branch taken on
  the data, the result of a recursive helper);
- what it *was* in one run of the generic code with probes (`observe`): its
  shape, dtype or, for shape tuples and integers, its value. A value seen with
  two different shapes (a carried value that grows) counts as FREE.

A rewrite uses a value's observation only if its status makes it hold for every
call with arguments of the same shapes and dtypes; `Specializing` (below) keys the
generated versions on exactly that.

Modules: `facts` (probes, statuses, facts), `rewrite` (the rewrites, in the order of
`REWRITES`), `sums` (sums moved ahead of linear steps), `batch` (sums over a loop's
iterations taken after it), `assemble` (adjoints of slices joined), `buffers` (results
written in place), `stacks` (tapes as one array), `check` (each specialized version
checked against the generic one on its first calls, under ADCOMPILER_CHECK=1), `streams`
(the random streams a function draws from, put back after the probe run and the check).

    %s = shape(%x)                               (%x, %g seen with shape (32, 10))
    %gx = unbroadcast(%g, %s)       ──▶          uses of %gx read %g
"""

from __future__ import annotations

import functools
import os

import numpy as np

from adcompiler import passes
from adcompiler.specialize import check, streams
from adcompiler.specialize.facts import facts, float64_scalar, observe, probe
from adcompiler.specialize.rewrite import specialize
from adcompiler.ssa import Function


def enabled() -> bool:
    """Specialization is on unless ADCOMPILER_SPECIALIZE=0 (or ADCOMPILER_OPTIMIZE=0)."""
    return os.environ.get("ADCOMPILER_SPECIALIZE", "1") != "0" and passes.optimizing()


_ND = np.ndarray
# Versions kept per function: beyond that (sequences of ever new lengths, say), new
# signatures run the generic code rather than compile a version each.
MAX_VERSIONS = 16


def signature(args: tuple, kwargs: dict) -> tuple:
    """What the generated versions are keyed on: each argument's type, an array's shape
    and dtype (of an ndarray subclass too: a memmap's slices differ in shape), and the
    same of every leaf of a tuple, list or dict (its keys, in order, and its length)."""
    key = [  # (the common kinds inline: this runs on every call)
        (a.shape, a.dtype) if (kind := type(a)) is _ND else kind if kind in _PLAIN else _key(a)
        for a in args
    ]
    if kwargs:
        key.extend((k, _key(v)) for k, v in sorted(kwargs.items()))
    return tuple(key)


_PLAIN = frozenset({float, int, bool, complex, str, type(None), np.float64, np.float32})


def _key(a):
    """One argument's part of the signature (see `signature`)."""
    kind = type(a)
    if kind is _ND:
        return a.shape, a.dtype
    if isinstance(a, _ND):
        return kind, a.shape, a.dtype
    if isinstance(a, (tuple, list)):
        return kind, tuple(_key(v) for v in a)
    if isinstance(a, dict):
        return kind, tuple((k, _key(v)) for k, v in a.items())
    return kind


class Specializing:
    """A generated function that, from the second call with arguments of one signature
    (types, shapes, dtypes), runs a version of itself specialized on that signature.

    The first call runs the generic code; the second observes it once more with
    probes and compiles the specialized version, which every later call with that
    signature runs. Attributes (the IR, for transforms of this function) are the
    generic version's; `ad.source` shows the version that ran last.
    """

    def __init__(self, generic, build):
        functools.update_wrapper(self, generic)
        self.generic = generic
        self._build = build  # (ir, note for the docstring, extra globals) -> function
        self.versions: dict = {}
        self.once: set = set()
        self.latest = generic
        self._ir: Function | None = None
        self._one_ir: Function | bool | None = None  # (False: there is none)
        # with ADCOMPILER_CHECK=1 (adcompiler.specialize.check): per signature, the calls
        # still to check, and what its version was made from
        self.unchecked: dict = {}
        self.recipes: dict = {}
        # (positions, names, make): arguments that, given as a dict, list or tuple, go to
        # `make()` (code for their structure) instead: this code is for arrays
        self.containers: tuple | None = None

    def __call__(self, *args, **kwargs):
        key = signature(args, kwargs)
        g = self.versions.get(key)
        if g is None and self.containers is not None:
            g = self.for_containers(args, kwargs)
        if g is None:
            if key in self.once and len(self.versions) < MAX_VERSIONS:
                g = self.versions[key] = self.specialized(args, kwargs)
            else:  # a first call, or shapes that keep changing: the generic code
                self.once.add(key)
                g = self.generic
        self.latest = g
        if key in self.unchecked and g is not self.generic:  # ADCOMPILER_CHECK=1
            return check.checked_call(self, key, g, args, kwargs)
        return g(*args, **kwargs)

    def for_containers(self, args: tuple, kwargs: dict):
        """The function for structured arguments, if a `containers` argument is one."""
        positions, names, make = self.containers
        given = [args[i] if i < len(args) else kwargs.get(n) for i, n in zip(positions, names)]
        if not any(isinstance(v, (dict, list, tuple)) for v in given):
            return None
        return make()

    def specialized(self, args: tuple, kwargs: dict):
        """The version of this function for arguments like `args`, `kwargs` (made from the
        version with helpers inlined, where the generic one calls generated helper
        functions: what flows through a call is not known to the rewrites). A gradient
        whose output is a float64 scalar for this signature is made from the code seeded
        with the constant 1.0 (`seeded_ir`), which the rules fold; other outputs (float32,
        shape (1,)) keep the generic code's seed, `one_like(output)`."""
        fn = self.source_ir()
        if fn is None:
            return self.generic

        def run(probed):
            return self._build(probed, None, {"probe": probe})(*args, **kwargs)

        draws_from = streams.generators(fn, args, kwargs)

        def watched(ir):
            with streams.kept(draws_from):  # the user's call draws, not the probe
                return observe(ir, run)

        known = None
        one = self.seeded_ir() if _float64_only([*args, *kwargs.values()]) else None
        if one is not None:
            try:
                _, seen = watched(one)
            except Exception:  # noqa: BLE001 - the output is not a float64 scalar (or the
                pass  # function raised): observed again below, as the generic code
            else:
                if seeded_with_one(one, seen):
                    fn, known = one, facts(one, seen)
        if known is None:
            try:
                _, seen = watched(fn)
            except Exception:  # noqa: BLE001 - the generic version stays in charge
                return self.generic
            known = facts(fn, seen)
        special = specialize(fn, known)
        note = check.describe_signature(fn, args, kwargs)
        if check.enabled():
            key = signature(args, kwargs)
            self.unchecked[key], self.recipes[key] = check.CALLS, (fn, known, note)
        return self._build(special, note)

    def source_ir(self) -> Function | None:
        """The IR the versions are made from (the helpers inlined), built once."""
        if self._ir is None:
            source = self.generic
            rebuild = getattr(source, "__adcompiler_rebuild_inline__", None)
            try:
                self._ir = _generic_ir(rebuild() if rebuild is not None else source)
            except Exception:  # noqa: BLE001 - the generic version stays in charge
                return None
        return self._ir

    def seeded_ir(self) -> Function | None:
        """The IR of a gradient seeded with the constant 1.0 (helpers inlined), built once;
        None for a transform without a seed (vjp, jvp) or if it cannot be built."""
        if self._one_ir is None:
            rebuild = getattr(self.generic, "__adcompiler_rebuild_one__", None)
            if rebuild is None:
                self._one_ir = False
            else:
                try:
                    self._one_ir = rebuild()
                except Exception:  # noqa: BLE001 - the generic version's IR stays in charge
                    self._one_ir = False
        return self._one_ir or None

    @property
    def __adcompiler_source__(self) -> str:
        return self.latest.__adcompiler_source__

    @property
    def __adcompiler_emitted__(self):
        return self.latest.__adcompiler_emitted__

    @property
    def __code__(self):
        return self.latest.__code__

    @property
    def __globals__(self):
        return self.generic.__globals__

    @property
    def __defaults__(self):
        return self.generic.__defaults__

    @property
    def __kwdefaults__(self):
        return self.generic.__kwdefaults__


def _float64_only(values) -> bool:
    """True unless a float or complex among `values` (leaves of tuples, lists and dicts
    too) has a dtype other than float64: then a gradient's output is, as a rule, a float64
    scalar (the observation checks it)."""
    for a in values:
        if isinstance(a, (tuple, list)):
            inner = a
        elif isinstance(a, dict):
            inner = a.values()
        else:
            dtype = getattr(a, "dtype", None)
            if isinstance(dtype, np.dtype) and dtype.kind in "fc" and dtype != np.float64:
                return False
            continue
        if not _float64_only(inner):
            return False
    return True


def seeded_with_one(fn: Function, seen: dict) -> bool:
    """True if `fn`, seeded with 1.0, was seen to have a float64 scalar output (at its
    `check_seed`, which then raised nothing). Its shape is settled by the signature or
    checked by `check_scalar`, which stays where it is not; its dtype may in principle
    depend on the data, where the status analysis cannot show it does not (a sum carried
    through a loop from 0.0): the gradient is then still right, only float64."""
    from adcompiler.ops.guards import CHECK_SEED

    guards = [n for n in fn.body.nodes if n.op is CHECK_SEED]
    return bool(guards) and all(
        len(d := seen.get(n.inputs[0].id, ())) == 1 and float64_scalar(next(iter(d)))
        for n in guards
    )


def _generic_ir(g):
    fn = getattr(g, "__adcompiler_ir__", None)
    if fn is None and hasattr(g, "__adcompiler_rebuild__"):
        fn = g.__adcompiler_ir__ = g.__adcompiler_rebuild__().__adcompiler_ir__
    return fn
