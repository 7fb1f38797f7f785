"""IR → Python source, through the Python AST and astor (or `ast.unparse`, see to_source).

    function loss_grad(%w, %x):           def loss_grad(w, x):
      %matmul = matmul(%x, %w)     ──▶        # line 3: return np.sum(np.tanh(x @ w))
      %tanh = tanh(%matmul)                   tanh = np.tanh(x @ w)
      ...                                     ...

How an operator is written is data on the operator (`Op.spelling`): a
template such as ``"_0 @ _1"``, a call name such as ``"np.exp"``, or a
function building the AST. A temporary read exactly once is written into the
expression that reads it; everything else gets a name from `naming`.
Statements are grouped under a comment quoting the user's line.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adcompiler import passes, runtime
from adcompiler.codegen.finite import checks_inputs, checks_result, what_is
from adcompiler.codegen.naming import Namer, base_name
from adcompiler.codegen.to_source import constant_ast, to_source
from adcompiler.ops.calls import CALL_BWD, CALL_FWD
from adcompiler.ops.control import AND, FOR, IF, OR, TAPE_SET, TAPE_STACK, WHILE
from adcompiler.ops.core import Op, may_share
from adcompiler.ops.mutation import INDEX_ADD, LIST_APPEND, MAKE_LIST, SETITEM
from adcompiler.ops.numpy_ops import DIVIDE, SUBTRACT
from adcompiler.ops.structure import CONST
from adcompiler.ssa import ACCUMULATIONS, INTO, REUSE, Block, Function, Node, Value, walk

INLINE_ROLES = {"temp", "adjoint_temp", "tangent_temp"}
_AUGMENTED = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div}  # by Op.augmented


@dataclass
class Emitted:
    """Generated source and what its namespace must hold."""

    source: str
    name: str
    helpers: set[str] = field(default_factory=set)  # run-time helpers it calls
    constants: dict[str, Any] = field(default_factory=dict)  # captured globals by name
    defaults: tuple = ()


@functools.cache
def _parsed(spelling: str) -> ast.expr:
    """The expression a spelling (`np.sum`, `_0 + _1`) parses to; `_spell` copies it."""
    return ast.parse(spelling, mode="eval").body


def _spell(node: Node, args: list[ast.expr]) -> ast.expr:
    op: Op = node.op
    spelling = op.spelling
    if callable(spelling):
        return spelling(node, args)
    if "_0" in spelling:
        return _Substitute(args).visit(_copy(_parsed(spelling)))
    func = _copy(_parsed(spelling))
    positional: list[ast.expr] = []
    keywords = []
    remaining = list(args)
    for param in op.params:
        if param.kind == "in":
            positional.append(remaining.pop(0))
        elif param.kind == "seq":
            positional.append(ast.List(remaining, ast.Load()))
            remaining = []
        elif param.kind == "varargs":
            positional.extend(remaining)
            remaining = []
        elif param.name in node.attrs and (
            node.attrs[param.name] != param.default or param.name in _required_keywords(op.impl)
        ):
            keywords.append(ast.keyword(arg=param.name, value=constant_ast(node.attrs[param.name])))
    return ast.Call(func, positional, keywords)


@functools.cache
def _required_keywords(impl) -> frozenset[str]:
    """Parameters of a run-time helper that have no default and so must always be written."""
    try:
        params = inspect.signature(impl).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return frozenset()
    return frozenset(p.name for p in params if p.default is inspect.Parameter.empty)


class _Substitute(ast.NodeTransformer):
    def __init__(self, args):
        self.args = args

    def visit_Name(self, node):  # noqa: N802
        if re.fullmatch(r"_\d+", node.id):
            return self.args[int(node.id[1:])]
        return node


def _copy(tree):
    """A deep copy of an AST (its nodes only: the leaves are strings and constants)."""
    if isinstance(tree, ast.AST):  # the fields as arguments: Python 3.13 warns without them
        return tree.__class__(**{name: _copy(getattr(tree, name, None)) for name in tree._fields})
    if isinstance(tree, list):
        return [_copy(item) for item in tree]
    return tree


class Emitter:
    """Writes one IR function as one Python `def`."""

    def __init__(
        self,
        fn: Function,
        name: str,
        param_names: list[str],
        reserved: set[str],
        check_finite: bool = False,
    ):
        self.fn = fn
        self.check = check_finite  # a check after each statement (see result_checks)
        self.name = name
        helpers = set(runtime.HELPERS) - (set() if check_finite else set(runtime.CHECKS))
        generated_globals = helpers | set(runtime.EXTERNAL) | {"np", "slice"}
        generated_globals |= {  # helpers generated as functions of their own
            n.attrs["name"] + suffix
            for n in walk(fn.body)
            if n.op in (CALL_FWD, CALL_BWD)
            for suffix in ("_forward", "_adjoint")
        }
        for n in param_names:
            if n in generated_globals:
                raise ValueError(
                    f"parameter `{n}` of {fn.name} has the name of a global that generated code "
                    f"needs; rename the parameter"
                )
        self.namer = Namer(reserved - set(param_names) | generated_globals)
        for p, n in zip(fn.params, param_names):
            self.namer.fix(p, n)
        self.out = Emitted("", name)
        from adcompiler.passes import optimizing

        self.optimize = optimizing() and not check_finite  # checked: one plain statement each
        self.defs: dict[int, Node] = {}
        self.comments: list[str] = []

    def emit(self, doc: str, result_tree: Any) -> Emitted:
        plan = Plan(self.fn, check_finite=self.check)
        self.plan = plan
        self.inputs = {p.id for p in self.fn.params} | {  # read before anything checks them
            n.outputs[0].id for n in walk(self.fn.body) if n.op is CONST and "name" in n.attrs
        }
        self.inputs_checked: set[int] = set()
        self.loc = None  # the last user's line seen (for a node that has none)
        self.inline_defs = plan.inline_defs
        self.in_rows: dict[int, int] = {}  # value → the tape in whose row it was made
        self.line = None
        body: list[ast.stmt] = [ast.Expr(ast.Constant(doc.replace("\n", "\n    ")))]
        body.extend(self.block(self.fn.body))
        self.advance(plan.final)
        body.append(ast.Return(self.result_ast(result_tree)))
        return self.finish(body)

    def advance(self, position: int) -> None:
        """Free the names of values read for the last time at or before `position`."""
        for vid in self.plan.dying_until(position):
            self.namer.kill(vid)

    def block(self, block: Block) -> list[ast.stmt]:
        checked = set(self.inputs_checked) if self.check else None
        out: list[ast.stmt] = []
        for node in block.nodes:
            if node.outputs and node.outputs[0].id in self.inline_defs:
                continue
            start, _ = self.plan.span[id(node)]
            if (node in INTO and INTO[node] is None
                    and self.in_rows.get(node.inputs[2].id) == node.inputs[0].id):  # fmt: skip
                self.advance(start)  # the value was computed in its row of the tape
                continue
            if node.loc is not None and (node.loc.line, _is_adjoint(node)) != self.line:
                self.line = (node.loc.line, _is_adjoint(node))
                out.append(self.comment(node))
            self.loc = node.loc or self.loc
            checks = self.check and checks_result(node, self.plan.ints)
            if self.check and checks_inputs(node):
                out.extend(self.input_checks(node))
            if checks:
                names = self.input_names(node)
            if node.op is IF:
                out.extend(self.if_statement(node))
            elif node.op is FOR:
                out.extend(self.for_statement(node))
            elif node.op is WHILE:
                out.extend(self.while_statement(node))
            elif node.op in (SETITEM, INDEX_ADD):
                out.extend(self.setitem_statement(node, start))
            elif node.op is LIST_APPEND:
                out.extend(self.append_statement(node, start))
            elif node in INTO and INTO[node] is not None and self.optimize:
                out.append(self.row_statement(node, start))
            elif node in REUSE and (side := self.reuse(node, start)) is not None:
                out.extend(self.reuse_statement(node, side, start))
            else:
                out.append(self.simple_statement(node, start))
            if checks:
                out.extend(self.result_checks(node, names))
        if checked is not None:  # an input checked in a region may be unchecked after it
            self.inputs_checked = checked
        return out

    # -- check_finite=True: a check of each statement's result (policy: codegen.finite) --

    def where(self) -> tuple[ast.expr, ast.expr]:
        """`file.py:LINE` and the text of the user's line, as the checks pass them."""
        if self.loc is None:
            return ast.Constant(os.path.basename(self.fn.source_file)), ast.Constant("")
        place = f"{os.path.basename(self.loc.file)}:{self.loc.line}"
        return ast.Constant(place), ast.Constant(self.loc.text.strip())

    def input_checks(self, node: Node) -> list[ast.stmt]:
        """``check_input_finite(x, 'x', ...)`` for the arguments and globals that `node`
        is the first to read (in this region)."""
        out = []
        for v in node.inputs:
            if v.id not in self.inputs or v.id in self.inputs_checked:
                continue
            self.inputs_checked.add(v.id)
            read = self.read(v)
            if not isinstance(read, ast.Name):
                continue
            args = [read, ast.Constant(read.id), ast.Constant(node.op.name), *self.where()]
            out.append(ast.Expr(ast.Call(ast.Name("check_input_finite", ast.Load()), args, [])))
        return out

    def input_names(self, node: Node) -> list[str]:
        """The names `node` reads its inputs by (each once), before it runs."""
        names: list[str] = []
        for v in node.inputs:
            read = self.read(v)
            if isinstance(read, ast.Name) and read.id not in names:
                names.append(read.id)
        return names

    def result_checks(self, node: Node, inputs: list[str]) -> list[ast.stmt]:
        """``check_result_finite(h, 'forward value of h', 'tanh', 'model.py:3', '<line>', z=z)``:
        one call per result of `node`, with the inputs it read, to summarize on failure."""
        out = []
        for v in node.outputs:
            name = self.namer.name_of.get(v.id)
            if name is None or v.id in self.plan.ints:
                continue
            out.append(self.check_call(ast.Name(name, ast.Load()), v, node, inputs))
        return out

    def check_call(self, read: ast.expr, v: Value, node: Node, inputs: list[str]) -> ast.stmt:
        """``check_result_finite(<read>, 'adjoint of x', <operator>, <where>, <line>, **inputs)``:
        `read` is `v`, or (``x[i] += g``) the part of it just written."""
        what = what_is(v, self.namer.name_of.get(v.id) or base_name(v))
        args = [read, ast.Constant(what), ast.Constant(node.op.name)]
        args += self.where()
        names = [n for n in inputs if not (isinstance(read, ast.Name) and n == read.id)]
        keywords = [ast.keyword(n, ast.Name(n, ast.Load())) for n in names]
        return ast.Expr(ast.Call(ast.Name("check_result_finite", ast.Load()), args, keywords))

    def row_statement(self, node: Node, position: int) -> ast.stmt:
        """``v = np.tanh(c, out=tape[t])``: a saved value made in its row (ssa.INTO)."""
        tape, index = INTO[node]
        row = ast.Subscript(self.read(tape), self.read(index), ast.Load())
        if isinstance(node.op.impl, np.ufunc):
            call = _np_call(node.op.impl.__name__, [self.read(v) for v in node.inputs], row)
        else:  # a run-time helper that takes `out=` (unindex)
            call = self.expression(node)
            call.keywords.append(ast.keyword("out", row))
        self.chain_name(node.output)
        self.advance(position)
        self.in_rows[node.output.id] = tape.id
        return ast.Assign([ast.Name(self.namer.name(node.output), ast.Store())], call)

    def in_place(self, x: Value, v: Value) -> None:
        """`v` was computed in `x`'s buffer: in `x`'s row of a tape, if `x` is in one."""
        if x.id in self.in_rows:
            self.in_rows[v.id] = self.in_rows[x.id]

    def reuse(self, node: Node, position: int) -> int | None:
        """The operand whose buffer `node` may write its result into (REUSE), if any: the
        temporary made for it (reuse_into), else one with the name the result would get
        (``x_bar += c``), else the first."""
        if not self.optimize:
            return None
        sides = REUSE[node]
        pinned = [i for i in sides if self.plan.reuse_into.get(node.inputs[i].id) is node]
        free = [
            i for i in (pinned or sides)
            if node.inputs[i].id not in self.inline_defs
            and self.plan.may_write(node.inputs[i], position)
        ]  # fmt: skip
        if pinned or node.output.id in self.namer.name_of:  # its name is the operand's
            return free[0] if free else None
        same = [i for i in free if self.namer.name_of.get(node.inputs[i].id) == base_name(
            node.output)]  # fmt: skip
        return (same or free or [None])[0]

    def reuse_statement(self, node: Node, i: int, position: int) -> list[ast.stmt]:
        """``c = a * b`` as ``c = a; c *= b`` where `a`'s buffer is free (REUSE)."""
        unary = len(node.inputs) == 1
        target = self.read(node.inputs[i])
        other = None if unary else self.read(node.inputs[1 - i])
        self.namer.kill(node.inputs[i].id)  # its name may go on; not the other's yet
        name = self.chain_name(node.output) or self.namer.name(node.output)
        self.advance(position)
        if unary and node.op.impl is np.negative:  # y = t; y *= -1
            other, unary = ast.Constant(-1), False
            node_op = ast.Mult()
        elif unary or (node.op in (DIVIDE, SUBTRACT) and i == 1):
            # y = np.tanh(t, out=t); np.divide(c, t, out=t); np.subtract(c, t, out=t)
            operands = [target] if unary else [other, target]
            call = _np_call(node.op.impl.__name__, operands, ast.Name(target.id, ast.Load()))
            self.in_place(node.inputs[i], node.output)
            if name == target.id:
                return [ast.Expr(call)]
            return [ast.Assign([ast.Name(name, ast.Store())], call)]
        else:
            node_op = _AUGMENTED[node.op.augmented]()
        op = node_op
        if name != target.id and any(isinstance(n, ast.Name) and n.id == name
                                     for n in ast.walk(other)):  # fmt: skip
            return [ast.Assign([ast.Name(name, ast.Store())], ast.BinOp(target, op, other))]
        self.in_place(node.inputs[i], node.output)
        stmts: list[ast.stmt] = []
        if name != target.id:
            stmts.append(ast.Assign([ast.Name(name, ast.Store())], target))
        stmts.append(ast.AugAssign(ast.Name(name, ast.Store()), op, other))
        return stmts

    def chain_name(self, v: Value) -> str | None:
        """The name of the last value computed, in place, in `v`'s buffer (its reader's
        result, or that one's reader's...), given to `v` too; None if no reader will."""
        reader = self.plan.reuse_into.get(v.id)
        if reader is None:
            return None
        while reader.output.id in self.plan.reuse_into:
            reader = self.plan.reuse_into[reader.output.id]
        return self.namer.share(v, self.namer.name(reader.output))

    def append_statement(self, node: Node, position: int) -> list[ast.stmt]:
        """``lst.append(v)`` where the list may be changed in place, else a new list."""
        lst, item = node.inputs
        base, value = self.read(lst), self.read(item)
        in_place = (
            isinstance(base, ast.Name)
            and lst.id in self.plan.lists
            and self.plan.may_write(lst, position)
        )
        self.advance(position)
        if in_place:
            self.namer.fix(node.output, base.id)
            append = ast.Attribute(ast.Name(base.id, ast.Load()), "append", ast.Load())
            return [ast.Expr(ast.Call(append, [value], []))]
        name = self.namer.name(node.output)
        new = ast.List([ast.Starred(base, ast.Load()), value], ast.Load())
        return [ast.Assign([ast.Name(name, ast.Store())], new)]

    def setitem_statement(self, node: Node, position: int) -> list[ast.stmt]:
        """``x[index] = v``: in place where `x` may be written (see `Plan.may_write`),
        else into a copy."""
        from adcompiler.ops.structure import index_ast

        x, v, *dyn = node.inputs
        base = self.read(x)
        value = self.read(v)
        index = index_ast(node.attrs["index"], [self.read(d) for d in dyn])
        in_place = isinstance(base, ast.Name) and self.plan.may_write(x, position)
        self.advance(position - 1 if self.check else position)  # checks read the inputs
        stmts = []
        if in_place:
            name = base.id
            self.namer.fix(node.output, name)
            self.in_place(x, node.output)
        else:
            name = self.namer.name(node.output)
            copy = ast.Call(ast.Attribute(base, "copy", ast.Load()), [], [])
            stmts.append(ast.Assign([ast.Name(name, ast.Store())], copy))
        if node.op is INDEX_ADD and _basic_index(node.attrs["index"], dyn,
                                                        self.plan.ints):  # fmt: skip
            target = ast.Subscript(ast.Name(name, ast.Load()), index, ast.Store())
            stmts.append(ast.AugAssign(target, ast.Add(), value))  # no repeated indices
            return stmts + self.sum_check(node, name, index, value)
        if node.op is INDEX_ADD:
            call = ast.Call(
                ast.Name("add_at", ast.Load()),
                [ast.Name(name, ast.Load()), _slices_as_calls(index), value],
                [],
            )
            stmts.append(ast.Expr(call))
            return stmts + self.sum_check(node, name, index, value)
        target = ast.Subscript(ast.Name(name, ast.Load()), index, ast.Store())
        stmts.append(ast.Assign([target], value))
        return stmts

    def sum_check(self, node: Node, name: str, index: ast.expr, value: ast.expr) -> list:
        """check_finite=True: after ``x[i] += v``, a check of ``x[i]`` (the sum written)."""
        if not self.check:
            return []
        written = ast.Subscript(ast.Name(name, ast.Load()), _copy(index), ast.Load())
        inputs = [value.id] if isinstance(value, ast.Name) else []
        return [self.check_call(written, node.output, node, inputs)]

    def simple_statement(self, node: Node, position: int) -> ast.stmt:
        if (
            node in ACCUMULATIONS
            and self.optimize
            and self.plan.may_write(node.inputs[0], position)
        ):
            total = self.read(node.inputs[0])
            if isinstance(total, ast.Name):  # x̄ += c into a buffer the code owns
                other = self.read(node.inputs[1])
                self.advance(position)
                self.namer.fix(node.output, total.id)
                return ast.AugAssign(ast.Name(total.id, ast.Store()), ast.Add(), other)
        expr = self.expression(node)
        if len(node.outputs) == 1:  # named as the value its reader makes in its buffer
            self.chain_name(node.output)
        self.advance(position - 1 if self.check else position)  # checks read the inputs
        if isinstance(expr, ast.stmt):
            return expr
        if not node.outputs:
            return ast.Expr(expr)
        target = ast.Name(self.namer.name(node.output), ast.Store())
        return ast.Assign([target], expr)

    def assign_all(self, names: list[str], values: list[ast.expr]) -> list[ast.stmt]:
        """``a, b = x, y`` for the pairs whose name differs from the value written."""
        pairs = [
            (n, v) for n, v in zip(names, values) if not (isinstance(v, ast.Name) and v.id == n)
        ]
        if not pairs:
            return []
        if len(pairs) == 1:
            return [ast.Assign([ast.Name(pairs[0][0], ast.Store())], pairs[0][1])]
        targets = ast.Tuple([ast.Name(n, ast.Store()) for n, _ in pairs], ast.Store())
        return [ast.Assign([targets], ast.Tuple([v for _, v in pairs], ast.Load()))]

    def region_body(self, region: Block, names: list[str]) -> list[ast.stmt]:
        """A region's statements, then assignment of its yields to `names`."""
        stmts = self.block(region)
        values = [self.read(v) for v in region.yields]
        self.advance(self.plan.region_end[id(region)])
        stmts.extend(self.assign_all(names, values))
        return stmts or [ast.Pass()]

    def if_statement(self, node: Node) -> list[ast.stmt]:
        test = self.read(node.inputs[0])
        start, end = self.plan.span[id(node)]
        self.advance(start)
        then_stmts = self.block(node.regions[0])
        then_values = [self.read(v) for v in node.regions[0].yields]
        self.advance(self.plan.region_end[id(node.regions[0])])
        else_stmts = self.block(node.regions[1])
        else_values = [self.read(v) for v in node.regions[1].yields]
        self.advance(end)
        names = [self.namer.name(o) for o in node.outputs]
        then_stmts += self.assign_all(names, then_values)
        else_stmts += self.assign_all(names, else_values)
        return [ast.If(test, then_stmts or [ast.Pass()], else_stmts)]

    def slot_names(self, node: Node, params_per_region: list[list[Value]]) -> list[str]:
        """Name a loop's carried slots: one name for init, parameters, yields and output."""
        names = []
        for k, out in enumerate(node.outputs):
            name = self.namer.name(out)
            for params in params_per_region:
                self.namer.fix(params[k], name)
            names.append(name)
        return names

    def owned_inits(self, inits, params, values, position: int) -> list[ast.expr]:
        """A slot the loop writes into in place starts from a copy of an initial value
        the generated code does not own (an argument, a view, a broadcast) or that is
        still read after the loop starts."""
        out = []
        for init, param, value in zip(inits, params, values):
            if param.id in self.plan.written and (
                init.id not in self.plan.owned
                or self.plan.last.get(init.id, -1) > position
                or sum(v is init for v in inits) > 1
            ):
                value = ast.Call(ast.Name("copy_array", ast.Load()), [value], [])
            out.append(value)
        return out

    def hold(self, outputs: list[Value], names: list[str]) -> None:
        """After a loop, its slot names belong to its outputs (not to the dead parameters)."""
        for out, name in zip(outputs, names):
            self.namer.fix(out, name)

    def for_statement(self, node: Node) -> list[ast.stmt]:
        body = node.regions[0]
        start, stop, step, *inits = node.inputs
        bounds = [self.read(v) for v in (start, stop, step)]
        init_values = [self.read(v) for v in inits]
        begin, end = self.plan.span[id(node)]
        self.advance(begin)
        names = self.slot_names(node, [body.params[1:]])
        index = self.namer.name(body.params[0])
        init_values = self.owned_inits(inits, body.params[1:], init_values, begin)
        before = self.assign_all(names, init_values)
        stmts = self.region_body(body, names)
        self.advance(end)
        self.hold(node.outputs, names)
        iterator = _range_call(bounds, reverse=node.attrs.get("reverse", False))
        loop = ast.For(ast.Name(index, ast.Store()), iterator, stmts, [], None)
        return before + [loop]

    def while_statement(self, node: Node) -> list[ast.stmt]:
        cond, body = node.regions
        init_values = [self.read(v) for v in node.inputs]
        begin, end = self.plan.span[id(node)]
        self.advance(begin)
        names = self.slot_names(node, [cond.params, body.params])
        init_values = self.owned_inits(node.inputs, body.params, init_values, begin)
        before = self.assign_all(names, init_values)
        cond_stmts = self.block(cond)
        flag = self.read(cond.yields[0])
        self.advance(self.plan.region_end[id(cond)])
        stmts = self.region_body(body, names)
        self.advance(end)
        self.hold(node.outputs, names)
        if cond_stmts:  # the condition needs statements: test it inside the loop
            stop = ast.If(ast.UnaryOp(ast.Not(), flag), [ast.Break()], [])
            loop = ast.While(ast.Constant(True), cond_stmts + [stop] + stmts, [])
        else:
            loop = ast.While(flag, stmts, [])
        return before + [loop]

    def expression(self, node: Node) -> ast.expr:
        return _spell(node, [self.read(v) for v in node.inputs])

    def read(self, v: Value) -> ast.expr:
        if v.id in self.inline_defs:
            return self.expression(self.inline_defs[v.id])
        return ast.Name(self.namer.name_of.get(v.id) or self.namer.name(v), ast.Load())

    def comment(self, node: Node) -> ast.stmt:
        text = node.loc.text.strip()
        where = f"line {node.loc.line}"
        if node.loc.file != self.fn.source_file:  # inlined from a helper in another file
            where = f"{os.path.basename(node.loc.file)}:{node.loc.line}"
        prefix = f"adjoint of {where}" if _is_adjoint(node) else where
        self.comments.append(f"{prefix}: {text}")
        marker = ast.Call(
            ast.Name("__comment__", ast.Load()), [ast.Constant(len(self.comments) - 1)], []
        )
        return ast.Expr(marker)

    def result_ast(self, tree) -> ast.expr:
        if isinstance(tree, tuple):
            return ast.Tuple([self.result_ast(t) for t in tree], ast.Load())
        if isinstance(tree, list):
            return ast.List([self.result_ast(t) for t in tree], ast.Load())
        if isinstance(tree, dict):
            keys = [constant_ast(k) for k in tree]
            return ast.Dict(keys, [self.result_ast(t) for t in tree.values()])
        return self.read(self.fn.results[tree])

    def finish(self, body: list[ast.stmt]) -> Emitted:
        names = [self.namer.name_of[p.id] for p in self.fn.params]
        split = len(names) - self.fn.kwonly  # keyword-only parameters stay keyword-only
        args = ast.arguments(
            posonlyargs=[],
            args=[ast.arg(n) for n in names[:split]],
            vararg=None,
            kwonlyargs=[ast.arg(n) for n in names[split:]],
            kw_defaults=[None] * (len(names) - split),
            kwarg=None,
            defaults=[],
        )
        func = ast.FunctionDef(self.name, args, body, [], None, None)
        source = to_source(ast.Module([func], []))  # one line per statement
        source = re.sub(
            r"^(\s*)__comment__\((\d+)\)$",
            lambda m: f"{m.group(1)}# {self.comments[int(m.group(2))]}",
            source,
            flags=re.M,
        )
        self.out.source = source
        self.out.helpers = _helpers_used(source)
        return self.out


