"""A picture of the dataflow graph: the IR as Graphviz DOT text (`ad.graph`).

Named `draw`, not `graph`, so that the function `adcompiler.graph` does not shadow it.

    g = ad.graph(loss, wrt="w")       # the IR of loss's gradient, the one ad.ir prints
    g.source                          # DOT text, always
    g.render("loss.svg")              # .svg, .png, .pdf through Graphviz's `dot`; .dot: the text
    g                                 # in Jupyter: the picture (`_repr_svg_`), where `dot` exists

Every IR node is a node of the picture, labeled with what it defines, its operator, the
attributes that differ from the operator's defaults and its source line (the user's line
as a tooltip). Edges are dataflow: from the node that defines a value to each node that
reads it. Nodes of the primal sweep are blue rounded boxes, nodes of the adjoint (reverse)
sweep orange boxes with a dashed border, tangents (forward mode) green; a primal value
the adjoint sweep reads is a dashed grey edge; tapes (what the primal sweep saves for the
adjoint sweep) are cylinders. A node with regions (`if`, `for`, `while`) is a cluster: an
entry node that defines the regions' parameters, one sub-cluster per region (then/else,
condition/body), and an exit node that defines the node's results from the regions' yields.

The DOT text is written here; Graphviz's `dot` program is needed only to turn it into an
image. The `graphviz` Python package is optional (`Graph.to_graphviz`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adcompiler import ssa
from adcompiler.ops import control
from adcompiler.ops.structure import CONST

FORMATS = ("svg", "png", "pdf")  # rendered by `dot -T`; ".dot" and ".gv" are the text itself
DOT_HELP = (
    "Graphviz's 'dot' program is not on PATH: install Graphviz (Debian/Ubuntu: apt-get install "
    "graphviz; macOS: brew install graphviz; conda: conda install graphviz), or write DOT text "
    "(.dot) instead"
)

STYLE = {  # sweep -> node attributes
    "primal": 'style="rounded,filled" fillcolor="#dce9f9" color="#2f5f98"',
    "adjoint": 'style="filled,dashed" fillcolor="#fde3cf" color="#c2571a" penwidth=1.5',
    "tangent": 'style="filled,dashed" fillcolor="#dff3d8" color="#3d7a2a" penwidth=1.5',
}
EDGE = {"primal": 'color="#2f5f98"', "adjoint": 'color="#c2571a"', "tangent": 'color="#3d7a2a"'}
READ_BY_OTHER_SWEEP = 'color="#8c8c8c" style=dashed'
CLUSTER = {
    "primal": 'color="#2f5f98" fontcolor="#2f5f98"',
    "adjoint": 'color="#c2571a" fontcolor="#c2571a" style=dashed',
    "tangent": 'color="#3d7a2a" fontcolor="#3d7a2a" style=dashed',
}
TAPES = (control.TAPE_NEW, control.TAPE_LIST, control.TAPE_STACK)  # storage
TAPE_ACCESS = (control.TAPE_SET, control.TAPE_APPEND, control.TAPE_GET, control.TAPE_CONCAT)
REGION_NAMES = {control.IF: ("then", "else"), control.WHILE: ("condition", "body")}
LEGEND = {  # what the picture's title explains, where the picture has it
    "primal": "blue: primal",
    "adjoint": "orange, dashed: adjoint sweep",
    "tangent": "green, dashed: tangents",
    "tapes": "cylinders: tapes",
    "read": "grey dashed edges: primal values read by derivative code",
}


class DotNotFoundError(RuntimeError):
    """Rendering an image needs Graphviz's `dot` program, and it is not on PATH."""


