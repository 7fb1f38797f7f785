"""Lowering a gast function definition to SSA IR.

    def f(x, W):                     function f(%x, %W):
        z = np.tanh(x @ W)    ──▶      %matmul = matmul(%x, %W)
        return z.sum()                 %z = tanh(%matmul)
                                       %sum = sum(%z)
                                       return %sum

Names are resolved against the function's locals, closure, globals and
builtins, so NumPy works under any import style. Expressions that are known
at compile time (literals, module attributes, `-1`, shapes written as tuple
literals) stay Python objects (`Static`) and become inline constants where an
operator needs them. Tuples are tracked symbolically: packing, unpacking and
constant indexing cost nothing at run time. Calls to the user's own
module-level functions are inlined.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import operator
import types
from typing import Any

import gast
import numpy as np

from adcompiler import depends
from adcompiler.errors import Diagnostic, UnsupportedSyntaxError
from adcompiler.frontend import methods
from adcompiler.frontend.base import (
    MAX_INLINE_DEPTH,
    LocalFunction,
    LoweringError,
    Stale,
    Static,
)
from adcompiler.frontend.checks import find_unsupported
from adcompiler.frontend.closures import Closures, bind_arguments, new_list
from adcompiler.frontend.containers import Containers
from adcompiler.frontend.control import POISONED, RESULT, UNDEFINED, ControlFlow, is_append
from adcompiler.frontend.records import RECORDS, ObjectRecord, Records
from adcompiler.frontend.source import ParsedSource, parse_function
from adcompiler.frontend.views import Views, ViewState
from adcompiler.helpers import helper_name
from adcompiler.ops import lookup
from adcompiler.ops import random as rand
from adcompiler.ops.calls import CALL
from adcompiler.ops.control import AND, IS, IS_NOT
from adcompiler.ops.core import NO_DEFAULT, Op, multi, view_of
from adcompiler.ops.mutation import ARRAY_LIST, STACK_LIST, SUM_LIST
from adcompiler.ops.numpy_ops import EINSUM
from adcompiler.ops.structure import ATTRIBUTES, CONST, GETITEM, MAKE_TUPLE, PACK, Dyn
from adcompiler.ssa import Block, Function, Loc, Node, Value

BINOPS = {
    gast.Add: operator.add,
    gast.Sub: operator.sub,
    gast.Mult: operator.mul,
    gast.Div: operator.truediv,
    gast.FloorDiv: operator.floordiv,
    gast.Mod: operator.mod,
    gast.Pow: operator.pow,
    gast.MatMult: operator.matmul,
}
UNARYOPS = {gast.USub: operator.neg, gast.UAdd: operator.pos, gast.Not: operator.not_}
CMPOPS = {
    gast.Lt: operator.lt,
    gast.LtE: operator.le,
    gast.Gt: operator.gt,
    gast.GtE: operator.ge,
    gast.Eq: operator.eq,
    gast.NotEq: operator.ne,
    gast.Is: operator.is_,
    gast.IsNot: operator.is_not,
}


def lower_function(fn, structures: dict | None = None, functions: bool = False) -> Function:
    """Lower the Python function `fn` to IR, or raise every problem found at once.

    functions: calls of the user's helpers with array arguments stay calls (each helper
    then gets a forward and an adjoint function of its own, see adcompiler.calls);
    otherwise they are inlined (what forward mode needs).
    structures: for arguments that hold dicts, lists or tuples of arrays, their shape
    (see `structure_of`): each leaf becomes a value of its own, read from the argument
    at the start (``W = params["W"]``), and `Function.leaves` maps the argument's name
    to the same structure of those values.
    """
    parsed = parse_function(fn)
    try:
        return _lower(fn, parsed, structures, functions)
    except UnsupportedSyntaxError as err:
        if not hasattr(fn, "__wrapped__"):
            raise
        raise UnsupportedSyntaxError([*err.diagnostics, _decorated(fn, parsed)]) from None


def _decorated(fn, parsed: ParsedSource) -> Diagnostic:
    """The note on a decorated function that cannot be lowered: what was read (the
    decorator's wrapper, never the function it wraps: that would drop the decorator)."""
    wrapper = getattr(fn.__code__, "co_qualname", fn.__code__.co_name)
    decorator = wrapper.split(".<locals>.")[0]
    return Diagnostic(
        parsed.loc(parsed.tree),
        f"`{fn.__name__}` is wrapped by the decorator `{decorator}` (functools.wraps): "
        f"adcompiler differentiates what calling `{fn.__name__}` runs, the wrapper "
        f"`{wrapper}`",
        f"write the wrapper with {fn.__name__}'s parameters (`def wrapper(x, w): ...`), or, "
        f"if `{decorator}` does not change the result, differentiate the undecorated "
        f"function: `ad.grad({fn.__name__}.__wrapped__)`",
    )


def _lower(fn, parsed: ParsedSource, structures: dict | None, functions: bool) -> Function:
    problems = find_unsupported(parsed)
    if problems:
        raise UnsupportedSyntaxError(problems)
    lowering = Lowering(fn, parsed, nodes=[], diagnostics=[], depth=0)
    lowering.functions = functions
    params = lowering.bind_parameters()
    leaves = {}
    for name, structure in (structures or {}).items():
        lowering.loc = lowering.parsed.loc(lowering.parsed.tree)
        leaves[name] = lowering.unpack_argument(lowering.env[name], name, structure)
        lowering.env[name] = leaves[name]
    results, returns_tuple = lowering.lower_body()
    if lowering.diagnostics:
        raise UnsupportedSyntaxError(lowering.diagnostics)
    out = Function(
        name=fn.__name__,
        params=params,
        body=Block(nodes=lowering.nodes),
        results=results,
        source_file=parsed.file,
        doc=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
        returns_tuple=returns_tuple,
        result_tree=getattr(lowering, "result_tree", None),
    )
    out.leaves = leaves
    out.kwonly = len(parsed.tree.args.kwonlyargs)
    return out


def _holds_dict(value) -> bool:
    if isinstance(value, dict):
        return True
    return isinstance(value, tuple) and any(_holds_dict(v) for v in value)


def _flatten_returned(value, leaves: list):
    """A returned tuple holding dicts: the indices of its leaves (appended to `leaves`),
    nested as returned (`Function.result_tree`); a tuple without dicts stays one value."""
    if isinstance(value, dict):
        return {k: _flatten_returned(v, leaves) for k, v in value.items()}
    if isinstance(value, tuple) and _holds_dict(value):
        return tuple(_flatten_returned(v, leaves) for v in value)
    leaves.append(value)
    return len(leaves) - 1


def structure_of(value):
    """The shape of a nested dict/list/tuple of arrays: ("dict", {k: ...}), ("list", [...]),
    ("tuple", [...]), or None for a leaf. Hashable, so it can key a cache."""
    if isinstance(value, dict):
        return ("dict", tuple((k, structure_of(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(structure_of(v) for v in value))
    return None


class Lowering(ControlFlow, Containers, Records, Views, Closures):
    """Lowers one function body (the user's, or an inlined helper's) into `nodes`."""

    def __init__(self, fn, parsed: ParsedSource, nodes: list, diagnostics: list, depth: int):
        self.fn = fn
        self.parsed = parsed
        self.nodes: list[Node] = nodes
        self.top_nodes = nodes  # (self.nodes is another list inside an `if` or a loop)
        self.diagnostics: list[Diagnostic] = diagnostics
        self.depth = depth
        self.env: dict[str, Any] = {}
        self.parameters: list[Value] = []  # the user's arguments: never written into
        self.views = ViewState()  # possible views and their bases (frontend.views)
        self.outer: Lowering | None = None  # the function this one is inlined into
        self.loop_plans: list = []  # arrays with views the loop being lowered writes into
        self.loop_shared: dict = {}  # slots of that loop whose next values may be shared
        self.loop_trace: tuple = ()  # the slots and environments of the last loop body
        self.chain = {fn}  # functions being inlined: a call of one of them recurses
        self.functions = False  # see lower_function
        self.loc: Loc | None = None
        closure = fn.__closure__ or ()
        self.cells = {
            name: cell
            for name, cell in zip(fn.__code__.co_freevars, closure)
            if _cell_has_value(cell)
        }
        self.closure = {name: cell.cell_contents for name, cell in self.cells.items()}

    # -- entry points ------------------------------------------------------

    def bind_parameters(self) -> list[Value]:
        params = self.parameters
        spec = self.parsed.tree.args
        packed = [spec.vararg] if spec.vararg else []  # `*ws`: one parameter, a tuple
        for arg in spec.args + packed + spec.kwonlyargs:
            value = Value(arg.id, loc=self.parsed.loc(arg))
            self.env[arg.id] = value
            params.append(value)
        return params

    def lower_body(self) -> tuple[list[Value], bool]:
        """Lower the statements; return the result values and whether they were a tuple."""
        body = [s for i, s in enumerate(self.parsed.tree.body) if not _is_docstring(s, i)]
        errors_before = len(self.diagnostics)
        self.lower_stmts(body)
        result = self.env.get(RESULT)
        if len(self.diagnostics) > errors_before:
            return [], False
        if result is None or isinstance(result, Static) and result.obj is None:
            self.report(
                LoweringError(self.parsed.tree, "the function returns nothing", "add `return`")
            )
            return [], False
        if result is UNDEFINED:
            self.report(
                LoweringError(self.parsed.tree, "not every path returns a value", "add `return`")
            )
            return [], False
        if isinstance(result, tuple) and _holds_dict(result):  # return loss, {"acc": acc}
            leaves: list = []
            self.result_tree = _flatten_returned(result, leaves)
            return [self.as_value(r) for r in leaves], True
        if isinstance(result, tuple):
            return [self.as_value(r) for r in result], True
        return [self.as_value(result)], False

    def report(self, err: LoweringError) -> None:
        if err.silent:
            return
        loc = self.parsed.loc(err.node) if err.node is not None else self.loc
        self.diagnostics.append(Diagnostic(loc, err.message, err.suggestion))

    # -- statements --------------------------------------------------------

    def statement(self, stmt) -> None:
        if isinstance(stmt, gast.Assign):
            value = self.expr(stmt.value)
            for target in stmt.targets:
                self.assign(target, value)
        elif isinstance(stmt, gast.AugAssign):
            if isinstance(stmt.target, gast.Subscript) and isinstance(
                self.expr(stmt.target.value), (dict, tuple)
            ):  # d["k"] += v, items[0] += v (a list literal)
                self.augment_item(stmt)
                return
            if isinstance(stmt.target, gast.Subscript):  # x[i] += v
                base = self.expr(stmt.target.value)
                template, dyn = self.template(self.index(stmt.target.slice), stmt.target)
                current = self.getitem(self.as_value(base), template, dyn)
                value = self.binop(BINOPS[type(stmt.op)], current, self.expr(stmt.value), stmt)
                self.write_into(stmt.target, value, template, dyn)
                return
            if not isinstance(stmt.target, gast.Name):
                raise LoweringError(
                    stmt.target,
                    f"`{ast.unparse(gast.gast_to_ast(stmt.target))} {_op(stmt)}= ...`: "
                    "assigning to an attribute is not supported",
                    "keep the value in a variable of the function (or pass it in and "
                    "return the new value)",
                )
            current = self.name(stmt.target)
            self.check_in_place(stmt, stmt.target.id, current)
            value = self.binop(BINOPS[type(stmt.op)], current, self.expr(stmt.value), stmt)
            if isinstance(current, Value) and self.views_held(current):
                # `v += w` on an array that shares memory with others: NumPy writes
                # into it (frontend.views)
                self.write(stmt, stmt.target.id, current, value, None, [])
                return
            self.assign(stmt.target, value)
        elif isinstance(stmt, gast.AnnAssign):
            if stmt.value is not None:
                self.assign(stmt.target, self.expr(stmt.value))
        elif isinstance(stmt, gast.Expr):
            # evaluated for its effects (a helper writing into a list, a `print` in it, a
            # random draw, which advances its generator); its value is not used, so it has
            # no derivative and dead-code elimination drops what has no effect
            self.expr(stmt.value)
        elif isinstance(stmt, gast.Nonlocal):
            if self.lexical is None:
                raise LoweringError(
                    stmt,
                    "`nonlocal` in a function that is not defined inside the one "
                    "differentiated",
                    "pass the value in as an argument and return the new value",
                )
        elif isinstance(stmt, gast.Pass):
            pass
        else:
            raise LoweringError(stmt, f"`{type(stmt).__name__}` statements are not supported")

    def assign(self, target, value) -> None:
        if isinstance(target, gast.Name):
            if isinstance(value, Value) and self.made_by_this_statement(value):
                value.hint, value.role = target.id, "primal"
            if target.id in self.nonlocals:
                self.assign_nonlocal(target, value)
                return
            self.env[target.id] = value
        elif isinstance(target, (gast.Tuple, gast.List)):
            starred = [i for i, t in enumerate(target.elts) if isinstance(t, gast.Starred)]
            if starred:
                self.assign_starred(target, value, starred[0])
                return
            items = self.unpack(value, len(target.elts), target)
            for t, v in zip(target.elts, items):
                self.assign(t, v)
        elif isinstance(target, gast.Subscript):
            template, dyn = self.template(self.index(target.slice), target)
            self.write_into(target, value, template, dyn)
        else:
            raise LoweringError(target, f"cannot assign to `{type(target).__name__}`")

    def augment_item(self, stmt) -> None:
        """``d["k"] += v`` or ``items[0] += v``: on an array item, NumPy's `+=` writes into
        the array, which the dict or list keeps; on a number it makes a new one. So as for
        ``z += v`` on a name: refused where another name, item or the caller holds the
        item's array (or it may be an argument), written through its views where they are
        named, and otherwise the item's new value."""
        current = self.expr(stmt.target)
        label = ast.unparse(gast.gast_to_ast(stmt.target))
        value = self.binop(BINOPS[type(stmt.op)], current, self.expr(stmt.value), stmt)
        if isinstance(current, Value):
            self.check_in_place(stmt, label, current, item=True)
            if self.views_held(current):
                self.write(stmt, label, current, value, None, [])
                return
        self.assign(stmt.target, value)

    def check_in_place(self, stmt, name: str, current, item: bool = False) -> None:
        """`z += v` (`item`: ``d["k"] += v``) on an array changes it in place: refuse where
        that would be seen through another name or item, or would write into an argument
        or another array."""
        if not isinstance(current, Value):
            return
        if self.link_of(current) is None:  # (a view: `write` says why, for its root)
            why = self.shared_with(current)
            if why is not None:
                raise self.shared_error(
                    stmt,
                    name,
                    why,
                    f"`{name} {_op(stmt)}= ...` on an array",
                    f"write `{name} = {name} {_op(stmt)} ...`",
                )
        # the names, and the items of tuples and dicts, that hold it: here, or in the
        # function this one is inlined into (the caller's array) they would see the change
        holders: dict[tuple, str] = {}
        scope = self
        while scope is not None:
            for n, held in scope.env.items():
                if not n.startswith("."):
                    for where in _holders(held, current, ("name", scope is self, n)):
                        holders.setdefault(where, n)
            scope = scope.outer
        if not item:
            holders.pop(("name", True, name), None)
            if name in self.nonlocals:  # the same variable, in the functions that share it
                holders = {k: n for k, n in holders.items() if n != name}
        others = list(holders.values())
        if len(others) > (1 if item else 0):
            other = next((n for n in others if n != name.split("[")[0]), others[0])
            raise LoweringError(
                stmt,
                f"`{name}` and `{other}` hold the same value: `{name} {_op(stmt)}= ...` "
                f"would change `{other}` too if it is an array",
                f"write `{name} = {name} {_op(stmt)} ...`",
            )

    def write_into(self, target, value, template, dyn) -> None:
        """``name[index] = value``: the name now holds a new array (see ops.mutation)."""
        if not isinstance(target.value, gast.Name):
            raise LoweringError(
                target,
                "only writes into a named array are supported (`x[i] = v`)",
                "give the array a name first",
            )
        name = target.value.id
        base = self.name(target.value)
        if isinstance(base, dict):
            self.write_into_dict(name, base, self.index(target.slice), value, target)
            return
        if isinstance(base, tuple):  # a list literal: items[1] = v
            index = self.index(target.slice)
            if not (isinstance(index, Static) and isinstance(index.obj, int)):
                raise LoweringError(
                    target, "a list literal can only be written at a constant index"
                )
            items = list(base)
            items[index.obj] = value
            self.rebind(base, tuple(items), target)
            return
        if isinstance(base, Value) and base in self.parameters:
            raise LoweringError(
                target,
                f"writing into the argument `{name}` would change the caller's array",
                f"copy it first: `{name} = {name}.copy()`",
            )
        if not isinstance(base, Value):
            raise LoweringError(target, f"cannot write into `{name}` (not an array)")
        self.write(target, name, base, value, template, dyn)

    def assign_starred(self, target, value, at: int) -> None:
        """``first, *rest = t`` for a tuple known when compiling."""
        if isinstance(value, Static):
            value = tuple(Static(v) for v in value.obj)
        if not isinstance(value, tuple):
            raise LoweringError(
                target, "`*name` unpacking works on tuples, not arrays", "index the array instead"
            )
        after = len(target.elts) - at - 1
        if len(value) < len(target.elts) - 1:
            raise LoweringError(target, "not enough values to unpack")
        for t, v in zip(target.elts[:at], value[:at]):
            self.assign(t, v)
        self.assign(target.elts[at].value, tuple(value[at : len(value) - after]))
        for t, v in zip(target.elts[at + 1 :], value[len(value) - after :]):
            self.assign(t, v)

    def unpack_argument(self, value: Value, name: str, structure):
        """Read every leaf of a structured argument into a value of its own."""
        if structure is None:
            return value
        kind, items = structure
        if kind in ("namedtuple", "object"):
            return self.unpack_record(value, name, structure)
        if kind == "dict":
            out = {}
            for key, sub in items:
                leaf = self.getitem(value, ((key,), True))
                leaf.hint = key if isinstance(key, str) and key.isidentifier() else f"{name}_{key}"
                leaf.role = "primal"
                out[key] = self.unpack_argument(leaf, leaf.hint, sub)
            return out
        out = []
        for i, sub in enumerate(items):
            leaf = self.getitem(value, ((i,), True))
            leaf.hint, leaf.role = f"{name}_{i}", "primal"
            out.append(self.unpack_argument(leaf, leaf.hint, sub))
        return tuple(out)

    def made_by_this_statement(self, value: Value) -> bool:
        return any(value in n.outputs for n in self.nodes[self.statement_start :])

    def unpack(self, value, count: int, node) -> list:
        if isinstance(value, tuple):
            if len(value) != count:
                raise LoweringError(node, f"cannot unpack {len(value)} values into {count} names")
            return list(value)
        if isinstance(value, Static):
            items = list(value.obj)
            return [Static(v) for v in items]
        return [self.getitem(self.as_value(value), ((i,), True)) for i in range(count)]

    # -- expressions -------------------------------------------------------

    def expr(self, node) -> Any:
        method = getattr(self, f"expr_{type(node).__name__}", None)
        if method is None:
            raise LoweringError(node, f"`{type(node).__name__}` expressions are not supported")
        return method(node)

    def expr_Constant(self, node):  # noqa: N802 - named after gast's node types
        return Static(node.value)

    def expr_Name(self, node):  # noqa: N802
        return self.name(node)

    def name(self, node):
        name = node.id
        if name in self.env:
            if self.env[name] is POISONED:
                raise LoweringError(node, "", silent=True)  # already reported
            if isinstance(self.env[name], Stale):
                raise self.stale_error(node, self.env[name])
            if self.env[name] is UNDEFINED:
                raise LoweringError(
                    node,
                    f"`{name}` may be undefined here (assigned on some paths or only in a loop)",
                    f"assign `{name}` before the `if` or loop",
                )
            return self.env[name]
        if name in self.closure:
            return _read(self.cells[name], name, self.closure[name])
        if name in self.fn.__globals__:
            return _read(self.fn.__globals__, name, self.fn.__globals__[name])
        if hasattr(builtins, name):
            return Static(getattr(builtins, name))
        raise LoweringError(node, f"name `{name}` is not defined")

    def expr_Tuple(self, node):  # noqa: N802
        return tuple(self.items(node.elts))

    def items(self, nodes) -> list:
        """The values of expressions in a call's arguments or a tuple or list literal:
        `*t` stands for the items of `t`, a tuple or list known when compiling."""
        out = []
        for node in nodes:
            if not isinstance(node, gast.Starred):
                out.append(self.expr(node))
                continue
            value = self.expr(node.value)
            if isinstance(value, Static) and isinstance(value.obj, (tuple, list)):
                value = tuple(Static(v) for v in value.obj)
            if isinstance(value, dict):
                value = tuple(Static(k) for k in value)
            if not isinstance(value, tuple):
                written = ast.unparse(gast.gast_to_ast(node))
                raise LoweringError(
                    node,
                    f"`{written}`: `*` unpacks a tuple or list known when compiling, not an "
                    "array or a list built at run time",
                    "index the items (`ws[0], ws[1]`), or build the tuple in the function",
                )
            out.extend(value)
        return out

    def expr_Starred(self, node):  # noqa: N802
        raise LoweringError(
            node, "`*` unpacking is supported in calls and tuple or list literals only"
        )

    def expr_List(self, node):  # noqa: N802
        """A list literal: a tuple that is a new object (lists are mutable: `rebind`)."""
        return new_list(self.items(node.elts))

    def expr_BinOp(self, node):  # noqa: N802
        return self.binop(BINOPS[type(node.op)], self.expr(node.left), self.expr(node.right), node)

    def binop(self, fn, left, right, node):
        if isinstance(left, Static) and isinstance(right, Static):
            return Static(fn(left.obj, right.obj))
        if isinstance(left, tuple) or isinstance(right, tuple):
            if fn is operator.add and isinstance(left, tuple) and isinstance(right, tuple):
                return new_list([*left, *right])  # a new list (`a + []` is not `a`)
            if not (isinstance(left, Value) or isinstance(right, Value)):
                raise LoweringError(node, "arithmetic on a tuple is not supported")
            # with an array: NumPy converts the list or tuple to an array
            left, right = (self.pack(x, node) if isinstance(x, tuple) else x for x in (left, right))
        return self.apply(lookup(fn), [left, right], {}, node)

    def expr_UnaryOp(self, node):  # noqa: N802
        operand = self.expr(node.operand)
        fn = UNARYOPS[type(node.op)]
        if isinstance(operand, Static):
            return Static(fn(operand.obj))
        if fn is operator.not_:
            fn = np.logical_not
        return self.apply(lookup(fn), [operand], {}, node)

    def expr_Compare(self, node):  # noqa: N802
        """``a < b``; a chain ``a < b < c`` means ``a < b and b < c`` (b evaluated once)."""
        result = None
        left = self.expr(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.expr(comparator)
            test = self.compare(op, left, right, node)
            result = test if result is None else self.conjoin(result, test)
            left = right
        return result

    def compare(self, op, left, right, node):
        fn = CMPOPS.get(type(op))
        if fn is None:
            raise LoweringError(node, "`in` comparisons are not supported", "use `==`")
        if isinstance(left, Static) and isinstance(right, Static):
            return Static(fn(left.obj, right.obj))
        if fn in (operator.is_, operator.is_not):
            if isinstance(left, tuple) or isinstance(right, tuple):
                return Static(fn(left, right))
            return self.emit(
                IS if fn is operator.is_ else IS_NOT,
                [self.as_value(left), self.as_value(right)],
                {},
                "is",
            )
        return self.apply(lookup(fn), [left, right], {}, node)

    def conjoin(self, a, b):
        if isinstance(a, Static):
            return b if a.obj else a
        return self.boolean(AND, a, b)

    def expr_Attribute(self, node):  # noqa: N802
        base = self.expr(node.value)
        if isinstance(base, RECORDS):
            return self.record_attribute(base, node.attr, node)
        if isinstance(base, Static):
            try:
                return _derived(base, "attr", node.attr, getattr(base.obj, node.attr))
            except AttributeError:
                raise LoweringError(
                    node, f"`{node.attr}` is not an attribute of {base.obj!r}"
                ) from None
        if node.attr == "T":
            return self.apply(lookup(np.transpose), [base], {}, node)
        if node.attr == "mT":
            return self.apply(lookup(np.matrix_transpose), [base], {}, node)
        if node.attr in ATTRIBUTES:
            return self.emit(ATTRIBUTES[node.attr], [self.as_value(base)], {}, node.attr)
        raise LoweringError(
            node,
            f"the attribute `.{node.attr}` of an array is not supported",
            methods.ATTRIBUTE_HINT,
        )

    def expr_Subscript(self, node):  # noqa: N802
        base = self.expr(node.value)
        index = self.index(node.slice)
        if isinstance(base, ObjectRecord):
            raise LoweringError(node, f"a {base.cls.__name__} argument cannot be indexed",
                                "read its attributes: `obj.W`")  # fmt: skip
        if isinstance(base, dict):
            return self.dict_get(base, index, node)
        if isinstance(base, tuple):
            if isinstance(index, Static) and isinstance(index.obj, (int, slice)):
                return base[index.obj]
            raise LoweringError(node, "a tuple can only be indexed by a constant")
        if isinstance(base, Static) and isinstance(index, Static):
            return _derived(base, "item", index.obj, base.obj[index.obj])
        if isinstance(base, Static) and not isinstance(base.obj, _INDEXABLE_CONSTANTS):
            return self.index_object(base, index, node)
        template, dyn = self.template(index, node)
        return self.getitem(self.as_value(base), template, dyn)

    def index_object(self, base: Static, index, node):
        """``np.r_[a, b]``, ``np.c_[a, b]``: operators written as an index. Any other object
        indexed by a value known only at run time is refused (its `__getitem__` could do
        anything)."""
        op = lookup(base.obj)
        items = index if isinstance(index, tuple) and index[:1] != ("slice",) else (index,)
        if op is None or any(
            (isinstance(i, tuple) and i[:1] == ("slice",))
            or (isinstance(i, Static) and not isinstance(i.obj, (int, float, bool, np.ndarray)))
            for i in items
        ):
            written = ast.unparse(gast.gast_to_ast(node))
            raise LoweringError(
                node,
                f"`{written}`: indexing {base.name or type(base.obj).__name__} with values "
                "computed at run time is not supported",
                "index an array, or join arrays with np.concatenate / np.stack",
            )
        return self.apply(op, [tuple(items)], {}, node)

    def index(self, node):
        if isinstance(node, gast.Slice):
            parts = [
                None if p is None else self.expr(p) for p in (node.lower, node.upper, node.step)
            ]
            if all(p is None or isinstance(p, Static) for p in parts):
                return Static(slice(*(None if p is None else p.obj for p in parts)))
            return ("slice", parts)
        if isinstance(node, gast.Tuple):
            return tuple(self.index(e) for e in node.elts)
        if isinstance(node, gast.List):  # x[[0, 2, 0]] selects rows, as np.array([0, 2, 0])
            return self.pack(tuple(self.expr(e) for e in node.elts), node)
        return self.expr(node)

    def template(self, index, node) -> tuple[tuple, list[Value]]:
        """Turn a lowered index into ``((items, single), dynamic values)``; `Dyn(k)` marks
        the k-th run-time part."""
        dyn: list[Value] = []

        def dynamic(value) -> Dyn:
            dyn.append(self.as_value(value))
            return Dyn(len(dyn) - 1)

        def part(p):
            if isinstance(p, Static):
                if p.obj is None or p.obj is Ellipsis or isinstance(p.obj, (int, slice)):
                    return p.obj
                return dynamic(p)
            if isinstance(p, tuple) and len(p) == 2 and p[0] == "slice":
                return slice(*(None if e is None else part(e) for e in p[1]))
            if isinstance(p, tuple):
                raise LoweringError(node, "nested tuples in an index are not supported")
            return dynamic(p)

        if isinstance(index, tuple) and not (len(index) == 2 and index[0] == "slice"):
            return (tuple(part(p) for p in index), False), dyn
        return ((part(index),), True), dyn

    def getitem(self, base: Value, template, dyn=()) -> Value:
        return self.emit(GETITEM, [base, *dyn], {"index": template}, "getitem")

    def expr_Call(self, node):  # noqa: N802
        if is_append(node):  # `lst.append(v)` in a lambda, or as an argument: None
            self.lower_append(node)
            return Static(None)
        args = self.items(node.args)
        kwargs = {}
        for k in node.keywords:
            if k.arg is not None:
                kwargs[k.arg] = self.expr(k.value)
                continue
            given = self.expr(k.value)  # f(**d) with a dict known when compiling
            if not isinstance(given, dict) or not all(isinstance(n, str) for n in given):
                raise LoweringError(
                    k.value, "`**` needs a dict with string keys known when compiling"
                )
            kwargs.update(given)
        if isinstance(node.func, gast.Attribute):
            base = self.expr(node.func.value)
            if isinstance(base, RECORDS):
                return self.record_method(base, node.func.attr, args, kwargs, node)
            if isinstance(base, dict):
                return self.dict_method(base, node.func.attr, args, node)
            if isinstance(base, Static) and rand.is_generator(base.obj):  # a global's
                return self.draw(self.as_value(base), node.func.attr, args, kwargs, node)
            if not isinstance(base, Static):
                return self.method_call(self.as_value(base), node.func.attr, args, kwargs, node)
        func = self.expr(node.func)
        if not isinstance(func, Static):
            raise LoweringError(node, "calling a computed value is not supported")
        return self.call(func.obj, args, kwargs, node)

    def method_call(self, base: Value, name: str, args, kwargs, node):
        target = methods.METHODS.get(name)
        if target is None and (name in rand.METHODS or name in rand.IN_PLACE):
            return self.draw(base, name, args, kwargs, node)  # `rng.normal(...)`
        if target is None:
            raise LoweringError(
                node, f"the array method `.{name}()` is not supported", methods.ATTRIBUTE_HINT
            )
        fn, adapt = target
        args, kwargs = adapt(args, kwargs)
        return self.call(fn, [base, *args], kwargs, node)

    def draw(self, generator: Value | None, name: str, args, kwargs, node):
        """A draw from a generator (`rng.normal(mu, 1.0)`; `np.random.normal(...)` with
        `generator` None), as the source makes it (adcompiler/ops/random.py)."""
        if name in rand.IN_PLACE:
            raise LoweringError(
                node,
                f"`{name}` changes its argument or the generator in place",
                rand.IN_PLACE[name],
            )
        if name not in rand.METHODS:
            raise LoweringError(
                node,
                f"`{name}` is not a random draw adcompiler knows",
                "draw with a method listed in docs/subset.md (Randomness)",
            )
        if "out" in kwargs:
            raise LoweringError(node, "`out=` of a random draw is not supported", "assign the draw")
        inputs = [self.as_value(a) for a in [*args, *kwargs.values()]]
        attrs = {"method": name, "keywords": tuple(kwargs)}
        if generator is None:
            return self.emit(rand.DRAW_GLOBAL, inputs, attrs, name)
        return self.emit(rand.DRAW, [generator, *inputs], attrs, name)

    def call(self, fn, args, kwargs, node):
        owner = getattr(fn, "__self__", None)
        if rand.is_generator(owner) and not isinstance(fn, type):  # `RNG.normal`
            generator = None if owner is rand.GLOBAL_STATE else self.as_value(Static(owner))
            return self.draw(generator, fn.__name__, args, kwargs, node)
        if rand.is_global_function(fn):  # `np.random.normal`, `np.random.seed`
            return self.draw(None, fn.__name__, args, kwargs, node)
        if fn is np.asarray and args and isinstance(args[0], tuple):
            if not kwargs.keys() - {"dtype"}:  # a list literal: a new array, as np.array's
                fn = np.array  # (of an array, np.asarray is the array itself: a view op)
        if fn is np.array and len(args) == 1 and isinstance(args[0], tuple):
            if not kwargs:
                return self.pack(args[0], node)
            dtype = kwargs.get("dtype")
            if set(kwargs) == {"dtype"} and isinstance(dtype, Static):
                packed = self.pack(args[0], node)  # np.array([a, 1], dtype=float)
                return self.method_call(packed, "astype", [dtype], {}, node)
        if fn in (builtins.sum, builtins.len, builtins.min, builtins.max) and (
            len(args) == 1 and isinstance(args[0], tuple)
        ):
            return self.builtin_on_tuple(fn, args[0], kwargs, node)
        runtime_list = {np.stack: STACK_LIST, np.array: ARRAY_LIST, builtins.sum: SUM_LIST}
        if fn in runtime_list and args and isinstance(args[0], Value):  # a list built at run time
            return self.apply(runtime_list[fn], args, kwargs, node)
        op = lookup(fn)
        if op is not None:
            adapt = next((a for f, a in methods.FUNCTIONS.items() if f is fn), None)
            if adapt is not None:
                args, kwargs = adapt(args, kwargs)
            return self.apply(op, args, kwargs, node)
        parts = multi(fn)
        if callable(parts):  # as many results as the static arguments say
            got = parts(args, kwargs)
            if isinstance(got, str):
                raise LoweringError(node, got, "write the count or the indices as a literal")
            if isinstance(got, tuple):  # one result (`np.linalg.svd(a, compute_uv=False)`)
                op, extra = got
                return self.apply(op, args, {**kwargs, **{k: Static(v) for k, v in extra.items()}},
                                  node)  # fmt: skip
            return tuple(
                self.apply(op, args, {**kwargs, **{k: Static(v) for k, v in extra.items()}}, node)
                for op, extra in got
            )
        if parts is not None:  # a tuple of results, one operator each
            return tuple(self.apply(part, args, dict(kwargs), node) for part in parts)
        if isinstance(fn, LocalFunction):
            return self.inline_local(fn, args, kwargs, node)
        if isinstance(fn, types.FunctionType) and not _is_library(fn):
            return self.inline(fn, args, kwargs, node)
        name = getattr(fn, "__qualname__", repr(fn))
        written = ast.unparse(gast.gast_to_ast(node.func)) if hasattr(node, "func") else name
        raise LoweringError(
            node,
            f"no derivative rule for `{written}`",
            f"use a supported NumPy function (docs/operators.md), write it in Python, or "
            f"give it a rule: `ad.defrule({name}, ...)`, or `ad.nondifferentiable({name})` "
            f"if no gradient flows through it",
        )

    def builtin_on_tuple(self, fn, items, kwargs, node):
        """`len`, `sum`, `min`, `max` of a tuple known when compiling, element by element."""
        if fn is builtins.len:
            return Static(len(items))
        if fn is builtins.sum:
            total = kwargs.get("start", Static(0))
            for item in items:
                total = self.binop(operator.add, total, item, node)
            return total
        return self.call(fn, list(items), kwargs, node)

    def pack(self, items, node) -> Value:
        leaves: list[Value] = []

        def layout(x):
            if isinstance(x, tuple):
                return tuple(layout(e) for e in x)
            leaves.append(self.as_value(x))
            return None

        shape = layout(items)
        return self.emit(PACK, leaves, {"layout": shape}, "array")

    def inline(self, fn, args, kwargs, node):
        if fn in self.chain:  # recursion: a call of the helper's own generated functions
            return self.recursive_call(fn, args, kwargs, node)
        if self.functions and _callable_alone(fn, args, kwargs):
            return self.recursive_call(fn, args, kwargs, node)
        if self.depth >= MAX_INLINE_DEPTH:
            raise LoweringError(node, f"calls nest deeper than {MAX_INLINE_DEPTH} (recursion?)")
        parsed = parse_function(fn)
        problems = find_unsupported(parsed)
        if problems:
            self.diagnostics.extend(problems)
            if hasattr(fn, "__wrapped__"):
                self.diagnostics.append(_decorated(fn, parsed))
            raise LoweringError(node, f"the helper `{fn.__name__}` uses unsupported constructs")
        inner = Lowering(fn, parsed, self.nodes, self.diagnostics, self.depth + 1)
        inner.share_views(self)
        inner.chain = self.chain | {fn}
        inner.functions = self.functions
        spec = parsed.tree.args
        positional = [a.id for a in spec.args]
        names = positional + [a.id for a in spec.kwonlyargs]
        defaults = {k: Static(v) for k, v in _defaults(fn).items()}
        vararg = spec.vararg.id if spec.vararg else None
        bound = bind_arguments(fn.__name__, positional, vararg, names, defaults, args, kwargs, node)
        inner.env.update(bound)
        return self.run_inlined(inner, parsed.tree.body, fn.__name__, node)

    def recursive_call(self, fn, args, kwargs, node):
        """A call that would recurse stays a call (see adcompiler.calls)."""
        if fn.__code__.co_flags & inspect.CO_VARARGS:
            raise LoweringError(
                node,
                f"`{fn.__name__}` takes `*args` and calls itself: adcompiler cannot keep it a "
                "call",
                "name each parameter",
            )
        params = list(inspect.signature(fn).parameters.values())
        bound = []
        for i, p in enumerate(params):
            if i < len(args):
                bound.append(args[i])
            elif p.name in kwargs:
                bound.append(kwargs[p.name])
            elif p.default is not inspect.Parameter.empty:
                bound.append(Static(p.default))
            else:
                raise LoweringError(node, f"missing argument `{p.name}` in call to `{fn.__name__}`")
        inputs = [self.as_value(a) for a in bound]
        out = self.emit(CALL, inputs, {"function": fn, "name": helper_name(fn)}, fn.__name__)
        return out

    def run_inlined(self, inner, body, name: str, node):
        """Lower an inlined body into the current block; its return value, as it is."""
        before = len(self.diagnostics)
        body = [s for i, s in enumerate(body) if not _is_docstring(s, i)]
        inner.statement_start = len(self.nodes)
        inner.lower_stmts(body)
        if len(self.diagnostics) > before:
            raise LoweringError(node, f"in the call to `{name}` (see above)")
        result = inner.env.get(RESULT)
        if result is None:  # no `return`: None, as in Python (called for its effects)
            return Static(None)
        if result is UNDEFINED:
            raise LoweringError(node, f"`{name}` does not return a value on every path")
        return result

    def apply(self, op: Op, args, kwargs, node) -> Any:
        """Bind call arguments to `op`'s parameters and emit the node."""
        inputs: list[Value] = []
        attrs: dict[str, Any] = {}
        args = list(args)
        if op is EINSUM:
            if args and not (isinstance(args[0], Static) and isinstance(args[0].obj, str)):
                args = _einsum_from_sublists(args, node)  # einsum(x, [0, 1], y, [1, 2], [0, 2])
            if not args or not isinstance(args[0], Static):
                raise LoweringError(node, "the einsum subscripts must be a string literal")
            kwargs = {**kwargs, "subscripts": args.pop(0)}
        for param in op.params:
            if param.kind == "varargs":
                inputs.extend(self.as_value(self.as_array(op, param, a, node)) for a in args)
                args = []
                continue
            if args:
                given = args.pop(0)
            elif param.name in kwargs:
                given = kwargs.pop(param.name)
            elif param.default is not NO_DEFAULT:
                if param.kind == "in":  # an optional array input: its default, as a constant
                    inputs.append(self.as_value(Static(param.default)))
                continue
            else:
                raise LoweringError(node, f"`{op.name}` needs the argument `{param.name}`")
            if param.kind == "attr":
                given = _static_tuple(given)  # axis=(0, 2), pad_width=((1, 0), (0, 2))
                if not isinstance(given, Static):
                    raise LoweringError(
                        node,
                        f"`{param.name}=` of `{op.name}` must be known when the function "
                        "is compiled",
                        "write a literal or a module-level constant",
                    )
                attrs[param.name] = _freeze(given.obj)
            elif param.kind == "seq":
                items = given if isinstance(given, tuple) else None
                if items is None:
                    raise LoweringError(
                        node, f"`{op.name}` takes a list or tuple literal of arrays"
                    )
                inputs.extend(self.as_value(self.as_array(op, param, i, node)) for i in items)
            else:
                inputs.append(self.as_value(self.as_array(op, param, given, node)))
        if args or kwargs:
            extra = ", ".join([*(["positional"] if args else []), *kwargs])
            raise LoweringError(node, f"`{op.name}` does not take the argument(s): {extra}")
        return self.emit(op, inputs, attrs, op.name)

    def as_array(self, op: Op, param, given, node):
        """A list or tuple literal given for an array input is the array NumPy makes of it
        (``np.sum([1.0, a * a])``): packed, so that derivatives flow through its items.
        Tuples of constants, shapes, and the inputs of non-differentiable operators stay
        tuples."""
        if not isinstance(given, tuple) or op.nondiff or param.tuples == "shape":
            return given
        if not any(isinstance(v, Value) or v is POISONED for v in _tuple_leaves(given)):
            return given
        if param.tuples == "refuse":
            raise LoweringError(
                node,
                f"`{op.name}` takes `{param.name}` as a tuple of values computed at run time; "
                "no derivative can flow through it",
                f"pass an array: `np.stack([...])`, or split `{param.name}` into arguments",
            )
        return self.pack(given, node)

    # -- building nodes ----------------------------------------------------

    def emit(self, op: Op, inputs, attrs, hint: str) -> Value:
        full = {**op.attr_defaults(), **attrs}
        out = Value(_temp_hint(hint, inputs), role="temp", loc=self.loc)
        node = Node(op, list(inputs), full, [out], loc=self.loc)
        self.nodes.append(node)
        self.note_node(node)
        return out

    def as_value(self, x) -> Value:
        if isinstance(x, Value):
            return x
        if isinstance(x, tuple):
            return self.emit(MAKE_TUPLE, [self.as_value(i) for i in x], {}, "tuple")
        if isinstance(x, Static):
            obj = x.obj
            if isinstance(obj, np.generic):
                obj = obj.item()
            if _is_literal(obj):
                out = self.emit(CONST, [], {"value": obj}, "const")
                out.const = obj
                return out
            return self.emit(CONST, [], {"value": obj, "name": x.name or "constant"}, "const")
        if x is POISONED:
            raise LoweringError(None, "", silent=True)  # its definition was reported
        if isinstance(x, Stale):
            raise self.stale_error(None, x)
        kind = type(x).__name__
        raise LoweringError(
            None,
            f"a {kind} cannot be used as an array here",
            "pass its items (`d['key']`), or build an array (np.stack)",
        )


_MUTATION_HINT = "build a new array (np.concatenate, np.where) instead of writing into one"


_ALONE: dict = {}


_INDEXABLE_CONSTANTS = (np.ndarray, list, tuple, str, range)  # indexed as they are


def _tuple_leaves(items) -> list:
    out: list = []
    for item in items:
        out.extend(_tuple_leaves(item) if isinstance(item, tuple) else [item])
    return out


def _callable_alone(fn, args, kwargs) -> bool:
    """Whether a call of helper `fn` can stay a call: array arguments only, and `fn`
    lowers on its own to one returned value."""
    if any(not isinstance(a, Value) for a in [*args, *kwargs.values()]):
        return False
    if len(args) + len(kwargs) != fn.__code__.co_argcount:  # a default: inline, it may be static
        return False
    if fn.__code__.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
        return False
    if fn not in _ALONE:
        try:
            lowered = lower_function(fn)
            _ALONE[fn] = (
                len(lowered.results) == 1
                and not lowered.returns_tuple
                and not _may_share_an_argument(lowered)
                and not _augments_a_parameter(parse_function(fn))
            )
        except Exception:  # noqa: BLE001 - anything it cannot do alone: inline instead
            _ALONE[fn] = False
    return _ALONE[fn]


def _augments_a_parameter(parsed: ParsedSource) -> bool:
    """Whether the function writes `a += v` on one of its parameters: for an array that
    changes the caller's array, which only inlining follows (or refuses)."""
    args = parsed.tree.args
    names = {a.id for a in args.args + args.kwonlyargs}
    return any(
        isinstance(n, gast.AugAssign) and isinstance(n.target, gast.Name) and n.target.id in names
        for n in gast.walk(parsed.tree)
    )


def _holders(held, value, where) -> list[tuple]:
    """Where `held` (a name's value, at `where`) holds `value`: `where` itself, or the
    (container's id, key) of each tuple or dict item that is it, nested."""
    if held is value:
        return [where]
    items = (
        enumerate(held) if isinstance(held, tuple) else held.items() if isinstance(held, dict)
        else ()
    )  # fmt: skip
    out = []
    for key, item in items:
        out += _holders(item, value, (id(held), key))
    return out


def _holds(container, value) -> bool:
    """Whether a tuple or dict (nested) holds `value`."""
    if isinstance(container, tuple):
        return any(c is value or _holds(c, value) for c in container)
    if isinstance(container, dict):
        return any(c is value or _holds(c, value) for c in container.values())
    return False


def _may_share_an_argument(fn: Function) -> bool:
    """Whether the result of `fn` may be one of its arguments or a view of one (then a
    write into it must be followed in the caller, so the call is inlined)."""
    made = {id(v): n for n in fn.body.nodes for v in n.outputs}
    params = {id(p) for p in fn.params}
    value = fn.results[0]
    while id(value) not in params:
        node = made.get(id(value))
        if node is None:
            return True  # not made in the body: fail closed
        if node.regions:
            return True  # an output of an if or a loop: may be one of its inputs
        base = view_of(node)
        if base is None:
            return False
        value = base
    return True


def _op(stmt) -> str:
    symbols = {gast.Add: "+", gast.Sub: "-", gast.Mult: "*", gast.Div: "/", gast.Pow: "**"}
    return symbols.get(type(stmt.op), "?")


def _temp_hint(hint: str, inputs) -> str:
    """Name a temporary after its operator and what it reads: ``max_logits``, ``sum_exp``."""
    if not inputs or hint in ("const", "tuple"):
        return hint
    first = inputs[0].hint if inputs[0].role != "temp" else inputs[0].hint.split("_")[0]
    hint = hint.rstrip("_") or hint  # np.r_[x]: r_x, not r__x
    return f"{hint}_{first}" if first.isidentifier() else hint


def _read(scope, name: str, value) -> Static:
    """A global or closure variable read while compiling: recorded as a fact that the
    generated code relies on (checked when it is called, adcompiler.depends)."""
    fact = depends.Fact(scope, name, (), value)
    depends.record(fact)
    return Static(value, name, fact)


def _derived(base: Static, kind: str, key, value) -> Static:
    """An attribute or item of a value known while compiling (`CFG["k"]`, `config.SCALE`,
    `W.shape`): a fact of its own where the base was read from a global."""
    fact = base.origin.child(kind, key, value) if base.origin is not None else None
    depends.record(fact)
    return Static(value, None, fact)


def _cell_has_value(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018
        return True
    except ValueError:
        return False


def _is_docstring(stmt, index: int) -> bool:
    return (
        index == 0
        and isinstance(stmt, gast.Expr)
        and isinstance(stmt.value, gast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _is_literal(obj) -> bool:
    if isinstance(obj, (bool, int, float, complex, str, type(None), slice)) or obj is Ellipsis:
        return True
    if isinstance(obj, tuple):
        return all(_is_literal(o) for o in obj)
    return False


def _einsum_from_sublists(args, node) -> list:
    """``np.einsum(x, [0, 1], y, [1, 2], [0, 2])`` as ``np.einsum("ab,bc->ac", x, y)``."""
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

    def spec(sublist) -> str:
        sublist = _static_tuple(sublist)
        items = sublist.obj if isinstance(sublist, Static) else None
        if not isinstance(items, (list, tuple)):
            raise LoweringError(
                node, "einsum's sublists must be lists of integers known when compiling"
            )
        out = []
        for i in items:
            if i is Ellipsis:
                out.append("...")
            elif isinstance(i, int) and 0 <= i < len(letters):
                out.append(letters[i])
            else:
                raise LoweringError(node, f"einsum's sublists hold integers 0 to 51, not {i!r}")
        return "".join(out)

    operands, subs = list(args[0::2]), list(args[1::2])
    output = None
    if len(operands) > len(subs):  # an odd count: the last argument is the output sublist
        output = spec(operands.pop())
    if len(operands) != len(subs):
        raise LoweringError(node, "einsum's sublist form alternates operands and sublists")
    text = ",".join(spec(s) for s in subs) + ("" if output is None else "->" + output)
    return [Static(text), *operands]


def _static_tuple(given):
    """A tuple (nested or not) of values known when compiling, as one `Static`."""
    if not isinstance(given, tuple):
        return given
    items = [_static_tuple(g) for g in given]
    if all(isinstance(i, Static) for i in items):
        return Static(tuple(i.obj for i in items))
    return given


def _freeze(obj):
    if isinstance(obj, list):
        return tuple(_freeze(o) for o in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _is_library(fn) -> bool:
    module = getattr(fn, "__module__", "") or ""
    return module.split(".")[0] in {"numpy", "scipy", "builtins"}


def _defaults(fn) -> dict[str, Any]:
    import inspect

    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
