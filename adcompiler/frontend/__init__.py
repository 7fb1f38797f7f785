"""The frontend: Python function → IR (source, name resolution, SSA, diagnostics)."""

from adcompiler.frontend.lower import lower_function

__all__ = ["lower_function"]
