"""IR → Python source, through the Python AST and astor.

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
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import astor
import numpy as np

from adcompiler import runtime
from adcompiler.codegen.naming import Namer, base_name
from adcompiler.ops.core import Op
from adcompiler.ssa import Function, Node, Value

INLINE_ROLES = {"temp", "adjoint_temp", "tangent_temp"}


@dataclass
class Emitted:
    """Generated source and what its namespace must hold."""

    source: str
    name: str
    helpers: set[str] = field(default_factory=set)  # run-time helpers it calls
    constants: dict[str, Any] = field(default_factory=dict)  # captured globals by name
    defaults: tuple = ()


def constant_ast(value: Any) -> ast.expr:
    """The AST of a compile-time constant: literals, tuples, dtypes, slices."""
    if isinstance(value, float) and not math.isfinite(value):
        text = "np.nan" if math.isnan(value) else ("np.inf" if value > 0 else "-np.inf")
        return ast.parse(text, mode="eval").body
    if isinstance(value, tuple):
        return ast.Tuple([constant_ast(v) for v in value], ast.Load())
    if isinstance(value, slice):
        args = [constant_ast(v) for v in (value.start, value.stop, value.step)]
        return ast.Call(ast.Name("slice", ast.Load()), args, [])
    if isinstance(value, type):
        if value.__module__ == "builtins":
            return ast.Name(value.__name__, ast.Load())
        if value.__module__ == "numpy":
            return ast.parse(f"np.{value.__name__}", mode="eval").body
    if isinstance(value, np.dtype):
        return ast.parse(f"np.dtype({value.name!r})", mode="eval").body
    return ast.Constant(value)


_TEMPLATES: dict[str, ast.expr] = {}


def _spell(node: Node, args: list[ast.expr]) -> ast.expr:
    op: Op = node.op
    spelling = op.spelling
    if callable(spelling):
        return spelling(node, args)
    if "_0" in spelling:
        template = _TEMPLATES.get(spelling) or ast.parse(spelling, mode="eval").body
        _TEMPLATES[spelling] = template
        return _Substitute(args).visit(_copy(template))
    func = ast.parse(spelling, mode="eval").body
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
    return ast.parse(ast.unparse(tree), mode="eval").body


class Emitter:
    """Writes one IR function as one Python `def`."""

    def __init__(self, fn: Function, name: str, param_names: list[str], reserved: set[str]):
        self.fn = fn
        self.name = name
        generated_globals = set(runtime.HELPERS) | set(runtime.EXTERNAL) | {"np", "slice"}
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
        self.defs: dict[int, Node] = {}
        self.comments: list[str] = []

    def emit(self, doc: str, result_tree: Any) -> Emitted:
        nodes = self.fn.body.nodes
        uses = _use_counts(self.fn)
        inlined = {
            n.output.id
            for n in nodes
            if len(n.outputs) == 1
            and (
                _is_literal_const(n)
                or uses.get(n.output.id, 0) == 1
                and (n.op.inline or n.output.role in INLINE_ROLES)
            )
        }
        self.inline_defs = {n.output.id: n for n in nodes if n.outputs and n.output.id in inlined}
        last_use = _last_uses(self.fn, inlined)
        body: list[ast.stmt] = [ast.Expr(ast.Constant(doc.replace("\n", "\n    ")))]
        line = None
        for i, node in enumerate(nodes):
            if node.outputs and node.output.id in inlined:
                continue
            expr = self.expression(node)
            for vid in last_use.get(i, ()):
                self.namer.kill(vid)
            if node.loc is not None and (node.loc.line, _is_adjoint(node)) != line:
                line = (node.loc.line, _is_adjoint(node))
                body.append(self.comment(node))
            if not node.outputs:
                body.append(ast.Expr(expr))
                continue
            target = ast.Name(self.namer.name(node.output), ast.Store())
            body.append(ast.Assign([target], expr))
        body.append(ast.Return(self.result_ast(result_tree)))
        return self.finish(body)

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
        return self.read(self.fn.results[tree])

    def finish(self, body: list[ast.stmt]) -> Emitted:
        names = [self.namer.name_of[p.id] for p in self.fn.params]
        args = ast.arguments(
            posonlyargs=[],
            args=[ast.arg(n) for n in names],
            vararg=None,
            kwonlyargs=[],
            kw_defaults=[],
            kwarg=None,
            defaults=[],
        )
        func = ast.FunctionDef(self.name, args, body, [], None, None)
        module = ast.fix_missing_locations(ast.Module([func], []))
        source = astor.to_source(module, pretty_source="".join)  # one line per statement
        source = re.sub(
            r"^(\s*)__comment__\((\d+)\)$",
            lambda m: f"{m.group(1)}# {self.comments[int(m.group(2))]}",
            source,
            flags=re.M,
        )
        self.out.source = source
        self.out.helpers = _helpers_used(source)
        return self.out


def _is_literal_const(node: Node) -> bool:
    return node.op.name == "const" and "name" not in node.attrs


def _is_adjoint(node: Node) -> bool:
    return any(v.role.startswith("adjoint") for v in node.outputs)


def _use_counts(fn: Function) -> dict[int, int]:
    count: dict[int, int] = {}
    for node in fn.body.nodes:
        for v in node.inputs:
            count[v.id] = count.get(v.id, 0) + 1
    for v in fn.results:
        count[v.id] = count.get(v.id, 2) + 2  # results are always named
    return count


def _last_uses(fn: Function, inlined: set[int]) -> dict[int, list[int]]:
    """For each statement index, the values read there for the last time."""
    reads: dict[int, int] = {}
    by_id = {n.output.id: n for n in fn.body.nodes if n.outputs}

    def note(v: Value, i: int) -> None:
        if v.id in inlined:
            for w in by_id[v.id].inputs:
                note(w, i)
        else:
            reads[v.id] = i

    for i, node in enumerate(fn.body.nodes):
        if node.outputs and node.output.id in inlined:
            continue
        for v in node.inputs:
            note(v, i)
    result_ids = {v.id for v in fn.results}
    out: dict[int, list[int]] = {}
    for vid, i in reads.items():
        if vid not in result_ids:
            out.setdefault(i, []).append(vid)
    return out


def _helpers_used(source: str) -> set[str]:
    return {name for name in runtime.HELPERS if re.search(rf"\b{name}\(", source)}


def emit_function(
    fn: Function, name: str, doc: str, result_tree: Any, reserved: set[str] = frozenset()
) -> Emitted:
    """Write `fn` as a Python function called `name`."""
    param_names = [base_name(p) for p in fn.params]
    constants = {
        node.attrs["name"]: node.attrs["value"]
        for node in fn.body.nodes
        if node.op.name == "const" and "name" in node.attrs
    }
    emitter = Emitter(fn, name, param_names, set(reserved) | set(param_names) | set(constants))
    emitted = emitter.emit(doc, result_tree)
    emitted.constants = constants
    return emitted