def _np_call(name: str, args: list[ast.expr], out: ast.expr) -> ast.Call:
    """``np.<name>(*args, out=out)``."""
    function = ast.Attribute(ast.Name("np", ast.Load()), name, ast.Load())
    return ast.Call(function, args, [ast.keyword("out", out)])


def _basic_index(template, dyn: list[Value], ints: set[int] = frozenset()) -> bool:
    """True for an index of integers, slices, None and ... known while compiling, or
    of Python ints (`ints`: a loop's index, `t + 1`): it names no element twice, so
    `x[index] += g` is `np.add.at(x, index, g)`."""
    from adcompiler.ops.structure import Dyn

    def basic(p) -> bool:
        if isinstance(p, Dyn):
            v = dyn[p.k]
            return v.id in ints or (v.is_const and type(v.const) in (int, type(None)))
        if isinstance(p, slice):
            return all(basic(e) for e in (p.start, p.stop, p.step) if e is not None)
        return type(p) in (int, type(None)) or p is Ellipsis

    items, _ = template
    return all(basic(p) for p in items)


def _python_ints(fn: Function) -> set[int]:
    """Ids of values that are always Python ints: a `for` loop's index (it runs over a
    `range`) and integer arithmetic on those and on integer constants."""
    ints: set[int] = set()
    for node in walk(fn.body):  # definitions come before their readers
        if node.op is FOR:
            ints.add(node.regions[0].params[0].id)
        elif (
            node.op.integer
            and node.inputs
            and all(v.id in ints or (v.is_const and type(v.const) is int) for v in node.inputs)
        ):
            ints.update(v.id for v in node.outputs)
    return ints


