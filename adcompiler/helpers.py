"""The namespace generated code runs in, and the names it calls the user's helpers by.

A helper that no derivative goes through stays a call, by its own name unless another
function generated code calls has that name (then `h0_2`). The frontend, the transforms
and `adcompiler.calls` (which generates the forward, adjoint and tangent functions of
helpers into this namespace) build on it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from adcompiler import runtime

NAMESPACE: dict = {"np": np, "__name__": "adcompiler.helpers"}
GENERATED: dict[str, Callable] = {}  # name -> every function generated into NAMESPACE


def register(fn: Callable, name: str) -> None:
    """Put `fn` into the namespace of generated code under `name`."""
    if GENERATED.get(name, fn) is not fn or _reserved(name):
        raise NotImplementedError(
            f"generated code calls the helper {name} by its name, which another function "
            f"generated code calls has too; rename the helper"
        )
    GENERATED[name] = NAMESPACE[name] = fn


def _reserved(name: str) -> bool:
    return name in runtime.HELPERS or name in runtime.EXTERNAL or name in ("np", "slice")


def helper_name(fn: Callable) -> str:
    """The name generated code calls the user's helper `fn` by (its own, unless another
    function generated code calls has it), registered in the namespace of generated code."""
    name, n = fn.__name__, 1
    while GENERATED.get(name, fn) is not fn or _reserved(name):
        n += 1
        name = f"{fn.__name__}_{n}"
    register(fn, name)
    return name
