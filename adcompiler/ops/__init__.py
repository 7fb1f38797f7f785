"""The operator registry: every operator, its spelling, and its derivative rules."""

from adcompiler.ops import (  # noqa: F401 - registers the operators
    builtin_ops,
    calls,
    control,
    guards,
    linalg,
    mutation,
    numpy_math,
    numpy_ops,
    random,
    scipy_special,
    shapes,
    structure,
    views,
)
from adcompiler.ops.core import OPS, REGISTRY, Builder, Op, Param, Sym, lookup, op_for

__all__ = ["OPS", "REGISTRY", "Builder", "Op", "Param", "Sym", "lookup", "op_for"]
