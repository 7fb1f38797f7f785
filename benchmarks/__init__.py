"""Benchmarks: adcompiler's generated gradients against hand-written NumPy and peer tools.

Run ``python -m benchmarks.run`` (``--quick`` for a smoke run); see docs/benchmarks.md.
"""
