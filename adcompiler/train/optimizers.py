"""Optimizers as pure functions over parameter trees.

An optimizer is a small frozen object with two methods::

    state = opt.init(params)                         # {"step": 0, "m": tree, "v": tree}
    params, state = opt.update(params, grads, state) # new arrays; inputs untouched

``params`` and ``grads`` are trees of the same structure (an array, or a
dict/list/tuple of arrays; see :mod:`adcompiler.train.tree`). ``state`` is a
dict holding the step counter (an int: updates applied so far) and trees of
float arrays shaped like ``params``: nothing else, so it checkpoints as
plain arrays and can be shipped to another process.

The update rules (``t`` = step counter after this update, ``lr = schedule(t - 1)``)::

    SGD          p -= lr * g                                  (g += weight_decay * p first)
    momentum     v = mu * v + g;  p -= lr * v
    Nesterov     v = mu * v + g;  p -= lr * (g + mu * v)
    Adam         m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
                 p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
    AdamW        Adam's step plus a decoupled  p -= lr * weight_decay * p
"""

from dataclasses import dataclass

import numpy as np

from adcompiler.train.schedules import as_schedule
from adcompiler.train.tree import Tree, build, leaves, structure, tree_map


def _zeros(tree: Tree) -> Tree:
    return tree_map(lambda p: np.zeros(np.shape(p), dtype=np.result_type(p, np.float64)), tree)


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent, optionally with (Nesterov) momentum and L2 weight decay."""

    lr: object = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.nesterov and self.momentum <= 0.0:
            raise ValueError("Nesterov momentum needs momentum > 0")

    def learning_rate(self, step: int) -> float:
        """The rate used for the update that follows ``step`` earlier updates."""
        return as_schedule(self.lr)(step)

    def init(self, params: Tree) -> dict:
        if self.momentum:
            return {"step": 0, "velocity": _zeros(params)}
        return {"step": 0}

    def update(self, params: Tree, grads: Tree, state: dict) -> tuple[Tree, dict]:
        lr, mu, wd = self.learning_rate(state["step"]), self.momentum, self.weight_decay
        if wd:
            grads = tree_map(lambda g, p: g + wd * p, grads, params)
        if not mu:
            return tree_map(lambda p, g: p - lr * g, params, grads), {"step": state["step"] + 1}
        velocity = tree_map(lambda v, g: mu * v + g, state["velocity"], grads)
        if self.nesterov:
            new = tree_map(lambda p, g, v: p - lr * (g + mu * v), params, grads, velocity)
        else:
            new = tree_map(lambda p, v: p - lr * v, params, velocity)
        return new, {"step": state["step"] + 1, "velocity": velocity}


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba); ``weight_decay`` here is L2 added to the gradient."""

    lr: object = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    decoupled = False

    def learning_rate(self, step: int) -> float:
        """The rate used for the update that follows ``step`` earlier updates."""
        return as_schedule(self.lr)(step)

    def init(self, params: Tree) -> dict:
        return {"step": 0, "m": _zeros(params), "v": _zeros(params)}

    def update(self, params: Tree, grads: Tree, state: dict) -> tuple[Tree, dict]:
        b1, b2, eps, wd = self.b1, self.b2, self.eps, self.weight_decay
        step = state["step"] + 1
        lr = self.learning_rate(step - 1)
        l2 = wd if wd and not self.decoupled else 0.0
        # lr * m_hat / (sqrt(v_hat) + eps), with the bias corrections folded into scalars.
        step_size = lr / (1.0 - b1**step)
        root_correction = np.sqrt(1.0 - b2**step)
        keep = 1.0 - lr * wd if self.decoupled else 1.0

        def leaf(p, g, m, v):
            # The same arithmetic as the formulas above, written into fresh arrays in place
            # to save temporaries (this update is a large part of a small model's step).
            if l2:
                g = g + l2 * p
            m = m * b1
            m += (1.0 - b1) * g
            v = v * b2
            v += (1.0 - b2) * (g * g)
            update = np.sqrt(v)
            update /= root_correction
            update += eps
            update = m / update
            update *= step_size
            return (p * keep if keep != 1.0 else p) - update, m, v

        layout = structure(params)
        for tree in (grads, state["m"], state["v"]):
            if structure(tree) != layout:
                raise ValueError("gradients or optimizer state do not match the parameters' layout")
        columns = zip(*(leaves(t) for t in (params, grads, state["m"], state["v"])), strict=True)
        new, m, v = zip(*(leaf(*column) for column in columns), strict=True)
        return build(layout, new), {"step": step, "m": build(layout, m), "v": build(layout, v)}


@dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p -= lr * weight_decay * p``."""

    weight_decay: float = 0.01

    decoupled = True


def momentum(lr=0.01, mu: float = 0.9, **kwargs) -> SGD:
    """SGD with heavy-ball momentum."""
    return SGD(lr, momentum=mu, **kwargs)


def nesterov(lr=0.01, mu: float = 0.9, **kwargs) -> SGD:
    """SGD with Nesterov momentum."""
    return SGD(lr, momentum=mu, nesterov=True, **kwargs)


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": momentum,
    "nesterov": nesterov,
    "adam": Adam,
    "adamw": AdamW,
}


def make_optimizer(name: str, lr) -> object:
    """An optimizer by name (``sgd``, ``momentum``, ``nesterov``, ``adam``, ``adamw``)."""
    try:
        return OPTIMIZERS[name.lower()](lr)
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}") from None