def _is_literal_const(node: Node) -> bool:
    return node.op is CONST and "name" not in node.attrs


def _is_adjoint(node: Node) -> bool:
    """True for a node of the adjoint sweep (a tape write: if it saves an adjoint)."""
    written = node.outputs or (node.inputs[-1:] if node.op is TAPE_SET else [])
    return any(v.role.startswith("adjoint") for v in written)


class Plan:
    """Where every statement goes, which values are written inline, and when each dies.

    Statements are numbered in the order they are written (a region's statements
    inside their node's span). A value read inside a loop that it was defined
    outside of lives until the loop ends.
    """

    def __init__(self, fn: Function, check_finite: bool = False):
        self.check = check_finite  # every value named (each statement's result is checked)
        self.span: dict[int, tuple[int, int]] = {}
        self.region_end: dict[int, int] = {}
        self.block_of: dict[int, int] = {}  # value id -> id of the block defining it
        self.uses: dict[int, list[tuple[int, int]]] = {}  # value id -> [(block id, position)]
        self.loops: list[tuple[int, int, set[int]]] = []  # (start, end, ids defined inside)
        self.counter = 0
        self.defs: dict[int, Node] = {}
        self.readers: list[tuple[Node, int]] = []  # (node, position)
        self.tail_reads: list[tuple[int, int]] = []  # (value id, position): yields, results
        for p in fn.params:
            self.block_of[p.id] = id(fn.body)
        sink_writes(fn.body)
        self.number(fn.body)
        self.final = self.counter
        for v in fn.results:
            self.use(v, id(fn.body), self.final, inline=False)
            self.tail_reads.append((v.id, self.final))
        from adcompiler.passes import optimizing

        # a temporary whose only reader may write into it (REUSE) gets its own line,
        # under the reader's name: `t = g * x; t *= 2`, not `t = 2 * (g * x)`
        self.reuse_into: dict[int, Node] = {}
        for node in walk(fn.body) if optimizing() and not check_finite else ():
            if node not in REUSE:
                continue
            for v in (node.inputs[i] for i in REUSE[node]):  # one operand per reader
                uses = self.uses.get(v.id, ())
                # read once: not from inside a loop that it was made before
                if (v.id in self.defs and v.role in INLINE_ROLES and len(uses) == 1
                        and uses[0][0] == self.block_of[v.id]):  # fmt: skip
                    self.reuse_into[v.id] = node
                    break
        self.inline_defs = self.choose_inline()
        self.reads: dict[int, list[int]] = {}
        for node, position in self.readers:
            if not (node.outputs and node.outputs[0].id in self.inline_defs):
                for v in node.inputs:
                    self.reads.setdefault(v.id, []).append(position)
        for vid, position in self.tail_reads:
            self.reads.setdefault(vid, []).append(position)
        self.last = self.last_uses()
        self.order = sorted(self.last.items(), key=lambda item: item[1])
        self.root: dict[int, int] = {}
        self.owned: set[int] = set()
        self.lists: set[int] = set()  # values known to be Python lists
        self.written: set[int] = set()  # values written into by a setitem
        self.ownership(fn.body)
        self.escaped = {  # kept on a tape or in a list: read later through that
            self.root.get(v.id, v.id)
            for node in walk(fn.body) if node.op.holds is not None and not self.copies(node)
            for v in node.inputs[node.op.holds:]
        }  # fmt: skip
        self.escape_through_regions(fn.body)
        self.holders = _region_holders(fn.body)
        self.ints = _python_ints(fn)
        self.cursor = 0

    def copies(self, node: Node) -> bool:
        """True for a write into a row of a tape kept as one array (`tape_stack`): it
        copies the value, which is then not kept (unless it was made in that row)."""
        if node.op is not TAPE_SET or (node in INTO and INTO[node] is None):
            return False
        maker = self.defs.get(self.root.get(node.inputs[0].id, node.inputs[0].id))
        return maker is not None and maker.op is TAPE_STACK

    def number(self, block: Block) -> None:
        for p in block.params:
            self.block_of[p.id] = id(block)
        for node in block.nodes:
            start = self.counter
            self.counter += 1
            self.readers.append((node, start))
            for v in node.inputs:
                self.use(v, id(block), start)
            inside: set[int] = set()
            for region in node.regions:
                before = set(self.block_of)
                self.number(region)
                for v in region.yields:
                    self.use(v, id(region), self.counter)
                    self.tail_reads.append((v.id, self.counter))
                self.region_end[id(region)] = self.counter
                self.counter += 1
                inside |= set(self.block_of) - before
            end = self.counter
            self.counter += 1
            self.span[id(node)] = (start, end)
            if node.op is FOR:  # the index keeps its name through the whole loop
                self.tail_reads.append((node.regions[0].params[0].id, end))
            if node.op in (FOR, WHILE):
                self.loops.append((start, end, inside))
            for v in node.outputs:
                self.block_of[v.id] = id(block)
                self.defs[v.id] = node

    def ownership(self, block: Block) -> None:
        """Which values are arrays the generated code made itself (so it may write into
        them), and which values may share memory with which (views, aliases)."""
        for _ in range(3):  # loop-carried values: to a fixpoint (3 rounds suffice here)
            for node in walk(block):
                self.own(node)

    def own(self, node: Node) -> None:
        if node.op in (MAKE_LIST, LIST_APPEND):
            self.lists.add(node.outputs[0].id)
        if node.op in (FOR, WHILE):  # a carried list stays a list
            inits = node.inputs[3:] if node.op is FOR else node.inputs
            body = node.regions[-1]
            params = body.params[1:] if node.op is FOR else body.params
            for k, (init, y) in enumerate(zip(inits, body.yields)):
                if init.id in self.lists and y.id in self.lists:
                    self.lists.update({params[k].id, node.outputs[k].id})
                    if node.op is WHILE:
                        self.lists.add(node.regions[0].params[k].id)
        if node.op in (SETITEM, INDEX_ADD, LIST_APPEND) or node in ACCUMULATIONS:
            self.written.add(node.inputs[0].id)
        if node.op in (FOR, WHILE):
            body = node.regions[-1]
            inits = passes.carried_inits(node)
            body_params = passes.carried_params(node, body)
            # a slot written in place writes into its initial value unless that is copied:
            # an inner loop's init that is an outer loop's slot makes that slot written too
            # (so the outer loop copies an initial value it does not own)
            for region in node.regions:
                for init, param in zip(inits, passes.carried_params(node, region)):
                    if param.id in self.written:
                        self.written.add(init.id)
            for k, y in enumerate(body.yields):
                # the slot's buffer is the initial value's on the first trip (and after
                # the loop, if it ran none): owned only if that one is, or is copied
                # before the loop (`owned_inits`)
                if y.id in self.owned and (
                    inits[k].id in self.owned or body_params[k].id in self.written
                ):
                    self.owned.add(node.outputs[k].id)
                    for region in node.regions:
                        self.owned.add(passes.carried_params(node, region)[k].id)
        for k, out in enumerate(node.outputs):
            if node.op is IF:
                if all(r.yields[k].id in self.owned for r in node.regions):
                    self.owned.add(out.id)
            elif node.op in (FOR, WHILE):
                continue  # owned or not: above
            elif (base := may_share(node)) is not None:  # may share the input's memory
                self.root[out.id] = self.root.get(base.id, base.id)
            elif node.op is not CONST and node.op.impl:  # a new array
                self.owned.add(out.id)

    def escape_through_regions(self, body: Block) -> None:
        """A loop slot's values are one buffer from iteration to iteration (and an `if`'s
        output is one of its yields): if one of them is kept, none may be written."""
        groups = []
        for node in walk(body):
            for k, out in enumerate(node.outputs if node.regions else ()):
                group = [out, *(r.yields[k] for r in passes.yielding_regions(node))]
                if node.op in (FOR, WHILE):
                    group.append(passes.carried_inits(node)[k])
                    group.extend(passes.carried_params(node, r)[k] for r in node.regions)
                groups.append({self.root.get(v.id, v.id) for v in group})
        changed = True
        while changed:
            changed = False
            for group in groups:
                if group & self.escaped and not group <= self.escaped:
                    self.escaped |= group
                    changed = True

    def may_write(self, x: Value, position: int) -> bool:
        """True if `x` can be written in place at `position`: owned, read no more, and no
        live value shares its memory."""
        if x.id not in self.owned or self.last.get(x.id, -1) > position:
            return False
        root = self.root.get(x.id, x.id)
        if root in self.escaped:
            return False
        if any(
            last > position and self.root.get(w, w) == root and w != x.id
            for w, last in self.last.items()
        ):
            return False
        # nor a region's output that may be this very array (an `if` that yielded it,
        # a loop that ran no iteration and passed it on)
        sharing = {x.id, *(w for w in self.last if self.root.get(w, w) == root)}
        return not any(self.last.get(h, -1) > position for h in self.held_by(sharing))

    def held_by(self, ids: set[int]) -> set[int]:
        """The outputs of `if`s and loops that may be one of the values `ids`, transitively."""
        out, stack = set(), list(ids)
        while stack:
            for h in self.holders.get(stack.pop(), ()):
                if h not in out:
                    out.add(h)
                    stack.append(h)
        return out

    def use(self, v: Value, block: int, position: int, inline: bool = True) -> None:
        self.uses.setdefault(v.id, []).append((block if inline else -1, position))

    def choose_inline(self) -> dict[int, Node]:
        chosen = self.choose_inline_unchecked()
        if not self.check:
            return chosen
        # check_finite=True: one statement per operator, except the constants and what
        # `a and b` / `a or b` evaluate only if they must (`i < n and x[i] > 0`): that
        # stays in the expression, as without checks
        kept = {vid: node for vid, node in self.defs.items() if node.op is CONST}
        lazy = [n.inputs[1] for n in self.defs.values() if n.op in (AND, OR)]
        while lazy:
            v = lazy.pop()
            if v.id in chosen and v.id not in kept:
                kept[v.id] = chosen[v.id]
                lazy.extend(chosen[v.id].inputs)
        return kept

    def choose_inline_unchecked(self) -> dict[int, Node]:
        chosen = {}
        readers = {id(n) for n in self.reuse_into.values()}  # statements of their own
        for vid, node in self.defs.items():
            if len(node.outputs) != 1 or node.regions or id(node) in readers or node.op.effect:
                continue
            uses = self.uses.get(vid, [])
            if _is_literal_const(node):
                chosen[vid] = node
            elif (
                len(uses) == 1
                and vid not in self.reuse_into
                and uses[0][0] == self.block_of[vid]
                and (node.op.inline or node.outputs[0].role in INLINE_ROLES)
            ):
                chosen[vid] = node
        return chosen

    def last_uses(self) -> dict[int, int]:
        """The position after which each named value is read no more. A value read by
        an inlined expression is read where that expression is written."""
        last: dict[int, int] = {}

        def note(vid: int, position: int) -> None:
            if vid in self.inline_defs:
                for w in self.defs[vid].inputs:
                    note(w.id, position)
                return
            for start, end, inside in self.loops:
                if start < position < end and vid not in inside:
                    position = max(position, end)
            last[vid] = max(last.get(vid, -1), position)

        for vid, reads in self.reads.items():
            for position in reads:
                note(vid, position)
        return last

    def dying_until(self, position: int) -> list[int]:
        out = []
        while self.cursor < len(self.order) and self.order[self.cursor][1] <= position:
            out.append(self.order[self.cursor][0])
            self.cursor += 1
        return out


