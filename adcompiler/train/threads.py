"""Set how many threads NumPy's BLAS (OpenBLAS) uses, from inside a running process.

Small matrix products (a mini-batch through an MLP) run slower on several
BLAS threads than on one, and much slower when other processes share the
cores: OpenBLAS's threads spin while they wait. ``fit(..., blas_threads=1)``
and ``adcompiler train --blas-threads 1`` use this module::

    previous = set_blas_threads(1)   # None when no OpenBLAS is loaded
    ...
    set_blas_threads(previous)

It finds the OpenBLAS library NumPy loaded (``/proc/self/maps``) and calls its
``openblas_set_num_threads`` (under the name scipy-openblas builds give it).
Where that is impossible (another BLAS, another OS) it does nothing.
"""

from __future__ import annotations

import ctypes
import re

_SYMBOLS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


def _openblas() -> tuple[object, object] | None:
    import numpy  # noqa: F401  (loads the BLAS library)

    try:
        with open("/proc/self/maps") as maps:
            paths = set(re.findall(r"(/\S*openblas\S*\.so\S*)", maps.read()))
    except OSError:
        return None
    for path in sorted(paths):
        library = ctypes.CDLL(path)
        for set_name, get_name in _SYMBOLS:
            if hasattr(library, set_name) and hasattr(library, get_name):
                return getattr(library, set_name), getattr(library, get_name)
    return None


def blas_threads() -> int | None:
    """How many threads OpenBLAS uses now (None if unknown)."""
    functions = _openblas()
    return int(functions[1]()) if functions else None


def set_blas_threads(count: int | None) -> int | None:
    """Set the OpenBLAS thread count; returns the previous count (None: nothing changed)."""
    functions = _openblas()
    if functions is None or count is None:
        return None
    previous = int(functions[1]())
    functions[0](int(count))
    return previous
