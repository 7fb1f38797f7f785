"""The IR: structured SSA over operator nodes (`adcompiler.ssa`; `adcompiler.ir(f)` prints it).

A `Function` has parameters, a body `Block` and result values. A `Block` is
a list of `Node`s; a node applies an operator (`adcompiler.ops.Op`) to input
`Value`s, carries static attributes, and defines new values. Every value is
defined exactly once. Control flow stays structured: a node may own regions
(blocks), in the style of MLIR's `scf` dialect.

    def f(x, w):               function f(x, w):
        z = x @ w      ──▶       z = matmul(x, w)             # model.py:2
        return np.tanh(z)        tanh_1 = tanh(z)              # model.py:3
                                 return tanh_1

`verify` checks the SSA invariants; `format_function` prints the text above.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count()
# Nodes the reverse sweep made to sum adjoint contributions (`x̄ + c`): codegen may
# write them as `x̄ += c` into a buffer the generated code owns.
ACCUMULATIONS: weakref.WeakSet = weakref.WeakSet()
# Elementwise nodes whose result may be written into the buffer of an operand (the
# indices of those that may): same shape and dtype, a fresh array. adcompiler.specialize
# marks them; codegen does it where that operand is read no more: ``a *= b``.
REUSE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Nodes that write their result into a row of a tape (`np.tanh(c, out=tape[t])`): node
# → (tape, index); a `tape_set` of a value made so → None (it copies only if codegen did
# not, in the end, compute the value in that row). adcompiler.specialize.stacks marks them.
INTO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
NOT_CONST = object()


@dataclass(frozen=True)
class Loc:
    """A source location: file, 1-based line, 0-based column, and the line's text."""

    file: str
    line: int
    col: int
    text: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col + 1}"


class Value:
    """An SSA value. `hint` is the source variable it came from; `role` says
    whether it is a primal, an adjoint or a tangent (naming uses both)."""

    __slots__ = ("id", "hint", "role", "loc", "const")

    def __init__(self, hint: str = "", role: str = "primal", loc: Loc | None = None):
        self.id = next(_ids)
        self.hint = hint
        self.role = role
        self.loc = loc
        self.const = NOT_CONST  # the value, where it is known at compile time

    @property
    def is_const(self) -> bool:
        return self.const is not NOT_CONST

    def __repr__(self) -> str:
        return f"%{self.hint or 'v'}{self.id}"


