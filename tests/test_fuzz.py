"""The differential random-program fuzzer (tests/fuzz.py): its generator, its minimizer,
and a fixed-seed batch that must find nothing wrong and nothing that crashes.

The batch also replays the minimized programs of the failures the fuzzer has found
(REGRESSIONS below, one per root cause). Run any number of programs from the command line:

    python tests/fuzz.py --programs 1000 --seed 7 --jobs 2 --out /tmp/fuzz-failures
"""

import ast
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import fuzz  # noqa: E402

BATCH_SEED = 12
BATCH_PROGRAMS = 60  # about a minute on one core
BATCH_TIME_LIMIT = 30.0

# Minimized failures (tests/fuzz.py found them; one per root cause; the self-contained
# scripts are in the lead's /work/fuzz_findings), replayed by the batch:
# (name, params, wrt, mode, body of the module: `f` returns a scalar, `fj` an array).
REGRESSIONS = [
    ("tangent of scalar-valued call + array not broadcast (jvp)",
     [("A", "MN"), ("x", "N")], ("A",), "jacobian_fwd",
     "def fj(A, x):\n    return x + np.mean(A)\n\n"
     "def f(A, x):\n    return np.sum(fj(A, x))\n"),
    ("tangent of float(s) + array not broadcast (hvp)",
     [("x", "N"), ("s", "S")], ("s",), "hvp",
     "def f(x, s):\n    t = float(s) + x\n    return np.sum(t * t)\n\nfj = f\n"),
    ("ndarray subclass: specialized version reused for new shapes",
     [("y", "N")], ("y",), "grad",
     "def f(y):\n    return np.mean(np.clip(y, -0.8, 0.8))\n\nfj = f\n"),
    ("specialized hvp of an elementwise chain",
     [("x", "N"), ("s", "S")], ("s",), "hvp",
     "def f(x, s):\n    return np.exp(-(s * s)) + np.arcsin(0.9 * np.tanh(s))\n\nfj = f\n"),
    ("while loop, loop-invariant assignment, zero trips",
     [("x", "N"), ("y", "N")], ("x",), "grad",
     "def f(x, y):\n    v = x * 2.0\n    j = 0\n"
     "    while j < 4 and np.sum(np.square(v)) < 4.0:\n        j = j + 1\n        v = y\n"
     "    return np.mean(v)\n\nfj = f\n"),
    ("loop-invariant assignment in a loop under an if (compile KeyError)",
     [("s", "S"), ("x", "N")], ("x",), "grad",
     "def f(s, x):\n    A = 2.0 * x\n    if s > -10.0:\n        for i in range(2):\n"
     "            A = x * 1.0\n    return np.sum(A * A)\n\nfj = f\n"),
    ("generator expression in a while condition (compile KeyError)",
     [("x", "N")], ("x",), "grad",
     "def f(x):\n    j = 0\n    while j < 2 and sum(u for u in x) > 0.8:\n"
     "        j = j + 1\n    return np.sum(x * x)\n\nfj = f\n"),
    ("write into an argument in a loop, accepted",
     [("b", "N")], ("b",), "grad",
     "def f(b):\n    for i in range(2):\n        b[i] = 2.0 * b[i]\n"
     "    return np.sum(np.tanh(b))\n\nfj = f\n"),
    ("+= on a dict item that is an argument, accepted",
     [("x", "N")], ("x",), "grad",
     "def f(x):\n    d = {'a': x}\n    d['a'] += 1.0\n    return np.sum(x * x)\n\nfj = f\n"),
    ("vjp writes into the caller's cotangent (jacobian rows wrong)",
     [("x", "N")], ("x",), "jacobian",
     "def fj(x):\n    acc = 0.0\n    for i in range(2):\n        acc = sum(u for u in x)\n"
     "    return x + acc\n\ndef f(x):\n    return np.sum(fj(x))\n"),
    ("helper rebinding its parameter to a module constant in an if (VerifyError)",
     [("x", "N")], ("x",), "grad",
     "SCALE = 0.75\n\ndef h(a0):\n    if np.max(a0) > 0.0:\n        a0 = SCALE\n"
     "    return np.mean(a0)\n\ndef f(x):\n    return h(x) + np.sum(x)\n\nfj = f\n"),
    ("write into a read-only array (other data)",
     [("y", "N"), ("s", "S"), ("x", "N")], ("s",), "grad",
     "def f(y, s, x):\n    z1 = np.zeros_like(y)\n    z1[1] = s\n"
     "    z1[1:] = np.repeat(x, 2)[::2][1:]\n    j2 = 0\n"
     "    while j2 < 3 and np.sum(y) < 0.3:\n        j2 = j2 + 1\n"
     "        for u3, w4 in zip(y, y + y):\n            w4 = np.sum(z1[[0, 1, 0]])\n"
     "            z1 = np.minimum(z1, x)\n        z1 = z1\n"
     "    return np.sum(np.sin(np.expm1(np.tanh(np.hstack([y[:1], y[1:]]))) + 0.1 * np.mean(z1)))"
     "\n\nfj = f\n"),
    ("a variable that is a vector or a matrix by the data, then a while loop",
     [("x", "N"), ("A", "MN")], ("A",), "grad",
     "def f(x, A):\n    v2 = 7.5 + A[:, 0]\n    v3 = x[0]\n"
     "    v2 = v2 if np.sum(x) < 1.0 else A\n    j6 = 0\n"
     "    while j6 < 4 and np.sum(v2) < 4.0:\n        j6 = j6 + 1\n"
     "        v2 = np.logaddexp(A, A).dot(np.divide(x, 2.0 + np.cos(x)))\n"
     "    return np.linalg.norm(x + 0.1 * np.mean(A) + 0.1 * np.mean(v2))\n\nfj = f\n"),
    ("hvp of norm at zero is nan",
     [("y", "N")], ("y",), "hvp",
     "def f(y):\n    b = y\n    return np.linalg.norm(b - b)\n\nfj = f\n"),
    ("helper called by name, first module",
     [("s", "S"), ("x", "N"), ("A", "MN")], ("x",), "grad",
     "def h0(a0, a1):\n    v1 = a1\n    return sum([0.5, v1])\n\n"
     "def f(s, x, A):\n    acc = s\n    for i in range(2):\n        if x[i] > 0.8:\n"
     "            pass\n        acc = h0(A, A)\n    return np.sum(A) + np.sum(x * x)\n\nfj = f\n"),
    ("helper called by name, second module (same helper name)",
     [("s", "S"), ("x", "N"), ("A", "MN")], ("x",), "grad",
     "def h0(a0, a1):\n    v1 = a1\n    return sum([1.5, v1])\n\n"
     "def f(s, x, A):\n    acc = s\n    for i in range(2):\n        if x[i] > 0.8:\n"
     "            pass\n        acc = h0(A, A)\n    return np.sum(A) + np.sum(x * x)\n\nfj = f\n"),
]  # fmt: skip


