"""Scalar polynomial recurrence: a Python loop of float operations.

``y <- c0 + y * (c1 + y * (c2 + y * c3))`` repeated ``steps`` times is six float
operations a step, so 16 steps are about 100 operations and 166 steps about 1,000.
Per-operation overhead is everything here: no array is involved.
"""

NAME = "scalar_loop"
WRT = ("x", "c0", "c1", "c2", "c3")
STATIC = ("steps",)
SIZES = {"small": {"steps": 16}, "large": {"steps": 166}}
SIZE_LABELS = {"small": "~100 ops", "large": "~1,000 ops"}


def primal(x, c0, c1, c2, c3, steps):
    y = x
    for _ in range(steps):
        y = c0 + y * (c1 + y * (c2 + y * c3))
    return y


def make_inputs(size, seed=0):
    """Coefficients that make the recurrence contract towards a fixed point."""
    import numpy as np

    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-0.05, 0.05, size=5)
    return {
        "x": 0.2 + float(jitter[0]),
        "c0": 0.3 + float(jitter[1]),
        "c1": 0.5 + float(jitter[2]),
        "c2": 0.1 + float(jitter[3]),
        "c3": -0.05 + float(jitter[4]),
        "steps": SIZES[size]["steps"],
    }


def value_and_grad(x, c0, c1, c2, c3, steps):
    """Save every iterate, then run the recurrence's adjoint backwards."""
    saved = []
    y = x
    for _ in range(steps):
        saved.append(y)
        y = c0 + y * (c1 + y * (c2 + y * c3))
    value = y
    adjoint_y = 1.0
    g0 = g1 = g2 = g3 = 0.0
    for y in reversed(saved):
        y2 = y * y
        g0 += adjoint_y
        g1 += adjoint_y * y
        g2 += adjoint_y * y2
        g3 += adjoint_y * y2 * y
        adjoint_y *= c1 + y * (2.0 * c2 + 3.0 * c3 * y)
    return value, (adjoint_y, g0, g1, g2, g3)


def torch_primal(torch):
    """The primal is plain arithmetic, so PyTorch runs it as is on 0-d tensors."""
    return primal
