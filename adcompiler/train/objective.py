"""How the training loop calls a loss, its generated gradient and a metric.

A loss takes parameters and a batch's fields as arguments. Two ways to lay
the parameters out are supported:

* **spread** -- ``params`` is a dict whose keys are argument names of the
  loss: ``loss(W1, b1, W2, b2, x, y)`` with ``params = {"W1": ..., ...}``.
  The gradient is ``adcompiler.value_and_grad(loss, wrt=("W1", "b1", ...))``
  and its tuple of gradients is turned back into a dict.
* **single** -- ``params`` is one argument (any tree): ``loss(params, x, y)``,
  differentiated with ``wrt="params"`` (or the name given as ``wrt=``).

Arguments that are not parameters receive the batch's fields, in order::

    objective = Objective(loss, params)
    value, grads = objective.value_and_grad(params, (x_batch, y_batch))
    objective.call(metric, params, (x_val, y_val))   # same binding for a metric
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from adcompiler.train.tree import Tree


class MetricSignatureError(TypeError):
    """A metric that cannot be called with the loss's arguments (checked before training)."""


class Objective:
    """Binds parameters and batches to a loss's arguments and holds its gradient function.

    Args:
        loss: the scalar loss function.
        params: the initial parameters (only their layout is used).
        grad_fn: a function with the loss's signature returning ``(value, grads)``;
            defaults to ``adcompiler.value_and_grad(loss, wrt=...)``.
        wrt: in single mode, the name of the parameter argument (default: the first argument).
        check_finite: when a step's loss or gradient is not finite, compute it again with
            the version of the gradient that checks every statement's result
            (``value_and_grad(loss, check_finite=True)``), whose ``NonFiniteError`` names
            the line that made the first NaN or infinity.
    """

    def __init__(
        self,
        loss: Callable,
        params: Tree,
        grad_fn: Callable | None = None,
        wrt: str | Sequence[str] | None = None,
        check_finite: bool = False,
    ):
        self.loss = loss
        self.check_finite = check_finite
        self.arg_names = _positional_names(loss)
        named = isinstance(params, dict) and params and all(k in self.arg_names for k in params)
        self.spread = bool(named) and not isinstance(wrt, str)
        if self.spread:
            self.param_names = tuple(params)
            if wrt is not None and set(wrt) != set(params):
                raise TypeError(f"wrt={tuple(wrt)!r} must name exactly the keys of params")
        elif isinstance(wrt, tuple | list):
            raise TypeError(
                f"wrt={wrt!r} names several arguments, so params must be a dict of them"
            )
        else:
            self.param_names = (wrt if wrt is not None else self.arg_names[0],)
        unknown = [n for n in self.param_names if n not in self.arg_names]
        if unknown:
            raise TypeError(f"{_name(loss)} has no argument(s) named {unknown}")
        self.data_names = tuple(n for n in self.arg_names if n not in self.param_names)
        self.wrt = self.param_names if self.spread else self.param_names[0]
        self._grad_fn = grad_fn

    @property
    def grad_fn(self) -> Callable:
        """The ``value_and_grad`` function, compiled on first use unless one was given."""
        if self._grad_fn is None:
            self._grad_fn = compile_gradient(self.loss, self.wrt)
        return self._grad_fn

    def arguments(self, params: Tree, batch: Sequence) -> list:
        """The loss's positional arguments for ``params`` and a batch's fields."""
        if len(batch) != len(self.data_names):
            raise TypeError(
                f"{_name(self.loss)} takes {len(self.data_names)} data argument(s) "
                f"{self.data_names}, but the batch has {len(batch)} field(s)"
            )
        fields = iter(batch)
        if self.spread:
            return [params[n] if n in self.param_names else next(fields) for n in self.arg_names]
        return [params if n in self.param_names else next(fields) for n in self.arg_names]

    def value_and_grad(self, params: Tree, batch: Sequence) -> tuple[float, Tree]:
        """The loss on a batch and its gradient, laid out like ``params``."""
        arguments = self.arguments(params, batch)
        value, grads = self.grad_fn(*arguments)
        if self.check_finite and not all_finite((value, grads)):
            self.find_non_finite(arguments)
        if self.spread and not isinstance(grads, dict):
            grads = dict(zip(self.param_names, grads, strict=True))
        return value, grads

    def find_non_finite(self, arguments: list) -> None:
        """The loss or the gradient is not finite: run the version of the gradient that
        checks every statement, which raises NonFiniteError naming the line."""
        from adcompiler.errors import NonFiniteError

        checked = compile_gradient(self.loss, self.wrt, check_finite=True)
        value, grads = checked(*arguments)
        if not all_finite((value, grads)):  # (the checks passed: a value they do not see)
            raise NonFiniteError(
                f"the loss or its gradient is not finite, but the checked version of the "
                f"gradient found no statement that made a NaN or an infinity (loss {value})"
            )
        raise NonFiniteError(
            f"the loss or its gradient is not finite, but the checked version of the gradient "
            f"computed finite values (loss {value}): is grad_fn the gradient of the loss?"
        )

    def value(self, params: Tree, batch: Sequence) -> float:
        """The loss on a batch (the plain NumPy function, no gradient)."""
        return float(self.loss(*self.arguments(params, batch)))

    def check_metric(self, metric: Callable) -> None:
        """Refuse, before training, a metric that cannot take the loss's arguments (it is
        called like the loss, e.g. ``metric(W, b, x, y)``, not ``metric(logits, labels)``)."""
        try:
            signature = inspect.signature(metric)
        except (TypeError, ValueError):  # a builtin without a signature: find out when called
            return
        try:
            signature.bind(*self.arg_names)
        except TypeError:
            names = ", ".join(self.arg_names)
            raise MetricSignatureError(
                f"the metric {_name(metric)}{signature} is called like the loss, with "
                f"{_name(self.loss)}'s arguments ({names}); wrap it, e.g. "
                f"def my_metric({names}): return {_name(metric)}(<predictions>, <labels>)"
            ) from None

    def call(self, fn: Callable, params: Tree, batch: Sequence):
        """Call ``fn`` (e.g. a metric) with the loss's argument binding."""
        return fn(*self.arguments(params, batch))


def all_finite(tree) -> bool:
    """True if every number in `tree` (nested tuples, lists and dicts of arrays) is finite."""
    import numpy as np

    if isinstance(tree, dict):
        return all(all_finite(v) for v in tree.values())
    if isinstance(tree, (tuple, list)):
        return all(all_finite(v) for v in tree)
    kind = getattr(getattr(tree, "dtype", None), "kind", "f" if isinstance(tree, float) else "")
    return kind not in ("f", "c") or bool(np.isfinite(tree).all())


def compile_gradient(loss: Callable, wrt, check_finite: bool = False) -> Callable:
    """``adcompiler.value_and_grad(loss, wrt=wrt)``; a clear error if the compiler is missing."""
    import adcompiler

    value_and_grad = getattr(adcompiler, "value_and_grad", None)
    if value_and_grad is None:
        raise RuntimeError(
            "adcompiler.value_and_grad is not available in this build; pass grad_fn= to fit()"
        )
    if check_finite:
        return value_and_grad(loss, wrt=wrt, check_finite=True)
    return value_and_grad(loss, wrt=wrt)


def _positional_names(fn: Callable) -> tuple[str, ...]:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds)


def _name(fn: Callable) -> str:
    return getattr(fn, "__qualname__", repr(fn))
