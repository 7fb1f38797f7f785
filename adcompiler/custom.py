"""Custom rules and control of the gradient: `defrule`, `stop_gradient`, `nondifferentiable`.

Give a function of your own, or one from another library, its own derivative::

    from scipy.special import expit

    ad.defrule(expit, derivative=lambda ans, x: ans * (1 - ans))

    def loss(w, x, y):
        p = expit(x @ w)                     # a call the generated code keeps:
        return -np.mean(y * np.log(p))       #   expit_x = expit(x @ w)
                                             #   ... * (expit_x * (1 - expit_x))
`derivative` covers elementwise functions (the adjoint is ``g * derivative``
and the tangent ``t * derivative``); for anything else give ``adjoint`` (one
contribution per input, None for none) and ``tangent``::

    @ad.defrule(
        adjoint=lambda g, ans, x, y: (g * y, g * x),
        tangent=lambda ts, ans, x, y: ...,   # ts: the inputs' tangents, None if zero
    )
    def mul(x, y): ...

Rules receive symbolic values: arithmetic, NumPy functions (``np.exp(x)``,
``np.sum(g, axis=0)``) and functions with rules of their own build the IR of
the derivative, so it is generated code like any other. The function is
called by its name in generated code (it is registered in
`runtime.EXTERNAL`); a custom operator sits in the registry next to NumPy's,
but not in `ops.OPS`, the list of built-in operators that the tests walk.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from adcompiler import runtime
from adcompiler.ops.core import NO_DEFAULT, REGISTRY, Op, Param, Sym

# ``ad.stop_gradient(x)`` is x, but derivatives treat it as a constant (an operator
# declared non-differentiable in ops/numpy_ops.py, spelled ``stop_gradient(x)``).
stop_gradient = runtime.stop_gradient

CUSTOM_OPS: list[Op] = []


def defrule(
    fn: Callable | None = None,
    *,
    derivative: Callable | None = None,
    adjoint: Callable | None = None,
    tangent: Callable | None = None,
    elementwise: bool | None = None,
    name: str | None = None,
):
    """Give `fn` its own derivative rules; usable as ``defrule(fn, ...)`` or as a decorator.

    Args:
        fn: the function: your own, or one from another library (a NumPy ufunc such as
            ``scipy.special.expit`` included). Its positional parameters without defaults
            are array inputs; those with defaults must be given compile-time constants.
        derivative: ``derivative(ans, *inputs)``, for elementwise functions of one input:
            the pointwise derivative f'(x). Gives both rules.
        adjoint: ``adjoint(g, ans, *inputs, **static)`` returning one contribution per
            input (or one value for a single input); None where no gradient flows.
        tangent: ``tangent(ts, ans, *inputs, **static)`` with ``ts`` the inputs' tangents
            (None for a zero tangent), returning the output's tangent.
        elementwise: the inputs broadcast against each other to the output's shape
            (default: True for ufuncs); then adjoints are summed back over broadcast axes.
        name: how generated code calls it (default: ``fn.__name__``).

    Returns:
        `fn` itself, unchanged: calling it outside adcompiler works as before.
    """
    if fn is None:
        return lambda f: defrule(
            f,
            derivative=derivative,
            adjoint=adjoint,
            tangent=tangent,
            elementwise=elementwise,
            name=name,
        )
    if derivative is not None:
        if adjoint is not None or tangent is not None:
            raise TypeError("give either `derivative`, or `adjoint` and `tangent`, not both")
        if sum(p.kind == "in" for p in _parameters(fn)) != 1:
            raise TypeError(f"`derivative` is for functions of one array; {fn!r} takes more")
        adjoint = lambda g, ans, *xs: g * derivative(ans, *xs)  # noqa: E731
        tangent = lambda ts, ans, *xs: ts[0] * derivative(ans, *xs)  # noqa: E731
        elementwise = True if elementwise is None else elementwise
    if adjoint is None and tangent is None:
        raise TypeError("defrule needs `derivative`, or `adjoint` and/or `tangent`")
    op = _register(fn, name, elementwise=elementwise, nondiff=False)
    op.adjoint = _adjoint_rule(adjoint, len(op.input_params), op) if adjoint else None
    op.tangent = _tangent_rule(tangent) if tangent else None
    return fn


def nondifferentiable(fn: Callable | None = None, *, name: str | None = None):
    """Declare `fn` non-differentiable: generated code calls it, and no derivative flows
    through it (as for ``np.argmax``). Usable as a decorator."""
    if fn is None:
        return lambda f: nondifferentiable(f, name=name)
    _register(fn, name, elementwise=False, nondiff=True)
    return fn


def remove_rules(fn: Callable) -> None:
    """Undo `defrule`/`nondifferentiable` for `fn` (functions compiled since keep theirs)."""
    op = REGISTRY.get(fn)
    if op is None or op not in CUSTOM_OPS:
        raise ValueError(f"{fn!r} has no custom rules")
    CUSTOM_OPS.remove(op)
    del REGISTRY[fn]
    del runtime.EXTERNAL[op.name]


# ---------------------------------------------------------------------------
# Registration: an operator spelled as a call of the function by its name
# ---------------------------------------------------------------------------


def _register(fn: Callable, name: str | None, *, elementwise: bool | None, nondiff: bool) -> Op:
    existing = REGISTRY.get(fn)
    if existing is not None and existing not in CUSTOM_OPS:
        raise ValueError(f"{fn!r} already has built-in rules ({existing.name})")
    params = _parameters(fn)
    if elementwise is None:
        elementwise = isinstance(fn, np.ufunc)
    inputs = sum(p.kind == "in" for p in params)
    call_name = _call_name(fn, name)
    op = Op(
        call_name,
        fn,
        params,
        _call_spelling(call_name),
        nondiff=nondiff,
        broadcasts=elementwise and inputs > 1,
        same_shape=elementwise and inputs == 1,
    )
    if existing is not None:
        CUSTOM_OPS.remove(existing)
    CUSTOM_OPS.append(op)
    REGISTRY[fn] = op
    runtime.EXTERNAL[call_name] = fn
    return op


def _parameters(fn: Callable) -> tuple[Param, ...]:
    if isinstance(fn, np.ufunc):
        names = ["x", "y", "z"][: fn.nin] if fn.nin <= 3 else [f"x{i}" for i in range(fn.nin)]
        return tuple(Param(n, tuples="refuse") for n in names)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise TypeError(
            f"cannot read the parameters of {fn!r}; wrap it in a Python function"
        ) from None
    params = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"{fn.__name__}: *args and **kwargs are not supported in defrule")
        if p.default is inspect.Parameter.empty:
            params.append(Param(p.name, "in", NO_DEFAULT, tuples="refuse"))
        else:
            params.append(Param(p.name, "attr", p.default))
    return tuple(params)


def _call_name(fn: Callable, name: str | None) -> str:
    """A name for `fn` in generated code that no other function there has."""
    base = name or getattr(fn, "__name__", None) or "custom"
    taken = set(runtime.HELPERS) | {"np", "slice"}
    candidate, n = base, 0
    while candidate in taken or runtime.EXTERNAL.get(candidate, fn) is not fn:
        n += 1
        candidate = f"{base}_{n}"
    return candidate


def _call_spelling(call_name: str):
    def spelling(node, args):
        from adcompiler.codegen.to_source import constant_ast

        keywords = [
            ast.keyword(arg=p.name, value=constant_ast(node.attrs[p.name]))
            for p in node.op.params
            if p.kind == "attr" and node.attrs.get(p.name, p.default) != p.default
        ]
        return ast.Call(ast.Name(call_name, ast.Load()), list(args), keywords)

    return spelling


# ---------------------------------------------------------------------------
# Rules: the user's functions, given values that read like NumPy arrays
# ---------------------------------------------------------------------------


class Var(Sym):
    """A symbolic value in a custom rule: arithmetic and NumPy functions on it emit IR."""

    __slots__ = ()

    @staticmethod
    def of(x: Any) -> Any:
        return Var(x.builder, x.value) if isinstance(x, Sym) and not isinstance(x, Var) else x

    def _bin(self, fn, other, swap=False):
        return Var.of(super()._bin(fn, other, swap))

    def __neg__(self):
        return Var.of(super().__neg__())

    @property
    def T(self):  # noqa: N802 - mirrors ndarray.T
        return Var.of(super().T)

    @property
    def shape(self):
        return Var.of(super().shape)

    def __getitem__(self, index):
        return Var.of(super().__getitem__(index))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or "out" in kwargs:
            return NotImplemented
        return Var.of(self.builder.call(ufunc, *inputs, **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        return Var.of(self.builder.call(func, *args, **kwargs))


def _adjoint_rule(rule: Callable, n_inputs: int, op: Op) -> Callable:
    def adjoint(g, ans, *inputs, **attrs):
        out = rule(Var.of(g), Var.of(ans), *map(Var.of, inputs), **attrs)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        if len(out) != n_inputs:
            raise TypeError(
                f"the adjoint rule of {op.name} returned {len(out)} contributions for "
                f"{n_inputs} inputs"
            )
        return tuple(_as_sym(g, c) for c in out)

    return adjoint


def _tangent_rule(rule: Callable) -> Callable:
    def tangent(ts, ans, *inputs, **attrs):
        out = rule([Var.of(t) for t in ts], Var.of(ans), *map(Var.of, inputs), **attrs)
        return _as_sym(ans, out)

    return tangent


def _as_sym(like: Sym, x: Any) -> Sym | None:
    """A rule's result as a Sym (a constant such as 0.0 becomes a node)."""
    if x is None or isinstance(x, Sym):
        return x
    return Sym(like.builder, like.builder.const(x))