def _region_holders(body: Block) -> dict[int, list[int]]:
    """For each value an `if` yields or a loop starts from or yields: the outputs of that
    node that may be the same object (an `if`'s output is one of its yields; a loop's
    output is its initial value when it runs no iteration, else its last yield)."""
    holders: dict[int, list[int]] = {}
    for node in walk(body):
        if not node.regions:
            continue
        inits = passes.carried_inits(node)
        for k, out in enumerate(node.outputs):
            members = [r.yields[k] for r in passes.yielding_regions(node)]
            if inits:
                members.append(inits[k])
            for v in members:
                holders.setdefault(v.id, []).append(out.id)
    return holders


def _slices_as_calls(index: ast.expr) -> ast.expr:
    from adcompiler.ops.structure import SlicesAsCalls

    return SlicesAsCalls().visit(index)


def sink_writes(block: Block) -> None:
    """Move each `setitem` down to just before the first node that reads its result, so
    that the array it writes into is read no more there and can be written in place.
    (The IR is functional: a node may move anywhere between its inputs and its uses.)"""
    for node in block.nodes:
        for region in node.regions:
            sink_writes(region)
    nodes = list(block.nodes)
    i = len(nodes) - 1
    while i >= 0:
        node = nodes[i]
        if node.op in (SETITEM, INDEX_ADD, LIST_APPEND):
            out = node.outputs[0]
            j = i + 1
            while j < len(nodes) and not _reads(nodes[j], out):
                j += 1
            if j > i + 1:
                nodes.insert(j - 1, nodes.pop(i))  # just before the reader (now at j - 1)
        i -= 1
    block.nodes = nodes


