"""Arrays a value-and-gradient creates per call: adcompiler's against the hand-written one.

    python -m benchmarks.temporaries [--workload W] [--size S] [--sites]

Issue 4 asks that the generated gradient of every benchmark workload make no
temporary array that a hand-written gradient would not. This counts them. Each
function's source is rewritten so that every call, arithmetic, unary and
indexing expression passes its result through a recorder; a result that is a NumPy array
whose memory (its own, or its base's) was not seen before in the call is a new
array. Views
(slices, ``.T``, reshapes), results written into a given ``out=`` buffer and
in-place updates (``a += b``) make none. The count is exact for the function's
own statements; a helper called from it (``zero_like``, ``unindex``) counts as
one new array if it returns one.

Both functions run on the same inputs; adcompiler's is the version the
training loop runs (specialized, from the second call on). The table gives the
number of new arrays per call and their bytes; ``--sites`` lists, for the
generated code, how many arrays each source line made.
"""

import argparse
import ast
import inspect
import sys
import textwrap
import weakref
from collections import Counter

import numpy as np

import adcompiler as ad
from benchmarks import workloads
from benchmarks.methods import argument_names

_RECORD = "_temporaries_record"


class Recorder:
    """Counts the new arrays results show; ``sites`` by source line."""

    def __init__(self):
        self.count = 0
        self.nbytes = 0
        self.sites = Counter()
        self.site_bytes = Counter()
        self._seen = {}

    def see(self, value):
        if isinstance(value, np.ndarray):
            self._seen[id(value)] = weakref.ref(value)

    def __call__(self, value, line):
        if isinstance(value, np.ndarray):
            root = value  # the array that owns the memory (fancy indexing may return a
            while isinstance(root.base, np.ndarray):  # view of a new internal array)
                root = root.base
            known = self._seen.get(id(root))
            if known is None or known() is not root:
                self.see(root)
                self.count += 1
                self.nbytes += root.nbytes
                self.sites[line] += 1
                self.site_bytes[line] += root.nbytes
        return value


class _Wrap(ast.NodeTransformer):
    def __init__(self, lines):
        self.lines = lines

    def _wrapped(self, node):
        self.generic_visit(node)
        line = self.lines[node.lineno - 1].strip()
        return ast.Call(
            func=ast.Name(id=_RECORD, ctx=ast.Load()),
            args=[node, ast.Constant(value=line)],
            keywords=[],
        )

    visit_Call = visit_BinOp = visit_UnaryOp = _wrapped

    def visit_Subscript(self, node):  # x[mask], x[:, idx]: a copy; x[1:]: a view
        return self._wrapped(node) if isinstance(node.ctx, ast.Load) else self.generic_visit(node)


def count(function, args, source=None):
    """``Recorder`` after one call of ``function(*args)``, its source (or ``source``)
    rewritten so that every new array it makes is counted."""
    source = textwrap.dedent(source or inspect.getsource(function))
    tree = ast.parse(source)
    definition = tree.body[0]
    definition.decorator_list = []
    definition.body = [_Wrap(source.splitlines()).visit(statement) for statement in definition.body]
    recorder = Recorder()
    for value in args:
        recorder.see(value)
    scope = dict(function.__globals__)
    scope[_RECORD] = recorder
    exec(compile(ast.fix_missing_locations(tree), f"<counted {definition.name}>", "exec"), scope)
    scope[definition.name](*args)
    return recorder


def measure(workload, size):
    """``(hand, adcompiler)`` recorders for one call on the workload's inputs of ``size``."""
    inputs = workload.make_inputs(size)
    args = [inputs[name] for name in argument_names(workload)]
    function = ad.value_and_grad(workload.primal, wrt=workload.WRT)
    function(*args)
    function(*args)  # the second call makes the specialized version training runs
    running = getattr(function, "latest", function)
    return count(workload.value_and_grad, args), count(running, args, ad.source(function))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(workloads.WORKLOADS), action="append")
    parser.add_argument("--size", choices=workloads.SIZE_NAMES, action="append")
    parser.add_argument("--sites", action="store_true", help="counts per source line")
    options = parser.parse_args(argv)
    names = options.workload or list(workloads.WORKLOADS)
    sizes = options.size or list(workloads.SIZE_NAMES)
    print("| workload | size | hand: arrays / KiB | adcompiler: arrays / KiB |")
    print("|---|---|---|---|")
    reports = []
    for name in names:
        workload = workloads.get(name)
        for size in sizes:
            hand, mine = measure(workload, size)
            label = workload.SIZE_LABELS[size]
            print(
                f"| {name} | {label} | {hand.count} / {hand.nbytes / 1024:.1f}"
                f" | {mine.count} / {mine.nbytes / 1024:.1f} |"
            )
            reports.append((name, label, hand, mine))
    if options.sites:
        for name, label, hand, mine in reports:
            for who, recorder in (("hand", hand), ("adcompiler", mine)):
                print(f"\n{name} {label}, {who}: new arrays per line")
                for line, number in recorder.sites.most_common():
                    print(f"  {number:5d} {recorder.site_bytes[line] / 1024:9.1f} KiB  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
