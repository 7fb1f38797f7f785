"""The random streams a generated function draws from, kept for calls that are not the user's.

A function that draws (adcompiler/ops/random.py) consumes its generators' streams each
time it runs. The calls the compiler makes besides the user's own (the probe run that
observes shapes, specialize/facts.py; the generic run that ADCOMPILER_CHECK compares a
specialized version with, specialize/check.py; the products `ad.hessian` and
`ad.jacobian` are made of) run inside `kept(...)`: the generators' states are saved
before and restored after, so the user's streams advance exactly once per call of theirs
and every run sees the same draws.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from adcompiler.ops.random import DRAW_GLOBAL, GLOBAL_STATE, NEW_GENERATORS, is_generator
from adcompiler.ops.structure import CONST
from adcompiler.ssa import Function, walk


def draws(fn: Function | None) -> bool:
    """True if `fn` may draw (fail closed: also when its IR is not known)."""
    return fn is None or any(n.op.effect for n in walk(fn.body))


def seeded_by_the_system(fn: Function | None) -> bool:
    """True if `fn` makes a generator whose seed is not a literal number
    (`np.random.default_rng()`, or a seed passed in, which may be None): two runs of it
    may draw different values."""
    if fn is None:
        return False
    return any(
        n.op in NEW_GENERATORS
        and not (n.inputs and n.inputs[0].is_const and isinstance(n.inputs[0].const, int))
        for n in walk(fn.body)
    )


def generators(fn: Function | None, args: tuple = (), kwargs: dict | None = None) -> list:
    """The generators a call of `fn` with these arguments may draw from: those among the
    arguments (in containers too), those the code holds as constants (a module global),
    and NumPy's global state if the code calls `np.random.<fn>`. None for a function that
    does not draw; where `fn` is None (its IR is not known), every candidate."""
    if not draws(fn):
        return []
    found: dict[int, object] = {}

    def visit(obj, depth: int = 0) -> None:
        if is_generator(obj):
            found[id(obj)] = obj
        elif isinstance(obj, (list, tuple)) and depth < 8:
            for item in obj:
                visit(item, depth + 1)
        elif isinstance(obj, dict) and depth < 8:
            for item in obj.values():
                visit(item, depth + 1)

    visit(list(args))
    visit(list((kwargs or {}).values()))
    nodes = [] if fn is None else list(walk(fn.body))
    if fn is None or any(n.op is DRAW_GLOBAL for n in nodes):
        found[id(GLOBAL_STATE)] = GLOBAL_STATE
    for n in nodes:
        if n.op is CONST and is_generator(n.attrs.get("value")):
            visit(n.attrs["value"])
    return list(found.values())


def state(generator):
    """A generator's state, as `restore` takes it."""
    if isinstance(generator, np.random.RandomState):
        return generator.get_state(legacy=False)
    return generator.bit_generator.state


def restore(generator, saved) -> None:
    if isinstance(generator, np.random.RandomState):
        generator.set_state(saved)
    else:
        generator.bit_generator.state = saved


def same_state(a, b) -> bool:
    """Two states (nested dicts of numbers and arrays) are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(a == b)


@contextmanager
def kept(gens: list):
    """Run the block and put `gens` back in the states they were in before it."""
    saved = [state(g) for g in gens]
    try:
        yield
    finally:
        for g, s in zip(gens, saved):
            restore(g, s)
