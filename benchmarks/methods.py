"""The ways of computing a workload's value and gradient that the harness times.

``prepare(method, workload, inputs)`` returns a ``Prepared``: a no-argument
``run`` that does one evaluation in the method's native types (inputs are
converted once, beforehand), and ``to_numpy`` that turns what ``run`` returned
into ``(value, grads)`` with NumPy arrays, for checking against the
hand-written gradient. Asynchronous frameworks block on their results inside
``run`` so that the time is the time of the work.

A peer that is not installed raises ``MethodUnavailable``.
"""

import inspect
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.workloads import rebind_numpy

METHODS = ("primal", "hand", "adcompiler", "autograd", "jax", "jax_jit", "torch")
PEERS = ("autograd", "jax", "jax_jit", "torch")
DESCRIPTIONS = {
    "primal": "the primal alone (no gradient)",
    "hand": "value and gradient written by hand in NumPy",
    "adcompiler": "adcompiler.value_and_grad",
    "autograd": "autograd.value_and_grad (tape)",
    "jax": "jax.value_and_grad, op by op (no jit)",
    "jax_jit": "jax.jit(jax.value_and_grad)",
    "torch": "PyTorch eager, CPU, torch.autograd.grad",
}


class MethodUnavailable(Exception):
    """The method's library is not installed here."""


@dataclass
class Prepared:
    run: object
    to_numpy: object
    setup: dict = field(default_factory=dict)  # method-specific facts, e.g. compile times


def argument_names(workload):
    return tuple(inspect.signature(workload.primal).parameters)


def wrt_positions(workload):
    names = argument_names(workload)
    return tuple(names.index(name) for name in workload.WRT)


def _numpy_result(result):
    value, grads = result
    return float(value), tuple(np.asarray(g, dtype=float) for g in grads)


def _prepare_primal(workload, args):
    return Prepared(lambda: workload.primal(*args), lambda value: (float(value), ()))


def _prepare_hand(workload, args):
    return Prepared(lambda: workload.value_and_grad(*args), _numpy_result)


def _prepare_adcompiler(workload, args):
    try:
        import adcompiler
    except ImportError as error:
        raise MethodUnavailable(f"adcompiler not importable: {error}") from error
    t0 = time.perf_counter()
    gradient = adcompiler.value_and_grad(workload.primal, wrt=workload.WRT)
    t1 = time.perf_counter()
    result = gradient(*args)
    t2 = time.perf_counter()
    setup = {"build_s": t1 - t0, "first_call_s": t2 - t1, "first_result": result}
    try:
        setup["generated_source"] = adcompiler.source(gradient)
    except Exception as error:  # the source is for reading, not needed to time
        setup["generated_source"] = f"unavailable: {error!r}"
    return Prepared(lambda: gradient(*args), _numpy_result, setup)


def _prepare_autograd(workload, args):
    try:
        import autograd
        import autograd.numpy as anp
    except ImportError as error:
        raise MethodUnavailable("autograd not installed") from error
    primal = getattr(workload, "autograd_primal", None)
    primal = primal(anp) if primal else rebind_numpy(workload.primal, anp)
    gradient = autograd.value_and_grad(primal, argnum=wrt_positions(workload))
    return Prepared(lambda: gradient(*args), _numpy_result)


def _import_jax():
    try:
        import jax
    except ImportError as error:
        raise MethodUnavailable("jax not installed") from error
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    return jax


def _jax_gradient(workload, args, jit):
    jax = _import_jax()
    import jax.numpy as jnp

    primal = getattr(workload, "jax_primal", None)
    primal = primal(jnp) if primal else rebind_numpy(workload.primal, jnp)
    gradient = jax.value_and_grad(primal, argnums=wrt_positions(workload))
    if jit:
        names = argument_names(workload)
        static = tuple(names.index(name) for name in workload.STATIC)
        gradient = jax.jit(gradient, static_argnums=static)
    jax_args = tuple(jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args)
    t0 = time.perf_counter()
    jax.block_until_ready(gradient(*jax_args))
    setup = {"first_call_s": time.perf_counter() - t0, "jax_devices": str(jax.devices())}
    return Prepared(
        lambda: jax.block_until_ready(gradient(*jax_args)),
        lambda result: _numpy_result((result[0], tuple(np.asarray(g) for g in result[1]))),
        setup,
    )


def _prepare_jax(workload, args):
    return _jax_gradient(workload, args, jit=False)


def _prepare_jax_jit(workload, args):
    return _jax_gradient(workload, args, jit=True)


def _prepare_torch(workload, args):
    try:
        import torch
    except ImportError as error:
        raise MethodUnavailable("torch not installed") from error
    torch.set_num_threads(1)
    primal = workload.torch_primal(torch)
    wrt = set(wrt_positions(workload))
    torch_args = []
    for position, value in enumerate(args):
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value.copy())
        elif position in wrt:
            value = torch.tensor(value, dtype=torch.float64)
        if position in wrt:
            value.requires_grad_(True)
        torch_args.append(value)
    params = [torch_args[position] for position in sorted(wrt)]

    def run():
        value = primal(*torch_args)
        return value, torch.autograd.grad(value, params)

    def to_numpy(result):
        value, grads = result
        return float(value.detach()), tuple(g.detach().numpy() for g in grads)

    return Prepared(run, to_numpy, {"torch": _torch_facts(torch)})


def _torch_facts(torch):
    """Threads and BLAS of PyTorch, which threadpoolctl cannot see (MKL is linked in)."""
    words = torch.__config__.show().replace(",", " ").split()
    blas = next((word.split("=", 1)[1] for word in words if "BLAS_INFO=" in word), "unknown")
    return {"threads": torch.get_num_threads(), "blas": blas, "version": torch.__version__}


_PREPARE = {
    "primal": _prepare_primal,
    "hand": _prepare_hand,
    "adcompiler": _prepare_adcompiler,
    "autograd": _prepare_autograd,
    "jax": _prepare_jax,
    "jax_jit": _prepare_jax_jit,
    "torch": _prepare_torch,
}


def prepare(method, workload, inputs):
    """A ``Prepared`` for ``method`` on ``workload`` with the argument dict ``inputs``."""
    args = tuple(inputs[name] for name in argument_names(workload))
    return _PREPARE[method](workload, args)


def compare(result, reference, names=None):
    """Largest relative error of ``result`` against ``reference`` (both from ``to_numpy``).

    With ``names`` (the ``WRT`` names), returns ``(error, what)`` where ``what`` says
    which part was worst: ``"value"`` or ``"gradient for <name>"``.
    """
    value, grads = result
    ref_value, ref_grads = reference
    labels = ["value"] + [f"gradient for {name}" for name in names or range(len(ref_grads))]
    errors = [abs(value - ref_value) / max(abs(ref_value), 1e-12)]
    if len(grads) not in (0, len(ref_grads)):
        errors.append(float("inf"))
        labels[1] = f"{len(grads)} gradients instead of {len(ref_grads)}"
    else:
        for grad, ref in zip(grads, ref_grads, strict=False):
            if np.shape(grad) != np.shape(ref):
                errors.append(float("inf"))
                continue
            scale = max(float(np.max(np.abs(ref))), 1e-12)
            errors.append(float(np.max(np.abs(grad - ref))) / scale)
    worst = max(range(len(errors)), key=errors.__getitem__)
    return (errors[worst], labels[worst]) if names is not None else errors[worst]