def test_generator_is_deterministic():
    for i in range(20):
        a, b = fuzz.generate(5, i), fuzz.generate(5, i)
        assert a.sources == b.sources and a.wrt == b.wrt and a.params == b.params
    assert fuzz.generate(5, 0).sources != fuzz.generate(6, 0).sources


def test_programs_are_valid_python():
    for i in range(300):
        prog = fuzz.generate(3, i)
        for name, text in prog.sources.items():
            ast.parse(text, filename=name)
        assert set(prog.wrt) <= {p for p, _ in prog.params}


def test_generator_covers_every_construct_family():
    seen = set()
    for i in range(400):
        seen |= fuzz.generate(4, i).families
    assert set(fuzz.FAMILIES) <= seen, set(fuzz.FAMILIES) - seen


def test_every_simplification_of_a_program_parses():
    prog = fuzz.generate(1, 3)
    text = prog.sources[prog.main]
    count = 0
    while True:
        edit = fuzz._Edit(count)
        tree = edit.visit(ast.parse(text))
        if count >= edit.count:
            break
        ast.unparse(ast.fix_missing_locations(tree))
        count += 1
    assert count > 20


def test_outcomes_are_classified():
    """A program that must be refused is refused, cleanly; a plain one is correct."""
    refused = fuzz.Program(
        0, 0, {"fz_refused": "import numpy as np\n\ndef f(x):\n    x[0] = 1.0\n"
                             "    return np.sum(x)\nfj = f\n"},
        [("x", "N")], ("x",), "N", must_refuse=True,
    )  # fmt: skip
    assert {o.kind for o in fuzz.run_program(refused, ("grad",))} == {"refused"}
    plain = fuzz.Program(
        0, 1, {"fz_plain": "import numpy as np\n\ndef f(x, s):\n    return np.sum(np.tanh(x) * s)"
                           "\n\ndef fj(x, s):\n    return np.tanh(x) * s\n"},
        [("x", "N"), ("s", "S")], ("x", "s"), "N",
    )  # fmt: skip
    upto = [label for label, *_ in fuzz.SEQUENCE].index("scalars as np.float64, again")
    outcomes = fuzz.run_program(plain, ("grad", "jvp", "jacobian"), upto=upto)
    assert [o.kind for o in outcomes] == ["correct"] * 3, outcomes


def _regression_outcomes():
    out = []
    for k, (name, params, wrt, mode, body) in enumerate(REGRESSIONS):
        sources = {f"fz_regression_{k}": "import numpy as np\n\n\n" + body}
        prog = fuzz.Program(1, k, sources, params, wrt, "N")
        for o in fuzz.run_program(prog, (mode,), BATCH_TIME_LIMIT):
            out.append((name, o))
    return out


def test_fixed_seed_batch_finds_nothing_wrong():
    start = time.time()
    bad = []
    for _, index, outcomes, _, _ in fuzz.run_batch(BATCH_SEED, BATCH_PROGRAMS,
                                                   time_limit=BATCH_TIME_LIMIT):
        bad += [(f"program {index}", o) for o in outcomes if o.kind in ("crash", "wrong")]
    bad += [(name, o) for name, o in _regression_outcomes() if o.kind in ("crash", "wrong")]
    report = "\n".join(f"{where}: {o.kind} in {o.mode} at '{o.step}': {o.cause}: "
                       f"{o.detail.strip().splitlines()[-1][:200] if o.detail else ''}"
                       for where, o in bad)  # fmt: skip
    assert not bad, f"{len(bad)} failures in {time.time() - start:.0f} s:\n{report}"


def test_regressions_are_valid_programs():
    """Each kept failure is a valid program whose plain function runs on the fuzzer's data."""
    for k, (name, params, wrt, mode, body) in enumerate(REGRESSIONS):
        assert mode in fuzz.MODES and set(wrt) <= {p for p, _ in params}, name
        sources = {f"fz_regression_check_{k}": "import numpy as np\n\n\n" + body}
        prog = fuzz.Program(1, k, sources, params, wrt, "N")
        with fuzz.loaded(prog) as (mod, _):
            refs = fuzz.references(prog, mod)
        assert any(r is not None for r in refs.values()), name
