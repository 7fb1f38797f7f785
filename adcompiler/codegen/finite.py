"""What code generated with check_finite=True checks (the emitter writes the calls).

After each statement, ``check_result_finite(<result>, <what>, <operator>, <file.py:LINE>,
<line>, **<inputs>)``; before the first statement that reads an argument or a global,
``check_input_finite(<it>, ...)`` (both in adcompiler.runtime). This module says which
statements get them and how a value is described in the message (docs/debugging.md).
"""

from __future__ import annotations

import functools

import numpy as np

from adcompiler import runtime
from adcompiler.ops.control import TAPE_GET, TAPE_LIST, TAPE_NEW, TAPE_STACK
from adcompiler.ops.core import Op, op_for
from adcompiler.ops.mutation import INDEX_ADD, MAKE_LIST, SETITEM
from adcompiler.ops.structure import ATTRIBUTES, CONST
from adcompiler.ssa import Node, Value

# Not checked: a tape (np.empty), an entry read back from one, a new list; an array
# written into (its operands are checked, and after `x[i] += v` the emitter checks x[i]).
UNCHECKED = (TAPE_NEW, TAPE_LIST, TAPE_STACK, TAPE_GET, MAKE_LIST, SETITEM, INDEX_ADD)


def what_is(v: Value, name: str) -> str:
    """How a check names `v` (generated as `name`): "forward value of h", "adjoint of x",
    "tangent of s", or for a temporary its name: "adjoint temporary multiply"."""
    sweep = next((r for r in ("adjoint", "tangent") if v.role.startswith(r)), "forward")
    if v.role.endswith("temp"):
        return f"{sweep} temporary {name}"
    return f"{'forward value' if sweep == 'forward' else sweep} of {v.hint or name}"


def checks_result(node: Node, ints: set[int]) -> bool:
    """True if `node`'s results are checked after it. Not: a constant; a loop or an `if`
    (their regions' statements are checked); `UNCHECKED`; a view or an element of an
    input, or the result of an operator that is not differentiable (shapes, comparisons,
    rounding): finite where its inputs are, and those are checked (but `x // 0` is inf
    and a sum may overflow: `_checked_anyway`); a Python int (`ints`)."""
    if not node.outputs or node.op is CONST or node.op.regions or node.op in UNCHECKED:
        return False
    if (node.op.nondiff or node.op.holds is not None or node.op.view is not None) and (
        node.op not in _checked_anyway()
    ):
        return False
    return not all(v.id in ints for v in node.outputs)


def checks_inputs(node: Node) -> bool:
    """True if `node` is a statement at which an argument or a global it is the first to
    read is checked: it reads values (not only a shape, size or dtype)."""
    return bool(node.outputs) and node.op not in UNCHECKED + _reads_metadata()


@functools.cache
def _reads_metadata() -> tuple[Op, ...]:
    like = (runtime.zero_like, np.zeros_like, np.ones_like, len)
    return (*ATTRIBUTES.values(), *(op_for(f) for f in like))


@functools.cache
def _checked_anyway() -> tuple[Op, ...]:
    """Operators `checks_result` would pass over that can make an infinity from finite
    inputs: `np.floor_divide` (by 0) and `unbroadcast` (a sum)."""
    return (op_for(np.floor_divide), op_for(runtime.unbroadcast))
