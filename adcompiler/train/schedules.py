"""Learning-rate schedules: functions of the step number.

A schedule maps the number of updates already applied (0 for the first
update) to a learning rate. Optimizers accept a float or a schedule::

    cosine(0.1, total_steps=1000)(0)       # 0.1
    cosine(0.1, total_steps=1000)(1000)    # 0.0
    step_decay(0.1, every=100)(250)        # 0.1 * 0.1**2
    warmup(cosine(0.1, 1000), steps=50)(9) # cosine(0.1, 1000)(9) * 10/50

They are small frozen dataclasses, so they compare, print and pickle.
"""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Constant:
    """The same rate at every step."""

    lr: float

    def __call__(self, step: int) -> float:
        return self.lr


@dataclass(frozen=True)
class StepDecay:
    """``lr * factor ** (step // every)``."""

    lr: float
    every: int
    factor: float = 0.1

    def __call__(self, step: int) -> float:
        return self.lr * self.factor ** (step // self.every)


@dataclass(frozen=True)
class Cosine:
    """Half a cosine from ``lr`` at step 0 to ``final_lr`` at ``total_steps``, then flat."""

    lr: float
    total_steps: int
    final_lr: float = 0.0

    def __call__(self, step: int) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        return self.final_lr + 0.5 * (self.lr - self.final_lr) * (
            1.0 + math.cos(math.pi * progress)
        )


@dataclass(frozen=True)
class Warmup:
    """``schedule(step)`` scaled by a linear ramp ``(step + 1) / steps`` over the first steps."""

    schedule: object
    steps: int

    def __call__(self, step: int) -> float:
        return as_schedule(self.schedule)(step) * min(1.0, (step + 1) / self.steps)


constant = Constant
step_decay = StepDecay
cosine = Cosine
warmup = Warmup


def as_schedule(lr) -> object:
    """A float becomes :class:`Constant`; a callable is returned as it is."""
    if callable(lr):
        return lr
    return Constant(float(lr))
