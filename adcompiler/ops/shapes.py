"""Shape arithmetic that adjoint code uses instead of computing a value for its shape."""

from __future__ import annotations

import numpy as np

from adcompiler.ops.core import Op, Param, register

BROADCAST_SHAPES = register(
    Op(
        "broadcast_shapes",
        np.broadcast_shapes,
        (Param("shapes", "varargs"),),
        "np.broadcast_shapes",
        nondiff=True,
        inline=True,
    )
)
