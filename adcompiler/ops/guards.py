"""Guards that generated code runs to turn misuse into a clear error."""

from __future__ import annotations

import ast

import numpy as np

from adcompiler import runtime
from adcompiler.ops.core import Op, Param, register


def check_scalar(value, name):
    """Refuse a non-scalar output where a gradient seeded with the constant 1.0 needs a
    scalar one (`runtime.one_like`, the seed of generic code, takes an array of one
    element too)."""
    if np.ndim(value) != 0:
        raise TypeError(
            f"grad needs {name} to return a scalar, but it returned shape {np.shape(value)}; "
            f"reduce it (np.sum, np.mean), or use ad.vjp for a vector-Jacobian product"
        )


def check_seed(value, name):
    """Refuse an output that code seeded with the constant 1.0 was not made for: one that
    is not a 0-d float64 (or a Python number). Only the specializer makes such code, for
    signatures where it saw the output is one, and drops this check (it marks the output
    whose observation it reads); `runtime.one_like` is the general seed."""
    if np.ndim(value) != 0 or np.result_type(value, 0.0) != np.float64:
        raise TypeError(
            f"the code for {name} seeded with 1.0 needs a float64 scalar output, "
            f"not {np.result_type(value, 0.0)} of shape {np.shape(value)}"
        )


def _guard(fn):
    def spelling(node, args):
        return ast.Call(
            ast.Name(fn.__name__, ast.Load()), [args[0], ast.Constant(node.attrs["name"])], []
        )

    runtime.HELPERS[fn.__name__] = fn
    return register(
        Op(
            fn.__name__,
            fn,
            (Param("x"), Param("name", "attr")),
            spelling,
            nondiff=True,
            unique=True,
        )
    )


CHECK_SCALAR = _guard(check_scalar)
CHECK_SEED = _guard(check_seed)