class Graph:
    """The dataflow graph of a function's IR as Graphviz DOT text (`source`).

    `render(path)` writes `.dot`/`.gv` (the text) or `.svg`/`.png`/`.pdf` (through `dot`);
    `pipe(format)` returns the image's bytes; in Jupyter the graph shows as SVG where
    `dot` exists; `to_graphviz()` gives a `graphviz.Source` (the optional `graphviz`
    package: ``pip install adcompiler[graph]``)."""

    def __init__(self, source: str, name: str, counts: dict[str, int]):
        self.source = source
        self.name = name
        self.counts = counts  # nodes per sweep, "regions": clusters for if/for/while

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        parts = ", ".join(f"{n} {kind}" for kind, n in self.counts.items() if n)
        return f"<adcompiler graph of {self.name}: {parts}>"

    def pipe(self, format: str = "svg") -> bytes:  # noqa: A002 - graphviz's own name
        """The picture in `format` ("svg", "png", "pdf"), drawn by Graphviz's `dot`."""
        if format not in FORMATS:
            raise ValueError(f"format {format!r}: expected one of {', '.join(FORMATS)}")
        dot = shutil.which("dot")
        if dot is None:
            raise DotNotFoundError(DOT_HELP)
        done = subprocess.run(
            [dot, f"-T{format}"], input=self.source.encode(), capture_output=True, check=False
        )
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"dot failed: {message[0] if message else done.returncode}")
        return done.stdout

    def render(self, path: str | os.PathLike) -> Path:
        """Write the graph to `path`: DOT text for `.dot`/`.gv`, else an image in the format
        its suffix names (`.svg`, `.png`, `.pdf`)."""
        path = Path(path)
        suffix = path.suffix.lower().lstrip(".")
        if suffix in ("dot", "gv"):
            path.write_text(self.source)
        elif suffix in FORMATS:
            path.write_bytes(self.pipe(suffix))
        else:
            raise ValueError(
                f"{path}: cannot tell the format from the suffix; use .dot, .gv, "
                + ", ".join(f".{f}" for f in FORMATS)
            )
        return path

    def _repr_svg_(self) -> str | None:
        """The picture for Jupyter; None (the text is shown) where `dot` is missing."""
        if shutil.which("dot") is None:
            return None
        return self.pipe("svg").decode()

    def to_graphviz(self):
        """The graph as a `graphviz.Source` (needs the `graphviz` package)."""
        try:
            import graphviz
        except ImportError:
            raise ImportError(
                "Graph.to_graphviz needs the graphviz package: pip install adcompiler[graph] "
                "(the DOT text is Graph.source without it)"
            ) from None
        return graphviz.Source(self.source, filename=f"{self.name}.gv")


def graph(
    f: Callable, *example_args, wrt: Any = None, primal_only: bool = False, **example_kwargs
) -> Graph:
    """The dataflow graph of `f`'s gradient with respect to `wrt` (default: the first
    argument): the IR that ``ad.ir(ad.grad(f, wrt=wrt))`` prints, primal and adjoint
    nodes in two styles, loops and branches as clusters.

    primal_only: the graph of `f` itself, before differentiation (``ad.ir(f)``).
    `f` may also be a function adcompiler generated (``ad.grad(...)``, ``ad.jvp(...)``):
    the graph of what it computes. Example arguments pick the version of a gradient whose
    code depends on the structure of its arguments (a dict of arrays), as for ``ad.ir``."""
    from adcompiler import api

    if api.is_generated(f):
        if wrt is not None or primal_only:
            raise ValueError(
                f"{getattr(f, '__name__', f)} is a generated function: ad.graph draws what it "
                f"computes; give wrt= or primal_only= with the user's function instead"
            )
        fn = api.ir_function(f, *example_args, **example_kwargs)
    elif primal_only:
        if wrt is not None:
            raise ValueError("primal_only draws the function itself: wrt= is for its gradient")
        fn = api.ir_function(f, *example_args, **example_kwargs)
    else:
        g = api.grad(f, wrt=0 if wrt is None else wrt)
        fn = api.ir_function(g, *example_args, **example_kwargs)
    return from_ir(fn)


def from_ir(fn: ssa.Function) -> Graph:
    """The graph of an IR function."""
    return _Drawing(fn).graph()


def _quote(text: str) -> str:
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _simple(value: Any) -> bool:
    """An attribute worth printing in a label: a number, a string, None, or a flat tuple."""
    if isinstance(value, tuple):
        return all(isinstance(v, (int, float, str, bool)) or v is None for v in value)
    return isinstance(value, (int, float, str, bool)) or value is None


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sweep_of_role(role: str) -> str:
    """The sweep a value's role says: adjoint for the reverse sweep's roles ("adjoint",
    "adjoint_temp"), tangent for forward mode's, else primal (user values, temporaries,
    tapes)."""
    return next((s for s in ("adjoint", "tangent") if role.startswith(s)), "primal")


def _where(loc: ssa.Loc | None) -> str:
    return "" if loc is None else f"{os.path.basename(loc.file)}:{loc.line}"


