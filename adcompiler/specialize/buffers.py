"""Which elementwise results may be written into the buffer of an operand."""

from __future__ import annotations

import numpy as np

from adcompiler.ops.core import Op
from adcompiler.ssa import REUSE, Function, walk


def numpy_ufunc(op: Op) -> bool:
    """True for an operator that is a NumPy ufunc spelled ``np.<name>``: it takes
    ``out=``."""
    impl = op.impl
    return isinstance(impl, np.ufunc) and getattr(np, impl.__name__, None) is impl


def _unary_ufunc(op: Op) -> bool:
    """`np.tanh` and the like: callable as ``np.<name>(x, out=x)``."""
    return op.same_shape and numpy_ufunc(op) and op.impl.nin == 1


def mark_reuse(fn: Function, known: dict) -> None:
    """Mark `a * b` (and +, -, /) and `np.tanh(a)` (and other unary ufuncs) whose result
    has the shape and dtype of `a`, where `a` is an array computed here: the code
    generator may then write `a *= b`, `np.tanh(a, out=a)` if nothing reads `a`
    afterwards (ssa.REUSE)."""
    defs = {v.id: n for n in walk(fn.body) for v in n.outputs}
    for node in walk(fn.body):
        if node.op.augmented and len(node.inputs) == 2:  # a + b as a += b, or b += a
            sides = (0, 1)
        elif _unary_ufunc(node.op) and len(node.inputs) == 1:
            sides = (0,)
        else:
            continue
        result = known.get(node.output.id)
        if result is None or result[0] != "array" or result[1] == ():
            continue
        free = tuple(
            i for i in sides
            if known.get(node.inputs[i].id) == result
            and (producer := defs.get(node.inputs[i].id)) is not None
            and (isinstance(producer.op.impl, np.ufunc) or producer.op.fresh)
        )  # fmt: skip
        if free:
            REUSE[node] = free