def _reads(node: Node, value: Value) -> bool:
    if value in node.inputs:
        return True
    return any(
        value in n.inputs or value in r.yields
        for region in node.regions
        for r in [region]
        for n in walk(region)
    ) or any(value in region.yields for region in node.regions)


def _range_call(bounds: list[ast.expr], reverse: bool) -> ast.expr:
    start, stop, step = bounds
    args = [stop]
    is_zero = isinstance(start, ast.Constant) and start.value == 0
    is_one = isinstance(step, ast.Constant) and step.value == 1
    if not is_zero or not is_one:
        args = [start, stop] if is_one else [start, stop, step]
    call = ast.Call(ast.Name("range", ast.Load()), args, [])
    return ast.Call(ast.Name("reversed", ast.Load()), [call], []) if reverse else call


def _helpers_used(source: str) -> set[str]:
    """The run-time helpers `source` calls (a name followed by `(`)."""
    return set(re.findall(r"\b([A-Za-z_]\w*)\(", source)).intersection(runtime.HELPERS)


def emit_function(
    fn: Function,
    name: str,
    doc: str,
    result_tree: Any,
    reserved: set[str] = frozenset(),
    check_finite: bool = False,
) -> Emitted:
    """Write `fn` as a Python function called `name`; with `check_finite`, each statement
    is followed by a check that its result is finite (runtime.check_result_finite)."""
    param_names = [base_name(p) for p in fn.params]
    constants = _named_constants(fn, set(reserved) | set(param_names))
    taken = set(reserved) | set(param_names) | set(constants)
    emitter = Emitter(fn, name, param_names, taken, check_finite)
    emitted = emitter.emit(doc, result_tree)
    emitted.constants = constants
    return emitted


def _named_constants(fn: Function, taken: set[str]) -> dict[str, Any]:
    """The objects generated code reads by name (arrays and other globals the user's code
    read), one name each: two objects read under one name (a global `W` of two modules,
    the items of a global list) get `W`, `W_2`. The const nodes are renamed to match."""
    constants: dict[str, Any] = {}
    names: dict[int, str] = {}
    for node in walk(fn.body):
        if node.op is not CONST or "name" not in node.attrs:
            continue
        value = node.attrs["value"]
        name = names.get(id(value))
        if name is None:
            base = name = node.attrs["name"]
            n = 1
            while name in constants or name in taken:
                n += 1
                name = f"{base}_{n}"
            names[id(value)] = name
            constants[name] = value
        node.attrs["name"] = name
    return constants