class _Drawing:
    """Walks an IR function once, writing its DOT nodes (nested in clusters) and edges."""

    def __init__(self, fn: ssa.Function):
        self.fn = fn
        self.name = ssa.value_names()
        self.lines: list[str] = []
        self.edges: list[str] = []
        self.defined: dict[int, tuple[str, bool]] = {}  # value id -> (dot node, labeled edge)
        self.sweep_of: dict[int, str] = {}  # value id -> sweep of the node defining it
        self.counts = {"primal": 0, "adjoint": 0, "tangent": 0, "regions": 0}
        self.shown: set[str] = set()  # the LEGEND entries the picture needs
        self.ids = 0

    def name_all(self, block: ssa.Block) -> None:
        """Name values in the order `ad.ir` prints them, so that the names match its text."""
        for node in block.nodes:
            for v in node.outputs + node.inputs:
                self.name(v)
            for region in node.regions:
                for v in region.params:
                    self.name(v)
                self.name_all(region)
                for v in region.yields:
                    self.name(v)

    def new_id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}{self.ids}"

    def graph(self) -> Graph:
        fn = self.fn
        for p in fn.params:
            self.name(p)
        self.name_all(fn.body)
        for i, p in enumerate(fn.params):
            pid = f"param{i}"
            sweep = _sweep_of_role(p.role)
            label = _quote(self.name(p))
            self.lines.append(f"  {pid} [label={label} shape=ellipse {STYLE[sweep]}]")
            self.define(p, pid, sweep, labeled=False)
        self.block(fn.body, None, depth=1)
        style = STYLE["primal"]
        self.lines.append(f'  result [label="return" shape=ellipse peripheries=2 {style}]')
        for i, r in enumerate(fn.results):
            label = self.name(r) if len(fn.results) == 1 else f"{i}: {self.name(r)}"
            self.edge(r, "result", self.sweep_of.get(r.id, "primal"), label=label)
        legend = "   ".join(text for key, text in LEGEND.items() if key in self.shown)
        head = [
            f"digraph {_quote(fn.name)} {{",
            f"  label={_quote(f'{fn.name}   ({legend})')} labelloc=t fontname=Helvetica "
            f"fontsize=11 compound=true",
            '  node [fontname=Helvetica fontsize=10 shape=box margin="0.08,0.03" height=0.3]',
            "  edge [fontname=Helvetica fontsize=9 arrowsize=0.6]",
        ]
        return Graph("\n".join(head + self.lines + self.edges + ["}"]) + "\n", fn.name, self.counts)

    def define(self, v: ssa.Value, dot_id: str, sweep: str, labeled: bool) -> None:
        self.defined[v.id] = (dot_id, labeled)
        self.sweep_of[v.id] = sweep

    def carried(self, v: ssa.Value, sweep: str) -> str:
        """The sweep of a value a region node defines: the node's, or in a primal node
        (forward mode's loops carry tangents beside primals) the value's own role's."""
        return _sweep_of_role(v.role) if sweep == "primal" else sweep

    def edge(self, v: ssa.Value, target: str, reader_sweep: str, label: str | None = None) -> None:
        source, labeled = self.defined[v.id]
        sweep = self.sweep_of[v.id]
        if sweep == reader_sweep or sweep != "primal":
            style = EDGE[sweep]
        else:
            style = READ_BY_OTHER_SWEEP
            self.shown.add("read")
        if label is None and labeled:
            label = self.name(v)
        text = f" label={_quote(label)}" if label else ""
        self.edges.append(f"  {source} -> {target} [{style}{text}]")

    def sweep(self, node: ssa.Node, inherited: str | None) -> str:
        """Which sweep a node belongs to: its region's; for a node with regions, the role
        of all it defines (forward mode's loops carry primals and tangents together: their
        nodes are classified one by one); else the role of what it defines or of a
        derivative it reads (a tape write of an adjoint defines nothing)."""
        if inherited is not None:
            return inherited
        roles = [_sweep_of_role(v.role) for v in node.outputs]
        if node.regions:
            return roles[0] if roles and len(set(roles)) == 1 else "primal"
        roles += [self.sweep_of.get(v.id, "primal") for v in node.inputs]
        return next((r for r in roles if r != "primal"), "primal")

    def block(self, block: ssa.Block, inherited: str | None, depth: int) -> str | None:
        """Draw the nodes of `block`; the DOT id of the first (None for an empty block)."""
        first = None
        for node in block.nodes:
            sweep = self.sweep(node, inherited)
            self.counts[sweep] += 1
            self.shown.add(sweep)
            if node.regions:
                dot_id = self.region_node(node, sweep, depth)
            else:
                dot_id = self.simple_node(node, sweep, depth)
            first = first or dot_id
        return first

    def label(self, node: ssa.Node, op_text: str) -> str:
        outs = ", ".join(self.name(v) for v in node.outputs)
        first = f"{outs} = {op_text}" if outs else op_text
        defaults = node.op.attr_defaults()
        attrs = [
            f"{k}={_short(repr(v))}"
            for k, v in node.attrs.items()
            if _simple(v) and defaults.get(k, object()) != v and node.op is not CONST
        ]
        lines = [first] + ([", ".join(attrs)] if attrs else []) + [_where(node.loc)]
        return "\n".join(line for line in lines if line)

    def tooltip(self, node: ssa.Node) -> str:
        loc = node.loc
        if loc is None:
            return ""
        text = f"{_where(loc)}: {loc.text.strip()}" if loc.text else _where(loc)
        return f" tooltip={_quote(text)}"

    def simple_node(self, node: ssa.Node, sweep: str, depth: int) -> str:
        pad = "  " * depth
        dot_id = self.new_id("n")
        style = STYLE[sweep]
        if node.op is CONST:
            value = node.attrs.get("name") or _short(repr(node.attrs.get("value")), 16)
            outs = ", ".join(self.name(v) for v in node.outputs)
            label = f"{outs} = {value}"
            font = EDGE[sweep].replace("color", "fontcolor")
            attrs = f"shape=plaintext fontsize=9 {font}"
        else:
            label = self.label(node, node.op.name)
            shape = " shape=cylinder" if node.op in TAPES + TAPE_ACCESS else ""
            if shape:
                self.shown.add("tapes")
            if node.op in TAPES:
                style = 'style=filled fillcolor="#e6e6e6" color="#6e6e6e"'
            attrs = f"{style}{shape}"
        self.lines.append(f"{pad}{dot_id} [label={_quote(label)} {attrs}{self.tooltip(node)}]")
        for v in node.inputs:
            self.edge(v, dot_id, sweep)
        for v in node.outputs:
            self.define(v, dot_id, sweep, labeled=len(node.outputs) > 1)
        return dot_id

    def region_node(self, node: ssa.Node, sweep: str, depth: int) -> str:
        """A cluster: entry node (inputs in, region parameters out), one sub-cluster per
        region when there are several, and an exit node (yields in, results out)."""
        self.counts["regions"] += 1
        pad = "  " * depth
        cluster = self.new_id("cluster_")
        reversed_ = " (reversed)" if node.attrs.get("reverse") else ""
        title = f"{node.op.name}{reversed_}"
        where = _where(node.loc)
        self.lines.append(f"{pad}subgraph {cluster} {{")
        self.lines.append(
            f"{pad}  label={_quote(f'{title}  {where}'.strip())} {CLUSTER[sweep]} "
            f"fontname=Helvetica fontsize=10 labeljust=l"
        )
        entry, exit_ = self.new_id("entry"), self.new_id("exit")
        attrs = [f"{k}={_short(repr(v))}" for k, v in node.attrs.items()
                 if _simple(v) and k != "reverse"]  # fmt: skip
        entry_label = "\n".join([title] + ([", ".join(attrs)] if attrs else []) + [where])
        self.lines.append(
            f"{pad}  {entry} [label={_quote(entry_label.strip())} shape=trapezium "
            f"{STYLE[sweep]}{self.tooltip(node)}]"
        )
        for v in node.inputs:
            self.edge(v, entry, sweep)
        names = REGION_NAMES.get(node.op, ())
        for k, region in enumerate(node.regions):
            for p in region.params:
                self.define(p, entry, self.carried(p, sweep), labeled=True)
            nested = len(node.regions) > 1
            inner = depth + (2 if nested else 1)
            name = names[k] if k < len(names) else f"region {k}"
            if nested:
                sub = self.new_id("cluster_")
                self.lines.append(f"{pad}  subgraph {sub} {{")
                self.lines.append(
                    f"{pad}    label={_quote(name)} {CLUSTER[sweep]} fontsize=9 labeljust=l"
                )
            first = self.block(region, None if sweep == "primal" else sweep, inner)
            if nested:
                self.lines.append(f"{pad}  }}")
                if first is not None and not region.params:  # a branch: control, no data
                    self.edges.append(
                        f"  {entry} -> {first} [{EDGE[sweep]} style=dotted lhead={sub} "
                        f"label={_quote(name)}]"
                    )
            is_condition = node.op is control.WHILE and k == 0
            for v in region.yields:
                label = "test" if is_condition else None
                self.edge(v, exit_, sweep, label=label)
        outs = ", ".join(self.name(v) for v in node.outputs)
        exit_label = f"{outs} = end {node.op.name}" if outs else f"end {node.op.name}"
        self.lines.append(
            f"{pad}  {exit_} [label={_quote(exit_label)} shape=invtrapezium {STYLE[sweep]}]"
        )
        if node.op in (control.FOR, control.WHILE):
            self.edges.append(
                f'  {exit_} -> {entry} [{EDGE[sweep]} style=dotted constraint=false label="loop"]'
            )
        for v in node.outputs:
            self.define(v, exit_, self.carried(v, sweep), labeled=len(node.outputs) > 1)
        self.lines.append(f"{pad}}}")
        return entry
