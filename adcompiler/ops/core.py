"""Operators, the registry, and the builder that rules emit IR through.

An `Op` knows how it evaluates (`impl`), how it is spelled in Python (a
template such as ``"_0 + _1"`` or a call name such as ``"np.exp"``), which of
its parameters are array inputs and which are static attributes, and its
adjoint and tangent rules. The registry maps the Python object a user calls
(``np.exp``, ``operator.add``) to its `Op`; internal operators that only rules
emit (``unbroadcast``) are registered under their runtime function.

A rule reads like the math. Its arguments are `Sym`s: handles on IR values
that build nodes when you compute with them::

    @adjoint(np.multiply)
    def _(g, ans, x, y):
        return g * y, g * x
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adcompiler import runtime
from adcompiler.ssa import Loc, Node, Value

NO_DEFAULT = object()


@dataclass(frozen=True)
class Param:
    """One parameter of an operator as the user calls it.

    kind: "in" (an array input), "attr" (a static attribute, a compile-time
    constant), "seq" (a list of array inputs, as in np.stack), "varargs" (the
    remaining positional inputs, as in np.einsum's operands).

    tuples: what a list or tuple literal given for an input is. "array" (NumPy
    converts it to an array, as np.sum([a, b]) does: the frontend builds that array,
    so derivatives flow through its items), "shape" (a shape: kept a tuple, it has
    no derivative), "refuse" (a function that may take it as a tuple, such as one
    with a custom rule: refused where an item is computed at run time).
    """

    name: str
    kind: str = "in"
    default: Any = NO_DEFAULT
    tuples: str = "array"


@dataclass(frozen=True)
class View:
    """Trait of an operator whose result may be a view of input `input` (NumPy's sense:
    it shares that input's memory, so a write into either is seen through the other).

    kind: how sure that is. "always": NumPy always returns a view (`x.T`, `x[1:]`,
    `np.squeeze`); "layout": a view where the memory layout allows and a copy otherwise
    (`np.reshape`, `np.ravel`), so a write through the result cannot be followed when
    compiling; "ndim": a view or a new array by the input's number of dimensions
    (`np.diag`), so neither can a write through it; or a function of the node's
    attributes that returns a kind, for operators whose answer depends on them
    (indexing: "always" for basic slices, "scalar" where the index may pick one
    element, a copy, "maybe" where an index is known only at run time and may be an
    index array, None where it makes a copy).
    writable: False where NumPy's view is read-only (`np.broadcast_to`): a write through
    it raises in NumPy, so the compiler refuses it.
    identity: the result is the input itself, entry for entry (`ad.stop_gradient`):
    a write into it is the same write into the input.
    whole: the result shows every entry of the input in place (the input itself or a
    broadcast of it): it is a view of another array only if the input is one.
    write_back: ``write_back(emit, node, new_view) -> new input``: the input after a
    write changed the view to `new_view` (`emit(op, inputs, attrs)` emits a node);
    None where a write through the view is never followed.
    """

    input: int = 0
    kind: str | Callable[[dict], str | None] = "always"
    writable: bool = True
    identity: bool = False
    whole: bool = False
    write_back: Callable | None = None

    def kind_for(self, attrs: dict) -> str | None:
        """The kind for a node with these attributes ("always", "scalar", "layout",
        "maybe"), or None if the result is a new array."""
        return self.kind(attrs) if callable(self.kind) else self.kind


@dataclass(eq=False)
class Op:
    """An operator of the IR. Identity is the object itself."""

    name: str
    impl: Callable | None
    params: tuple[Param, ...]
    spelling: str | Callable
    adjoint: Callable | None = None
    tangent: Callable | None = None
    nondiff: bool = False
    broadcasts: bool = False  # inputs broadcast against each other to the output
    same_shape: bool = False  # output has the shape of its first input
    inline: bool = False  # cheap and pure: codegen may write it into its consumer
    regions: bool = False  # owns regions (if/for/while): the transforms handle it, not rules
    view: View | None = None  # the result may share memory with an input (see View)
    holds: int | None = None  # inputs from this one on are kept by reference (lists, tapes)
    # not differentiable itself, but holds its inputs (a tuple): it varies where they do
    carries: bool = False
    # What the passes ask of an operator. Set where the operator is defined; a pass asks
    # these (or compares the operator object: `node.op is FOR`), never the name.
    reduction: bool = False  # reduces over `axis=` (None: every axis, a scalar), `keepdims=`
    scalar: bool = False  # the result is always a Python or NumPy scalar (0-d)
    integer: bool = False  # Python ints in, a Python int out (index arithmetic: `t + 1`)
    foldable: bool = False  # pure arithmetic, computed while compiling on constant numbers
    augmented: str | None = None  # `x = x OP y` may be written `x OP= y`: "+", "-", "*", "/"
    fresh: bool = False  # the result is always a new array: never an input, nor a view of one
    unique: bool = False  # each call makes a new mutable object or has an effect: CSE
    # never merges two such nodes
    # besides its result, it has an effect that later nodes see without reading it (a
    # random draw advances its generator): never removed, merged, moved, inlined into its
    # reader, recomputed or folded; it runs exactly where and as often as the source says
    effect: bool = False
    aliases: list = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<Op {self.name}>"

    @property
    def input_params(self) -> list[Param]:
        return [p for p in self.params if p.kind != "attr"]

    def attr_defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params if p.kind == "attr"}


class Refused:
    """A rule's contribution for an input through which it cannot differentiate: the
    transforms raise `error` (a located diagnostic) if that input has a derivative, and
    ignore it otherwise (fail closed: never taken as zero)."""

    def __init__(self, message: str, suggestion: str = ""):
        self.message, self.suggestion = message, suggestion

    def error(self, loc: Loc | None) -> Exception:
        from adcompiler.errors import Diagnostic, UnsupportedSyntaxError

        if loc is None:
            return NotImplementedError(f"{self.message}; {self.suggestion}")
        return UnsupportedSyntaxError([Diagnostic(loc, self.message, self.suggestion)])


def view_of(node: Node) -> Value | None:
    """The input whose memory `node`'s result may share (a view of it, or the input
    itself), from the operator's `View` trait; None if the result is a new array."""
    view = node.op.view
    if view is None or view.input >= len(node.inputs) or view.kind_for(node.attrs) is None:
        return None
    return node.inputs[view.input]


def may_share(node: Node) -> Value | None:
    """The input whose memory `node`'s result may share: the input of a view (`view_of`),
    or, failing closed, the first input of a run-time helper of the rules
    (`uncolumn_stack(g, ...)`, adcompiler.runtime and runtime.HELPERS) unless it is
    declared `fresh`: such helpers often return a slice, a reshape or a broadcast of the
    array they take. NumPy's own functions that are not views make new arrays."""
    base = view_of(node)
    if base is not None or node.op.fresh or not node.inputs:
        return base
    impl = node.op.impl
    helper = getattr(impl, "__module__", None) == runtime.__name__ or any(
        impl is h for h in runtime.HELPERS.values())  # fmt: skip
    return node.inputs[0] if helper else None


REGISTRY: dict[Any, Op] = {}
OPS: list[Op] = []


def _key(obj: Any) -> Any:
    # numpy ufuncs and functions are hashable; bound C methods are keyed by identity.
    return obj


def register(op: Op, *keys: Any) -> Op:
    OPS.append(op)
    for key in (op.impl, *keys):
        if key is not None:
            REGISTRY[_key(key)] = op
            if key is not op.impl:
                op.aliases.append(key)
    return op


# Functions that return a tuple of arrays (``w, V = np.linalg.eigh(a)``): the frontend
# binds the call to each operator listed here, with the same arguments, and the call's
# value is the tuple of their results. Each operator is an ordinary one-output operator
# with its own rules; dead-code elimination drops the parts a function does not use.
# A function whose number of results depends on its static arguments (``np.split(x, 3)``)
# is registered with `register_parts`: `expand(args, kwargs)` (the call's arguments as
# the frontend holds them, statics with an `obj`) gives, per result, the operator and the
# attributes it adds to the call's arguments, or a message saying why it cannot tell.
MULTI: dict[Any, tuple[Op, ...] | Callable] = {}


def register_multi(fn: Any, *parts: Op) -> None:
    """Register `fn`, whose result is a tuple, as the tuple of `parts`' results."""
    MULTI[_key(fn)] = parts


def register_parts(fn: Any, expand: Callable) -> None:
    """Register `fn`, whose result is a tuple of as many parts as `expand` says:
    ``expand(args, kwargs)`` returns a list of ``(op, static attributes)``, one per part,
    or one such pair (not in a list) where `fn` returns a single array for these
    arguments, or a string: why the call cannot be compiled."""
    MULTI[_key(fn)] = expand


def multi(obj: Any) -> tuple[Op, ...] | Callable | None:
    """The operators that make up the tuple `obj` returns, if it is registered so (or the
    `expand` function of `register_parts`)."""
    try:
        return MULTI.get(_key(obj))
    except TypeError:  # unhashable
        return None


def lookup(obj: Any) -> Op | None:
    """The operator registered for a Python object, or None."""
    try:
        return REGISTRY.get(_key(obj))
    except TypeError:  # unhashable
        return None


def op_for(obj: Any) -> Op:
    op = lookup(obj)
    if op is None:
        raise KeyError(f"no operator is registered for {obj!r}")
    return op


def adjoint(obj: Any):
    """Decorator: set the adjoint rule of the operator registered for `obj`."""

    def deco(rule):
        op_for(obj).adjoint = rule
        return rule

    return deco


def tangent(obj: Any):
    """Decorator: set the tangent rule of the operator registered for `obj`."""

    def deco(rule):
        op_for(obj).tangent = rule
        return rule

    return deco


# ---------------------------------------------------------------------------
# The builder: rules emit IR through it
# ---------------------------------------------------------------------------


class Builder:
    """Collects the nodes a rule emits; every node gets `loc` and `role`."""

    def __init__(self, loc: Loc | None = None, role: str = "adjoint"):
        self.nodes: list[Node] = []
        self.loc = loc
        self.role = role

    def emit(self, op: Op, inputs: list[Value], attrs: dict | None = None, hint: str = "") -> Value:
        attrs = {**op.attr_defaults(), **(attrs or {})}
        out = Value(hint or op.name, role=self.role, loc=self.loc)
        node = Node(op, inputs, attrs, [out], loc=self.loc)
        self.nodes.append(node)
        return out

    def const(self, value: Any) -> Value:
        out = self.emit(CONST, [], {"value": value}, hint="const")
        out.const = value
        return out

    def _maybe_bool(self, v: Value) -> bool:
        """True unless `v` is known not to hold booleans: dropping `1.0 *` from
        `1.0 * mask` would leave a boolean, whose `-` raises and whose `+` is `or`.
        Fail closed: a primal value (an argument may be a bool array), a constant that is
        not a number, and the result of an operator that is not differentiable
        (comparisons, logical operators) may be booleans; gradients and what
        differentiable rules compute from them are not."""
        if v.is_const:
            return isinstance(v.const, bool) or not isinstance(v.const, (int, float))
        if v.role == "primal":
            return True
        made = next((n for n in reversed(self.nodes) if v in n.outputs), None)
        return made is not None and made.op.nondiff

    def sym(self, value: Value) -> Sym:
        return Sym(self, value)

    def call(self, fn: Any, *args: Any, **attrs: Any) -> Sym:
        """Apply the operator registered for `fn` to Syms/constants.

        Folds operations on constants and the identities ``x * 1``,
        ``x + 0``, ``x - 0``, ``x / 1`` and ``x ** 1`` as it goes.
        """
        op = op_for(fn)
        inputs = [self._as_value(a) for a in args]
        simpler = _simplify(op, inputs, self._maybe_bool)
        if simpler is not None:
            return Sym(self, simpler)
        if inputs and all(v.is_const for v in inputs) and op.impl is not None:
            folded = op.impl(*(v.const for v in inputs), **attrs)
            if isinstance(folded, (int, float, bool, np.number)):
                return Sym(
                    self, self.const(folded.item() if isinstance(folded, np.number) else folded)
                )
        return Sym(self, self.emit(op, inputs, attrs))

    def emit_sym(self, op: Op, inputs: list, attrs: dict | None = None) -> Sym:
        """Apply `op` to Syms, Values or constants, with explicit attributes."""
        return Sym(self, self.emit(op, [self._as_value(a) for a in inputs], attrs))

    def _as_value(self, x: Any) -> Value:
        if isinstance(x, Sym):
            return x.value
        if isinstance(x, Value):
            return x
        return self.const(x)


class Sym:
    """A handle on an IR value inside a rule; arithmetic on it emits nodes."""

    __slots__ = ("builder", "value")

    def __init__(self, builder: Builder, value: Value):
        self.builder = builder
        self.value = value

    def _bin(self, fn, other, swap=False):
        a, b = (other, self) if swap else (self, other)
        return self.builder.call(fn, a, b)

    def __add__(self, o):
        return self._bin(operator.add, o)

    def __radd__(self, o):
        return self._bin(operator.add, o, True)

    def __sub__(self, o):
        return self._bin(operator.sub, o)

    def __rsub__(self, o):
        return self._bin(operator.sub, o, True)

    def __mul__(self, o):
        return self._bin(operator.mul, o)

    def __rmul__(self, o):
        return self._bin(operator.mul, o, True)

    def __truediv__(self, o):
        return self._bin(operator.truediv, o)

    def __rtruediv__(self, o):
        return self._bin(operator.truediv, o, True)

    def __pow__(self, o):
        return self._bin(operator.pow, o)

    def __matmul__(self, o):
        return self._bin(operator.matmul, o)

    def __neg__(self):
        return self.builder.call(operator.neg, self)

    def __eq__(self, o):  # type: ignore[override]
        return self._bin(operator.eq, o)

    def __ne__(self, o):  # type: ignore[override]
        return self._bin(operator.ne, o)

    def __gt__(self, o):
        return self._bin(operator.gt, o)

    def __lt__(self, o):
        return self._bin(operator.lt, o)

    def __ge__(self, o):
        return self._bin(operator.ge, o)

    def __le__(self, o):
        return self._bin(operator.le, o)

    __hash__ = None  # type: ignore[assignment]

    @property
    def const(self) -> Any:
        """The compile-time value, or `ir.NOT_CONST`."""
        return self.value.const

    @property
    def is_const(self) -> bool:
        return self.value.is_const

    @property
    def T(self) -> Sym:  # noqa: N802 - mirrors ndarray.T
        import numpy as np

        return self.builder.call(np.transpose, self)

    @property
    def shape(self) -> Sym:
        return self.builder.call(SHAPE.impl, self)

    def __getitem__(self, index) -> Sym:
        return self.builder.getitem(self, index)


def _simplify(op: Op, inputs: list[Value], maybe_bool=lambda v: True) -> Value | None:
    """An input that `op(*inputs)` equals by an algebraic identity, if any. The identity
    holds only where the input kept is known not to be boolean (`maybe_bool` says
    where it may be): `1.0 * mask` is not `mask`."""
    if len(inputs) != 2:
        return None
    x, y = inputs

    def is_(v: Value, c: float) -> bool:
        kept = y if v is x else x
        return (
            v.is_const
            and isinstance(v.const, (int, float))
            and not isinstance(v.const, bool)
            and v.const == c
            and not maybe_bool(kept)
        )

    if op is op_for(operator.mul):
        return y if is_(x, 1) else x if is_(y, 1) else None
    if op is op_for(operator.add):
        return y if is_(x, 0) else x if is_(y, 0) else None
    if op in (op_for(operator.sub), op_for(operator.truediv), op_for(operator.pow)):
        return x if is_(y, 0 if op is op_for(operator.sub) else 1) else None
    return None


# Set by adcompiler.ops.structure at import time (they need the Op class).
CONST: Op = None  # type: ignore[assignment]
SHAPE: Op = None  # type: ignore[assignment]
