"""The operator registry: every operator, its spelling, and its derivative rules."""

from adcompiler.ops import guards, numpy_ops, shapes, structure  # noqa: F401 - registers
from adcompiler.ops.core import OPS, REGISTRY, Builder, Op, Param, Sym, lookup, op_for

__all__ = ["OPS", "REGISTRY", "Builder", "Op", "Param", "Sym", "lookup", "op_for"]
