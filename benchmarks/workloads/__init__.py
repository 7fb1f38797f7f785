"""The benchmark workloads, each a module with one contract.

A workload module defines:

- ``NAME``: the key used on the command line and in result files.
- ``primal``: the function as a user writes it for adcompiler (plain NumPy,
  module level, arrays as separate arguments).
- ``WRT``: the names of the arguments the gradient is taken with respect to.
- ``STATIC``: the names of arguments that are plain Python numbers (loop counts,
  constants); JAX's jit treats them as static.
- ``SIZES``: ``{"small": {...}, "large": {...}}``, the shape parameters.
- ``make_inputs(size, seed)``: a dict of the primal's arguments, in order.
- ``value_and_grad``: the hand-written reference, same signature as ``primal``,
  returning ``(value, (grad_1, ..., grad_k))`` in ``WRT`` order.
- ``torch_primal(torch)``: the primal written for PyTorch.
- optionally ``jax_primal(jnp)`` / ``autograd_primal(anp)``; by default the
  primal's own code runs with ``np`` bound to ``jax.numpy`` / ``autograd.numpy``.
"""

import types
from types import ModuleType

from benchmarks.workloads import gmm, logistic, lstm, mlp, scalar_loop

WORKLOADS: dict[str, ModuleType] = {
    module.NAME: module for module in (scalar_loop, logistic, mlp, gmm, lstm)
}
SIZE_NAMES = ("small", "large")


def get(name: str) -> ModuleType:
    """The workload module called ``name``."""
    try:
        return WORKLOADS[name]
    except KeyError:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None


def rebind_numpy(function: types.FunctionType, numpy_like: ModuleType) -> types.FunctionType:
    """A copy of ``function`` whose global ``np`` is ``numpy_like`` (autograd.numpy, jax.numpy)."""
    namespace = dict(function.__globals__)
    namespace["np"] = numpy_like
    return types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__
    )
