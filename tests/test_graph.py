"""ad.graph and `adcompiler graph` (issue 17): the IR as a Graphviz picture.

The DOT text is read back with a small parser of the DOT language (statements, attribute
lists, quoted strings, nested subgraphs), so the structure is checked without Graphviz:
every node that `ad.ir` prints is a node of the picture with its operator and source
line, adjoint nodes have the adjoint style, loops and branches are clusters. Where
Graphviz's `dot` is installed it must accept the text and draw it; tests that need it
skip otherwise (.ci/run installs it).
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import adcompiler as ad
from adcompiler import cli, draw

ROOT = Path(__file__).resolve().parent.parent
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="Graphviz's dot is not installed (apt-get install graphviz; .ci/run installs it)",
)


def rnn(w, x):
    h = np.zeros(3)
    for t in range(4):
        h = np.tanh(w * h + x[t])
    if h[0] > 0:
        s = np.sum(h)
    else:
        s = np.sum(h * h)
    return s


def shrink(x):
    k = 0
    while k < 3:
        x = np.sin(x)
        k += 1
    return np.sum(x)


def contract(a, b):
    return np.sum(np.einsum("ij,jk->ik", a, b))


def layer(params, x):
    return np.sum(np.tanh(x @ params["W"] + params["b"]))


# ---------------------------------------------------------------------------
# A reader of the DOT language, enough for what adcompiler.draw writes
# ---------------------------------------------------------------------------

TOKEN = re.compile(r'\s*(?:(->|[{}\[\];=,])|"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_.#-]+))', re.S)


def tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        assert m, f"cannot read DOT at {text[pos : pos + 40]!r}"
        punct, quoted, word = m.groups()
        if punct:
            out.append(("p", punct))
        elif quoted is not None:
            out.append(("id", re.sub(r"\\(.)", lambda e: "\n" if e[1] == "n" else e[1], quoted)))
        else:
            out.append(("id", word))
        pos = m.end()
    return out


class Dot:
    """Nodes (id -> attributes and the chain of clusters holding it), edges, clusters."""

    def __init__(self, text: str):
        self.nodes: dict[str, dict] = {}
        self.cluster_of: dict[str, list[str]] = {}
        self.edges: list[tuple[str, str, dict]] = []
        self.clusters: dict[str, dict] = {}
        self.graph_attrs: dict[str, str] = {}
        self.toks = tokens(text)
        self.i = 0
        assert self.take() == "digraph"
        self.take()  # the name
        assert self.take() == "{"
        self.statements([])
        assert self.i == len(self.toks), "text after the graph's closing brace"

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.toks[self.i][1]
        self.i += 1
        return tok

    def attrs(self) -> dict:
        out = {}
        if self.peek() != "[":
            return out
        self.take()
        while self.peek() != "]":
            key = self.take()
            assert self.take() == "=", key
            out[key] = self.take()
            if self.peek() in (",", ";"):
                self.take()
        self.take()
        return out

    def statements(self, clusters: list[str]) -> None:
        while (tok := self.take()) != "}":
            if tok == "subgraph":
                name = self.take()
                assert self.take() == "{"
                self.clusters[name] = {"parents": list(clusters)}
                self.statements(clusters + [name])
            elif tok in ("node", "edge"):
                self.attrs()
            elif self.peek() == "=":
                self.take()
                value = self.take()
                target = self.clusters[clusters[-1]] if clusters else self.graph_attrs
                target[tok] = value
            elif self.peek() == "->":
                self.take()
                head = self.take()
                self.edges.append((tok, head, self.attrs()))
            else:
                assert tok not in self.nodes, f"node {tok} declared twice"
                self.nodes[tok] = self.attrs()
                self.cluster_of[tok] = list(clusters)
            if self.peek() == ";":
                self.take()

    def labels(self) -> list[str]:
        return [a.get("label", "") for a in self.nodes.values()]


def ir_lines(text: str) -> list[tuple[str, str, str]]:
    """(outputs, operator, file:line) of each node line that `ad.ir` prints."""
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*([^=]*?)\s*= (\w+)\((.*?)\)(?: \{(.*)\})?\s*(?:# (\S+))?$", line)
        if m and not line.lstrip().startswith(("function", "return", "yield", "region", "^")):
            outs = ", ".join(v.lstrip("%") for v in m[1].split(", ") if v)
            out.append((outs, m[2], m[4] or "", m[5] or ""))
    return out


def check_every_ir_node_drawn(g, picture: draw.Graph) -> Dot:
    dot = Dot(picture.source)
    lines = ir_lines(ad.ir(g))
    labels = dot.labels()
    assert lines
    for outs, op, attrs, where in lines:
        if op == "const":
            value = re.search(r"value=(.*)$", attrs)[1]
            expected = f"{outs} = {value}"
        elif op in ("for", "while", "if"):
            expected = f"{outs} = end {op}"  # the exit node defines the results
        else:
            expected = f"{outs} = {op}" if outs else op
        found = [lab for lab in labels if lab.split("\n")[0] == expected]
        assert found, f"{expected!r} ({where}) is not in the picture"
        if where and op != "const":
            node_where = where if op not in ("for", "while", "if") else None
            if node_where:
                assert any(lab.endswith(node_where) for lab in found), (expected, where)
    # one DOT node per IR node (n*: operators, entry*: if/for/while), plus parameters,
    # the return and one exit per region node
    drawn = [n for n in dot.nodes if re.fullmatch(r"(n|entry)\d+", n)]
    assert len(drawn) == len(lines)
    assert len([n for n in dot.nodes if n.startswith("exit")]) == sum(
        op in ("for", "while", "if") for _, op, _, _ in lines
    )
    for tail, head, _ in dot.edges:
        assert tail in dot.nodes and head in dot.nodes, (tail, head)
    return dot


# ---------------------------------------------------------------------------
# The picture's structure
# ---------------------------------------------------------------------------


def test_every_ir_node_of_a_gradient_is_drawn_with_operator_and_line():
    picture = ad.graph(rnn, wrt="w")
    dot = check_every_ir_node_drawn(ad.grad(rnn, wrt="w"), picture)
    line = inspect.getsourcelines(rnn)[1] + 3  # h = np.tanh(w * h + x[t])
    assert any(lab == f"h.3 = tanh\ntest_graph.py:{line}" for lab in dot.labels())
    # the user's line as the tooltip (shown on hover in the SVG)
    tooltips = [a.get("tooltip") for a in dot.nodes.values()]
    assert f"test_graph.py:{line}: h = np.tanh(w * h + x[t])" in tooltips


def test_adjoint_nodes_have_the_adjoint_style_and_primal_nodes_the_primal_one():
    dot = Dot(ad.graph(rnn, wrt="w").source)
    adjoint_fill = re.search(r'fillcolor="([^"]+)"', draw.STYLE["adjoint"])[1]
    primal_fill = re.search(r'fillcolor="([^"]+)"', draw.STYLE["primal"])[1]
    styled = {}
    for attrs in dot.nodes.values():
        styled[attrs.get("label", "").split("\n")[0]] = attrs.get("fillcolor")
    assert styled["h_bar.3, w_bar.1 = end for"] == adjoint_fill
    assert styled["add_multiply_bar = multiply"] == adjoint_fill
    assert styled["h.4 = tape_get"] == adjoint_fill  # a read of a tape in the adjoint loop
    assert styled["h = zeros"] == primal_fill
    assert styled["h.3 = tanh"] == primal_fill
    adjoint_text = re.search(r'color="([^"]+)"', draw.EDGE["adjoint"])[1]
    bars = [a for a in dot.nodes.values() if re.match(r"\w+_bar", a.get("label", ""))]
    assert len(bars) > 8
    for a in bars:  # constants are text in the sweep's colour
        assert a.get("fillcolor") == adjoint_fill or a.get("fontcolor") == adjoint_text, a
    # the primal loop is drawn before the adjoint sweep and holds no adjoint node
    counts = repr(ad.graph(rnn, wrt="w"))
    assert "27 primal, 26 adjoint, 4 regions" in counts  # check_real(x) is one


def test_loops_and_branches_are_clusters_holding_their_regions():
    dot = Dot(ad.graph(rnn, wrt="w").source)
    titles = {name: c.get("label", "").split("  ")[0] for name, c in dot.clusters.items()}
    assert sorted(t for t in titles.values() if t in ("for", "for (reversed)", "if")) == [
        "for", "for (reversed)", "if", "if",
    ]  # fmt: skip
    assert sorted(t for t in titles.values() if t in ("then", "else")) == [
        "else", "else", "then", "then",
    ]  # fmt: skip
    (loop,) = [n for n, t in titles.items() if t == "for"]
    inside = {dot.nodes[n]["label"].split("\n")[0] for n in dot.nodes if loop in dot.cluster_of[n]}
    assert {"h.3 = tanh", "add_multiply = add", "multiply_w = multiply"} <= inside
    assert "h = zeros" not in inside
    # a branch: nested cluster inside the if's
    (branch,) = [n for n, t in titles.items() if t == "else" and n in _primal(dot)]
    assert dot.clusters[branch]["parents"][-1] in dot.clusters
    # a loop-carried edge from the loop's exit back to its entry
    assert any(t.startswith("exit") and h.startswith("entry") for t, h, _ in dot.edges)


def _primal(dot: Dot) -> set[str]:
    return {n for n, c in dot.clusters.items() if "dashed" not in c.get("style", "")}


def test_while_has_condition_and_body_clusters():
    picture = ad.graph(shrink)
    dot = check_every_ir_node_drawn(ad.grad(shrink), picture)
    titles = [c.get("label", "").split("  ")[0] for c in dot.clusters.values()]
    assert {"while", "condition", "body", "for (reversed)"} <= set(titles)
    assert "tapes" in dot.graph_attrs["label"]  # the legend names what the picture holds


def test_primal_only_draws_the_function_itself():
    picture = ad.graph(rnn, primal_only=True)
    dot = check_every_ir_node_drawn(rnn, picture)
    assert "adjoint" not in picture.source.split("\n", 2)[1]  # not in the legend
    assert not [lab for lab in dot.labels() if "_bar" in lab]
    assert "adjoint" not in repr(picture) and "2 regions" in repr(picture)
    with pytest.raises(ValueError, match="primal_only"):
        ad.graph(rnn, wrt="w", primal_only=True)


def test_a_generated_function_is_drawn_as_what_it_computes():
    assert ad.graph(ad.grad(rnn, wrt="w")).source == ad.graph(rnn, wrt="w").source
    with pytest.raises(ValueError, match="generated function"):
        ad.graph(ad.grad(rnn, wrt="w"), wrt="x")
    picture = ad.graph(ad.jvp(rnn))  # forward mode: tangents in their own style
    dot = check_every_ir_node_drawn(ad.jvp(rnn), picture)
    tangent_fill = re.search(r'fillcolor="([^"]+)"', draw.STYLE["tangent"])[1]
    dots = [a for a in dot.nodes.values() if re.match(r"\w+_dot", a.get("label", ""))]
    assert dots and all(a["fillcolor"] == tangent_fill for a in dots)


def test_a_gradient_over_a_dict_of_arrays_takes_example_arguments():
    params = {"W": np.ones((3, 2)), "b": np.zeros(2)}
    picture = ad.graph(layer, params, np.ones((4, 3)), wrt="params")
    labels = Dot(picture.source).labels()
    assert any(lab.startswith("W_bar") for lab in labels)
    assert any(lab.startswith("b_bar") for lab in labels)


def test_quotes_and_arrows_in_labels_are_escaped():
    dot = Dot(ad.graph(contract).source)  # einsum's subscripts: "ij,jk->ik"
    assert any("ij,jk->ik" in lab for lab in dot.labels())
    assert draw._quote('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'
    assert tokens(draw._quote('a "b" \\ c\nd')) == [("id", 'a "b" \\ c\nd')]


# ---------------------------------------------------------------------------
# Rendering: dot, its absence, the graphviz package
# ---------------------------------------------------------------------------


@needs_dot
def test_dot_accepts_the_text_and_draws_svg_and_png(tmp_path):
    picture = ad.graph(rnn, wrt="w")
    done = subprocess.run(["dot", "-Tcanon"], input=picture.source, capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
    svg = picture.render(tmp_path / "rnn.svg").read_text()
    assert "<svg" in svg and "h.3 = tanh" in svg and "for (reversed)" in svg
    assert picture._repr_svg_().lstrip().startswith("<?xml")
    png = picture.render(tmp_path / "rnn.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_without_dot_the_text_still_works_and_images_say_how_to_get_dot(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    picture = ad.graph(rnn, wrt="w")
    assert picture._repr_svg_() is None  # Jupyter shows the text instead
    assert picture.render(tmp_path / "rnn.dot").read_text() == picture.source
    with pytest.raises(draw.DotNotFoundError, match="apt-get install graphviz"):
        picture.render(tmp_path / "rnn.svg")
    assert not (tmp_path / "rnn.svg").exists()
    with pytest.raises(ValueError, match="suffix"):
        picture.render(tmp_path / "rnn.jpg")


def test_to_graphviz_needs_the_optional_package(monkeypatch):
    picture = ad.graph(rnn, wrt="w")
    monkeypatch.setitem(sys.modules, "graphviz", None)  # as if not installed
    with pytest.raises(ImportError, match=r"adcompiler\[graph\]"):
        picture.to_graphviz()


def test_to_graphviz_gives_a_graphviz_source():
    graphviz = pytest.importorskip("graphviz", reason="the optional graphviz package")
    picture = ad.graph(rnn, wrt="w")
    source = picture.to_graphviz()
    assert isinstance(source, graphviz.Source) and source.source == picture.source


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------

MODEL = textwrap.dedent(
    """
    import numpy as np

    def loss(w, b, x):
        h = np.tanh(x @ w + b)
        for _ in range(2):
            h = np.tanh(h)
        return np.sum(h * h)
    """
)


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.py").write_text(MODEL)
    return tmp_path


def test_cli_writes_dot_text(model, capsys):
    assert cli.main(["graph", "model.py:loss", "--wrt", "w,b", "-o", "loss.dot"]) == 0
    dot = Dot((model / "loss.dot").read_text())
    assert any(lab.startswith("w_bar") for lab in dot.labels())
    assert any(c.get("label", "").startswith("for") for c in dot.clusters.values())
    assert "wrote loss.dot" in capsys.readouterr().err
    assert cli.main(["graph", "model.py:loss", "--primal"]) == 0  # to standard output
    primal = Dot(capsys.readouterr().out)
    assert not [lab for lab in primal.labels() if "_bar" in lab]


@needs_dot
def test_cli_writes_svg_and_png(model):
    assert cli.main(["graph", "model.py:loss", "--wrt", "w", "-o", "loss.svg"]) == 0
    assert "<svg" in (model / "loss.svg").read_text()
    assert cli.main(["graph", "model.py:loss", "-o", "loss.png"]) == 0
    assert (model / "loss.png").read_bytes().startswith(b"\x89PNG")


def test_cli_without_dot_fails_with_one_line_exit_2(model, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(model))
    assert cli.main(["graph", "model.py:loss", "--wrt", "w", "-o", "loss.svg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("adcompiler: error: -o loss.svg: ")
    assert "apt-get install graphviz" in err and ".dot" in err
    shown = re.search(r"^(adcompiler: error: -o loss\.svg: .*)$",
                      (ROOT / "docs" / "cli.md").read_text(), re.M)[1]  # fmt: skip
    assert err.strip() == shown  # docs/cli.md shows the line as printed
    assert not (model / "loss.svg").exists()
    assert cli.main(["graph", "model.py:loss", "--wrt", "w", "-o", "loss.dot"]) == 0


def test_cli_refuses_an_unknown_suffix_and_primal_with_wrt(model, capsys):
    assert cli.main(["graph", "model.py:loss", "-o", "loss.jpg"]) == 2
    assert ".svg" in capsys.readouterr().err
    assert cli.main(["graph", "model.py:loss", "--primal", "--wrt", "w"]) == 2
    assert "--primal" in capsys.readouterr().err


def test_cli_graph_runs_as_a_program(model):
    done = subprocess.run(
        [sys.executable, "-m", "adcompiler", "graph", "model.py:loss", "--wrt", "b"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert any(lab.startswith("b_bar") for lab in Dot(done.stdout).labels())


# ---------------------------------------------------------------------------
# docs/graph.md
# ---------------------------------------------------------------------------


def test_docs_page_shows_the_mlp_picture_made_by_the_documented_command(tmp_path):
    page = (ROOT / "docs" / "graph.md").read_text()
    image = re.search(r"!\[[^\]]*\]\(([^)]+)\)", page)[1]
    assert (ROOT / "docs" / image).read_text().lstrip().startswith("<?xml")
    command = re.search(r"^(adcompiler graph adcompiler/samples/mlp_digits\.py:loss .*)$", page,
                        flags=re.M)[1]  # fmt: skip
    args = command.split()[1:]
    assert args[args.index("-o") + 1] == f"docs/{image}"
    args[args.index("-o") + 1] = str(tmp_path / "mlp.dot")
    done = subprocess.run(
        [sys.executable, "-m", "adcompiler", *args], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PATH": ""}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    labels = Dot((tmp_path / "mlp.dot").read_text()).labels()
    for name in ("W1_bar", "b1_bar", "W3_bar", "h1 = maximum", "logits = add"):
        assert any(lab.startswith(name) for lab in labels), name


@needs_dot
def test_docs_page_python_example_runs(tmp_path):
    (block,) = re.findall(r"^```python\n(.*?)^```", (ROOT / "docs" / "graph.md").read_text(),
                          flags=re.S | re.M)  # fmt: skip
    (tmp_path / "example.py").write_text(block)
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('digraph "loss"')
    assert "<svg" in (tmp_path / "loss.svg").read_text()
    assert (tmp_path / "loss.dot").read_text().startswith('digraph "loss"')
