"""Where a value-and-gradient spends its time, statement by statement.

    python -m benchmarks.profile_lines --workload gmm --size large [--top 15]

Profiles adcompiler's generated function and the hand-written one on the same
inputs: each statement of the function body is wrapped in a timer (inside
loops and branches too; a loop's line is the whole loop, its body's lines are
indented under it), the function is run many times, and the
costliest statements are printed with their share of the total. This is how to
find which temporaries or which helper calls make generated code slower than
hand-written code. Run it with ``OPENBLAS_NUM_THREADS=1`` to match the harness.
"""

import argparse
import ast
import inspect
import sys
import textwrap
import time

from benchmarks import workloads
from benchmarks.methods import argument_names

_TIMER, _TOTALS, _START = "_profile_clock", "_profile_totals", "_profile_start"


def instrument(source, namespace, name):
    """``(function, statements, totals)``: ``name`` from ``source`` with each statement timed.

    Statements inside ``for``, ``while`` and ``if`` are timed too (and the compound
    statement as a whole); ``statements`` holds their first lines, indented by depth.
    """
    tree = ast.parse(textwrap.dedent(source))
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef))
    statements = []
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    function.body = _timed_block(body, statements, depth=0)
    function.decorator_list = []
    scope = dict(namespace)
    scope[_TIMER] = time.perf_counter
    scope[_TOTALS] = [0.0] * len(statements)
    exec(compile(ast.fix_missing_locations(tree), f"<profiled {name}>", "exec"), scope)
    return scope[function.name], statements, scope[_TOTALS]


def _timed_block(block, statements, depth):
    timed = []
    start_name = f"{_START}_{depth}"
    for statement in block:
        index = len(statements)
        statements.append("  " * depth + ast.unparse(statement).splitlines()[0])
        if isinstance(statement, ast.For | ast.While | ast.If):
            statement.body = _timed_block(statement.body, statements, depth + 1)
            statement.orelse = _timed_block(statement.orelse, statements, depth + 1)
        start = ast.parse(f"{start_name} = {_TIMER}()").body
        stop = ast.parse(f"{_TOTALS}[{index}] += {_TIMER}() - {start_name}").body
        if isinstance(statement, ast.Return):
            value = ast.parse("_profile_result = 0").body[0]
            value.value = statement.value
            timed += start + [value] + stop + ast.parse("return _profile_result").body
        else:
            timed += start + [statement] + stop
    return timed


def profile(function, source, namespace, args, seconds):
    profiled, statements, totals = instrument(source, namespace, function.__name__)
    profiled(*args)
    for index in range(len(totals)):
        totals[index] = 0.0
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        profiled(*args)
        calls += 1
    batch, batches = max(1, calls // 5), []
    for _ in range(5):
        plain_start = time.perf_counter()
        for _ in range(batch):
            function(*args)
        batches.append((time.perf_counter() - plain_start) / batch)
    plain = min(batches)
    return [(total / calls, text) for total, text in zip(totals, statements, strict=True)], plain


def show(title, rows, plain, top):
    total = sum(seconds for seconds, text in rows if not text.startswith(" "))
    print(f"\n{title}: {plain * 1e6:.1f} us per call ({len(rows)} statements; "
          f"{total * 1e6:.1f} us with timers)")  # fmt: skip
    for seconds, text in sorted(rows, reverse=True)[:top]:
        print(f"  {seconds * 1e6:9.1f} us {100 * seconds / total:5.1f}%  {text[:110]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True, choices=list(workloads.WORKLOADS))
    parser.add_argument("--size", default="large", choices=workloads.SIZE_NAMES)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=2.0)
    options = parser.parse_args(argv)
    workload = workloads.get(options.workload)
    inputs = workload.make_inputs(options.size)
    args = tuple(inputs[name] for name in argument_names(workload))

    hand = workload.value_and_grad
    rows, plain = profile(hand, inspect.getsource(hand), hand.__globals__, args, options.seconds)
    show("hand-written", rows, plain, options.top)

    import adcompiler

    generated = adcompiler.value_and_grad(workload.primal, wrt=workload.WRT)
    generated(*args), generated(*args)  # the second call makes the specialized version
    function = getattr(generated, "latest", generated)  # the version that runs
    source = adcompiler.source(generated)
    rows, plain = profile(function, source, function.__globals__, args, options.seconds)
    show("adcompiler", rows, plain, options.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