class Node:
    """One operator application: `outputs = op(*inputs, **attrs)`, with regions."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "regions", "loc", "__weakref__")

    def __init__(
        self,
        op: Any,
        inputs: list[Value],
        attrs: dict[str, Any] | None = None,
        outputs: list[Value] | None = None,
        regions: list[Block] | None = None,
        loc: Loc | None = None,
    ):
        self.op = op
        self.inputs = list(inputs)
        self.attrs = dict(attrs or {})
        self.outputs = outputs if outputs is not None else [Value(op.name, loc=loc)]
        self.regions = list(regions or [])
        self.loc = loc

    @property
    def output(self) -> Value:
        (out,) = self.outputs
        return out

    def __repr__(self) -> str:
        return f"<Node {self.op.name} {self.inputs} -> {self.outputs}>"


@dataclass
class Block:
    """A region: block arguments, nodes, and the values it yields."""

    params: list[Value] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    yields: list[Value] = field(default_factory=list)


@dataclass
class Function:
    """A function: named parameters, a body, and its results."""

    name: str
    params: list[Value]
    body: Block
    results: list[Value]
    source_file: str = "<unknown>"
    doc: str = ""
    returns_tuple: bool = False
    result_tree: Any = None  # how results nest when returned: an index or a tuple of them
    leaves: dict = field(default_factory=dict)  # structured argument -> its leaf values
    kwonly: int = 0  # how many of the last parameters are keyword-only


def clone(fn: Function) -> Function:
    """A copy of `fn` whose blocks and nodes a transform may rewrite (values are shared)."""

    def block(b: Block) -> Block:
        return Block(list(b.params), [node(n) for n in b.nodes], list(b.yields))

    def node(n: Node) -> Node:
        return Node(n.op, list(n.inputs), dict(n.attrs), list(n.outputs),
                    [block(r) for r in n.regions], n.loc)  # fmt: skip

    return Function(
        fn.name, list(fn.params), block(fn.body), list(fn.results), fn.source_file, fn.doc,
        fn.returns_tuple, fn.result_tree, dict(fn.leaves), fn.kwonly,
    )  # fmt: skip


class VerifyError(AssertionError):
    """The IR breaks an invariant: a pass produced something malformed."""


def walk(block: Block):
    """Yield every node in `block` and in the regions nested inside it."""
    for node in block.nodes:
        yield node
        for region in node.regions:
            yield from walk(region)


def verify(fn: Function) -> Function:
    """Check that every value is defined once and defined before its use."""
    defined: set[int] = set()

    def define(value: Value, where: str) -> None:
        if not isinstance(value, Value):
            raise VerifyError(f"{where}: {value!r} is not a Value")
        if value.id in defined:
            raise VerifyError(f"{where}: {value!r} is defined twice")
        defined.add(value.id)

    def use(value: Value, visible: set[int], where: str) -> None:
        if not isinstance(value, Value) or value.id not in visible:
            raise VerifyError(f"{where}: {value!r} is used before it is defined")

    def check_block(block: Block, visible: set[int]) -> None:
        visible = set(visible)
        for p in block.params:
            define(p, "block parameter")
            visible.add(p.id)
        for node in block.nodes:
            where = f"{node.op.name} at {node.loc}"
            for v in node.inputs:
                use(v, visible, where)
            for region in node.regions:
                check_block(region, visible)
            for out in node.outputs:
                define(out, where)
                visible.add(out.id)
        for v in block.yields:
            use(v, visible, "yield")

    for p in fn.params:
        define(p, "parameter")
    check_block(fn.body, {p.id for p in fn.params})
    visible = defined
    for r in fn.results:
        use(r, visible, "return")
    return fn


def value_names():
    """A function naming values for printing (the IR text, adcompiler.draw): by hint,
    `h`, then `h.1`, `h.2` for later versions in the order asked; `_bar` for adjoints,
    `_dot` for tangents. The same value always gets the same name."""
    names: dict[int, str] = {}
    counts: dict[str, int] = {}

    def name(v: Value) -> str:
        if v.id not in names:
            base = v.hint or "v"
            if v.role in ("adjoint", "tangent"):
                base += "_bar" if v.role == "adjoint" else "_dot"
            n = counts.get(base, 0)
            counts[base] = n + 1
            names[v.id] = base if n == 0 else f"{base}.{n}"
        return names[v.id]

    return name


def format_function(fn: Function) -> str:
    """Print `fn` as text, one node a line, with the source location as a comment.
    Values are printed by their hint (`%h`, then `%h.1`, `%h.2` for later versions)."""
    value_name = value_names()

    def name(v: Value) -> str:
        return "%" + value_name(v)

    def names_of(values) -> str:
        return ", ".join(name(v) for v in values)

    lines = [f"function {fn.name}({names_of(fn.params)}):"]

    def attr_text(node: Node) -> str:
        parts = [f"{k}={v!r}" for k, v in node.attrs.items()]
        return (" {" + ", ".join(parts) + "}") if parts else ""

    def emit(block: Block, depth: int) -> None:
        pad = "  " * depth
        if block.params:
            lines.append(f"{pad}^({names_of(block.params)}):")
        for node in block.nodes:
            outs = names_of(node.outputs)
            ins = names_of(node.inputs)
            text = f"{pad}{outs} = {node.op.name}({ins}){attr_text(node)}"
            if node.loc is not None:
                text = f"{text:<60}  # {node.loc.file.rsplit('/', 1)[-1]}:{node.loc.line}"
            lines.append(text)
            for region in node.regions:
                lines.append(f"{pad}  region:")
                emit(region, depth + 2)
        if block.yields:
            lines.append(f"{pad}yield {names_of(block.yields)}")

    emit(fn.body, 1)
    lines.append(f"  return {names_of(fn.results)}")
    return "\n".join(lines) + "\n"
