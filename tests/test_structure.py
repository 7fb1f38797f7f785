"""Tests of the compiler's shape (issue 13): imports point from a stage to the stages it
builds on, and what an operator is lives on the operator (its traits), not in lists of
names spread over the passes.

Both tests read the source with `ast`; nothing is imported. Where the goal is not reached
yet they compare against an explicit allowlist that may only shrink: a new import cycle
or a new operator-name comparison fails the test. When you remove one, lower the
allowlist too (the test says so).
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "adcompiler"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The adcompiler modules that module `name` imports, at module level or inside a
    function (an import inside a function is a dependency all the same)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        # `from adcompiler.ops import core` names the module adcompiler.ops.core
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # a submodule, or a name defined in `module`
                add(f"{module}.{alias.name}")
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # a package's __init__ runs before any of its submodules: `import adcompiler.ops.core`
    # imports `adcompiler.ops` first. That edge is not a design dependency (the package
    # only collects its parts), so it is left out; the package's own imports count.
    return graph


def _cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _short(names) -> str:
    return ", ".join(sorted(n.removeprefix("adcompiler.") for n in names))


# Import cycles that remain, as groups of modules that import each other (a strongly
# connected component of the import graph). It may only shrink: break a cycle by moving
# the helper both sides need to the module both build on, then delete the entry here.
ALLOWED_CYCLES: set[str] = {  # 4 at the start of issue 13, the largest of 16 modules
    # calls generates the forward/adjoint/tangent functions of helpers with the
    # transforms, which call back into it (reverse: forward_call, adjoint_call; forward:
    # resolve, tangent_function): the handlers of call nodes could be registered by calls
    "calls, forward, reverse",
    # the training loop starts the parallel engines, which run the loop
    "train.loop, train.parallel, train.parallel.job, train.parallel.local, train.parallel.mpi, "
    "train.parallel.run_local, train.parallel.server, train.parallel.sync, train.parallel.update",
}


def test_no_import_cycles():
    cycles = {_short(c) for c in _cycles(_graph())}
    new = cycles - ALLOWED_CYCLES
    assert not new, "import cycles among adcompiler's modules:\n" + "\n".join(sorted(new))
    gone = ALLOWED_CYCLES - cycles
    assert not gone, "these cycles are gone: remove them from ALLOWED_CYCLES:\n" + "\n".join(
        sorted(gone)
    )


def _is_op_name(expr: ast.expr, aliases: set[str]) -> bool:
    """`x.op.name`, `op.name`, or a local variable assigned one of those."""
    if isinstance(expr, ast.Name):
        return expr.id in aliases
    if not (isinstance(expr, ast.Attribute) and expr.attr == "name"):
        return False
    inner = expr.value
    return (isinstance(inner, ast.Attribute) and inner.attr == "op") or (
        isinstance(inner, ast.Name) and inner.id == "op"
    )


_STRING_TESTS = {"startswith", "endswith", "__contains__", "__eq__", "find", "index"}


def _name_comparisons(path: Path) -> int:
    """Comparisons of an operator's name with a string or a set of names, and lookups of
    a table keyed by operator names, in one file."""
    tree = ast.parse(path.read_text(), str(path))

    def own(scope: ast.AST):
        """The nodes of `scope` that are not inside a nested function."""
        todo = list(ast.iter_child_nodes(scope))
        while todo:
            node = todo.pop()
            yield node
            if not isinstance(node, (ast.FunctionDef, ast.Lambda)):
                todo.extend(ast.iter_child_nodes(node))

    count = 0
    for scope in ast.walk(tree):
        if not isinstance(scope, (ast.Module, ast.FunctionDef, ast.Lambda)):
            continue
        body = list(own(scope))
        aliases = {  # name = node.op.name (or `node.op.name if ... else ""`)
            t.id
            for n in body
            if isinstance(n, ast.Assign)
            and any(
                _is_op_name(v, set())
                for v in (
                    [n.value.body, n.value.orelse] if isinstance(n.value, ast.IfExp) else [n.value]
                )
            )
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for node in body:
            if isinstance(node, ast.Compare):
                count += any(_is_op_name(e, aliases) for e in (node.left, *node.comparators))
            elif isinstance(node, ast.Subscript):  # TABLE[node.op.name]
                count += _is_op_name(node.slice, aliases)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                # node.op.name.startswith("call")
                count += node.func.attr in _STRING_TESTS and _is_op_name(node.func.value, aliases)
    return count


# Operator-name comparisons that remain outside adcompiler/ops/, per file. It may only
# shrink: ask a trait of the operator (Op in ops/core.py) or compare the operator object
# (`node.op is SETITEM`) instead, then lower the number here.
ALLOWED_NAME_COMPARISONS: dict[str, int] = {  # 161 at the start of issue 13, now 1
    # not a test of what an operator is: runtime.EXTERNAL maps the name that generated code
    # calls a custom rule's function by to the function
    "custom.py": 1,
}


def _comparisons() -> Counter:
    counts: Counter = Counter()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("ops/"):
            continue
        n = _name_comparisons(path)
        if n:
            counts[rel] = n
    return counts


def test_no_operator_name_comparisons_outside_ops():
    counts = _comparisons()
    over = {f: n for f, n in counts.items() if n > ALLOWED_NAME_COMPARISONS.get(f, 0)}
    assert not over, (
        f"operator-name comparisons outside adcompiler/ops/ (ask a trait of the Op, or "
        f"compare the operator object): {over}, allowed {ALLOWED_NAME_COMPARISONS}"
    )
    under = {
        f: counts.get(f, 0) for f, n in ALLOWED_NAME_COMPARISONS.items() if counts.get(f, 0) < n
    }
    assert not under, f"fewer comparisons than allowed: lower ALLOWED_NAME_COMPARISONS to {under}"


def test_the_checks_see_what_they_look_for(tmp_path):
    """The detectors themselves: a cycle and each kind of name comparison is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == {frozenset("abc")}
    src = tmp_path / "m.py"
    src.write_text(
        "def f(node, op):\n"
        "    if node.op.name == 'for': pass\n"
        "    if op.name in ('a', 'b'): pass\n"
        "    name = node.op.name\n"
        "    if name not in SET: pass\n"
        "    x = TABLE[node.op.name]\n"
        "    if node.op is FOR: pass\n"
        "    if param.name in kwargs: pass\n"
        "    def g(n):\n"
        "        return n.op.name != 'x'\n"
        "    kind = node.op.name if node else ''\n"
        "    if kind == 'add' or node.op.name.startswith('call'): pass\n"
    )
    assert _name_comparisons(src) == 7


if __name__ == "__main__":
    print(sorted(_short(c) for c in _cycles(_graph())))
    print(dict(sorted(_comparisons().items())))
