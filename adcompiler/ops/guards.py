"""Guards that generated code runs to turn misuse into a clear error."""

from __future__ import annotations

import ast

import numpy as np

from adcompiler import runtime
from adcompiler.ops.core import Op, Param, register


def check_scalar(value, name):
    """Refuse a non-scalar output where a gradient needs a scalar one."""
    if np.ndim(value) != 0:
        raise TypeError(
            f"grad needs {name} to return a scalar, but it returned shape {np.shape(value)}; "
            f"reduce it (np.sum, np.mean), or use ad.vjp for a vector-Jacobian product"
        )


def _check_scalar_spelling(node, args):
    return ast.Call(
        ast.Name("check_scalar", ast.Load()), [args[0], ast.Constant(node.attrs["name"])], []
    )


runtime.HELPERS["check_scalar"] = check_scalar
CHECK_SCALAR = register(
    Op(
        "check_scalar",
        check_scalar,
        (Param("x"), Param("name", "attr")),
        _check_scalar_spelling,
        nondiff=True,
        unique=True,
    )
)
