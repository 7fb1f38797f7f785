"""Array methods and builtins, mapped onto the NumPy functions the registry knows.

``x.sum(axis=0)`` is lowered as ``np.sum(x, axis=0)``; ``x.reshape(3, -1)``
as ``np.reshape(x, (3, -1))``. Each entry is ``name: (function, adapt)`` where
`adapt(args, kwargs)` rewrites the method's arguments (after `self`) into the
function's.
"""

from __future__ import annotations

import numpy as np

from adcompiler import runtime
from adcompiler.frontend.base import Static

ATTRIBUTE_HINT = "use the NumPy function instead (see docs/operators.md for the supported ones)"


def _same(args, kwargs):
    return args, kwargs


def _shape_from_varargs(args, kwargs):
    """``x.reshape(3, -1)`` and ``x.reshape((3, -1))`` both mean shape (3, -1)."""
    if len(args) == 1:
        return args, kwargs
    return [tuple(args)], kwargs


def _axes_from_varargs(args, kwargs):
    if not args:
        return [], kwargs
    if len(args) == 1:
        return [], {"axes": args[0], **kwargs}
    return [], {"axes": Static(tuple(a.obj for a in args)), **kwargs}


def _clip_method(args, kwargs):
    """``x.clip(0)``, ``x.clip(max=1)``: np.clip's `a_min`, `a_max`, a missing one None."""
    bounds = dict(zip(("min", "max"), args))
    bounds.update({k: kwargs.pop(k) for k in ("min", "max") if k in kwargs})
    none = Static(None)
    return [bounds.get("min", none), bounds.get("max", none)], kwargs


def _clip_function(args, kwargs):
    """``np.clip(x, min=0)`` (NumPy >= 2.1): `a_min`, `a_max`, the missing one None."""
    if "min" not in kwargs and "max" not in kwargs:
        return args, kwargs
    kwargs = dict(kwargs)
    for name in ("min", "max"):
        kwargs[f"a_{name}"] = kwargs.pop(name, Static(None))
    return args, kwargs


# Functions whose keywords have other names too: ``function: adapt(args, kwargs)``
FUNCTIONS = {np.clip: _clip_function}


METHODS = {
    "sum": (np.sum, _same),
    "mean": (np.mean, _same),
    "prod": (np.prod, _same),
    "max": (np.max, _same),
    "min": (np.min, _same),
    "dot": (np.dot, _same),
    "cumsum": (np.cumsum, _same),
    "cumprod": (np.cumprod, _same),
    "var": (np.var, _same),
    "std": (np.std, _same),
    "clip": (np.clip, _clip_method),
    "trace": (np.trace, _same),
    "repeat": (np.repeat, _same),
    "squeeze": (np.squeeze, _same),
    "ravel": (np.ravel, _same),
    "flatten": (np.ndarray.flatten, _same),
    "copy": (np.copy, _same),
    "astype": (runtime.astype, _same),
    "reshape": (np.reshape, _shape_from_varargs),
    "transpose": (np.transpose, _axes_from_varargs),
    "swapaxes": (np.swapaxes, _same),
    "diagonal": (np.diagonal, _same),
    "argmax": (np.argmax, _same),
    "argmin": (np.argmin, _same),
}
