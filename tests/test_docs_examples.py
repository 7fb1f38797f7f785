"""The Python examples of docs/ run as written (issue 16): training.md, cli.md, forward.md
(its excerpts of generated code are what adcompiler generates), subset.md; and what
docs/cli.md shows the command line printing is what it prints."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def code_blocks(page: str, language: str = "python") -> list[str]:
    text = (DOCS / page).read_text()
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `code` as a script file (adcompiler reads the source of what it differentiates)."""
    script = cwd / "example.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script)], cwd=cwd, env=env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_training_page_examples_run_in_order(tmp_path):
    """The page's blocks run one after the other in one namespace, as a reader would."""
    blocks = code_blocks("training.md")
    assert len(blocks) >= 3
    checks = (
        "\nassert result.history['val_my_accuracy'][-1] > 0.6, result.history\n"
        "assert os.path.exists('run.ckpt')\n"
        "np.testing.assert_allclose(fitted.params['w'], [1.0, 2.0, 3.0], atol=1e-5)\n"
        "np.testing.assert_allclose(fitted.params['b'], 0.5, atol=1e-5)\n"
        "assert state['step'] == 1\n"
    )
    completed = run_python("import os\n" + "\n".join(blocks) + checks, tmp_path)
    assert completed.returncode == 0, completed.stderr


def test_cli_page_grad_example(tmp_path):
    model, use = code_blocks("cli.md")
    (tmp_path / "model.py").write_text(model)
    text = (DOCS / "cli.md").read_text()
    command = re.search(r"`adcompiler (grad model\.py:loss [^`]*)`", text).group(1).split()
    emitted = subprocess.run(
        [sys.executable, "-m", "adcompiler", *command], cwd=tmp_path, env=env(),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert emitted.returncode == 0, emitted.stderr
    checks = "\nimport json\nprint(json.dumps([dw.tolist(), float(db)]))\n"
    completed = run_python("import sys\nsys.modules['adcompiler'] = None\n" + use + checks,
                           tmp_path)  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    dw, db = eval(completed.stdout)  # noqa: S307 - our own JSON of numbers
    # loss = mean((x @ w + b - y)**2) at w = 0, b = 0.5, x = 1, y = 0: the residual is 0.5
    np.testing.assert_allclose(dw, [1.0, 1.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(db, 1.0, rtol=1e-12)


def test_cli_page_error_lines_are_what_the_cli_prints(tmp_path):
    text = (DOCS / "cli.md").read_text()
    shown = re.search(r"^(adcompiler train: error: argument --batch-size.*)$", text, re.M).group(1)
    completed = subprocess.run(
        [sys.executable, "-m", "adcompiler", "train", "mlp_digits", "--batch-size", "0"],
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr.strip() == shown


def test_subset_page_two_phases_of_errors(tmp_path):
    """docs/subset.md: problems are reported all at once within a phase: refused
    constructs first, missing rules only once those are fixed."""
    model = tmp_path / "phases.py"
    model.write_text(
        "import numpy as np\n\n"
        "def f(x):\n"
        "    try:\n"
        "        y = x * 2\n"
        "    except ValueError:\n"
        "        y = x\n"
        "    z = np.fft.fft(y).real\n"
        "    return np.sum(np.fft.ifft(x).real) + np.sum(z)\n\n"
        "def g(x):\n"
        "    y = x * 2\n"
        "    z = np.fft.fft(y).real\n"
        "    return np.sum(np.fft.ifft(x).real) + np.sum(z)\n"
    )
    first = subprocess.run([sys.executable, "-m", "adcompiler", "grad", f"{model}:f"],
                           env=env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert first.returncode == 1
    assert "`try` is not supported" in first.stderr and "fft" not in first.stderr
    second = subprocess.run([sys.executable, "-m", "adcompiler", "grad", f"{model}:g"],
                            env=env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert second.returncode == 1 and "2 constructs" in second.stderr
    assert "np.fft.fft" in second.stderr and "np.fft.ifft" in second.stderr


# -- every Python block of docs/ ---------------------------------------------------------

# The blocks of each page, in order: "run" (runs as its own file, checked after), "excerpt"
# (generated code: each of its lines, in order, is in what adcompiler generates), or the test
# that runs it. A block added to a page without a test fails test_every_python_block_...
COVERED = {
    "training.md": ["test_training_page_examples_run_in_order"] * 3,
    "cli.md": ["test_cli_page_grad_example"] * 2,
    "forward.md": ["run", "run", "excerpt", "excerpt", "run", "run", "excerpt", "run",
                   "excerpt", "excerpt", "run", "excerpt", "run", "run"],  # fmt: skip
    "subset.md": ["run", "run", "run"],
    "parallel.md": ["run", "run"],
    # run by the tests of their features
    "debugging.md": ["test_check_finite.py::test_debugging_page_example_prints_what_the_page_"
                     "shows"],  # fmt: skip
    "graph.md": ["tests/test_graph.py::test_docs_page_python_example_runs"],
}


def test_every_python_block_of_docs_is_run_by_a_test():
    pages = sorted(p.name for p in DOCS.glob("*.md") if code_blocks(p.name))
    missing = [p for p in pages if p not in COVERED]
    assert not missing, f"Python examples no test runs: {missing}"
    for page, kinds in COVERED.items():
        assert len(code_blocks(page)) == len(kinds), f"docs/{page}: a block without a test"


_DRIVER = r'''
import runpy, sys
from pathlib import Path
import numpy as np
import adcompiler as ad

ROOT = sys.argv[1]
rng = np.random.default_rng(0)


def run(i, header=0, prefix="", **given):
    """Block i as a file of its own (after `prefix`, or `header` blank lines: the line
    numbers the page quotes), run with np, ad and `given` defined."""
    path = Path(f"block_{i}.py")
    path.write_text(prefix + "\n" * header + BLOCKS[i])
    return runpy.run_path(str(path), init_globals={"np": np, "ad": ad, **given})


def shows(source, i):
    """Each line of excerpt i, in order, is a line of `source` ('...' stands for any)."""
    lines = [line.strip() for line in source.replace(ROOT + "/", "").splitlines()]
    at = 0
    for want in (w.strip() for w in BLOCKS[i].splitlines()):
        if want in ("", "..."):
            continue
        while at < len(lines) and lines[at] != want:
            at += 1
        assert at < len(lines), f"block {i}: {want!r} is not in (in order):\n{source}"
        at += 1


def fd_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for k in range(x.size):
        e = np.zeros_like(x)
        e.flat[k] = eps
        g.flat[k] = (f(x + e) - f(x - e)) / (2 * eps)
    return g
'''

_FORWARD_CHECKS = r'''
from pathlib import Path
w, x, y, v = rng.normal(size=3), rng.normal(size=(5, 3)), rng.normal(size=5), rng.normal(size=3)
def loss(w, x, y):
    return np.mean((np.tanh(x @ w) - y) ** 2)
def f(x):
    return np.sin(x) * x
def g(x):
    return np.sin(x) * x**3
ns = run(0, loss=loss, f=f, g=g, w=w, x=x, y=y, v=v)
gw = lambda w_: ad.grad(loss, wrt="w")(w_, x, y)
np.testing.assert_allclose(ns["slope"], gw(w) @ v, rtol=1e-10)
np.testing.assert_allclose(ns["hv"], (gw(w + 1e-5 * v) - gw(w - 1e-5 * v)) / 2e-5, rtol=1e-5)
np.testing.assert_allclose(ns["H"] @ v, ns["hv"], rtol=1e-10)
np.testing.assert_allclose(ns["J"].reshape(15, 15), np.diag((np.cos(x) * x + np.sin(x)).ravel()),
                           rtol=1e-12)
np.testing.assert_allclose(ns["d2"](0.7), 6 * 0.7 * np.sin(0.7) + 6 * 0.7**2 * np.cos(0.7)
                           - 0.7**3 * np.sin(0.7), rtol=1e-10)

params = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
dW, db = rng.normal(size=(3, 4)), rng.normal(size=4)
ns = run(1, params=params, x=x, dW=dW, db=db)
lp = ns["loss"]
along = lambda t: lp({"W": params["W"] + t * dW, "b": params["b"] + t * db}, x)
np.testing.assert_allclose(ns["slope"], (along(1e-6) - along(-1e-6)) / 2e-6, rtol=1e-6)
src = ad.source(ad.jvp(lp, wrt="params"), generic=True)
assert "(x @ tangent['W'] + tangent['b']) * (1 - h * h)" in src, src  # the page's comment

from tests import corpus_models as m
shows(ad.source(ad.jvp(m.mlp, wrt=("W1", "b1")), generic=True), 2)
shows(Path(ROOT, "tests/golden/mlp_hvp.py").read_text(), 3)

ns = run(4)
x0 = 0.7
d1 = lambda t: 3 * t**2 * np.sin(t) + t**3 * np.cos(t)
np.testing.assert_allclose(ns["d2f"](x0), (d1(x0 + 1e-6) - d1(x0 - 1e-6)) / 2e-6, rtol=1e-6)
d2 = ns["d2f"]
np.testing.assert_allclose(ns["d3f"](x0), (d2(x0 + 1e-6) - d2(x0 - 1e-6)) / 2e-6, rtol=1e-6)

xr, W, vr = rng.normal(size=3), rng.normal(size=(3, 3)) / 2, rng.normal(size=(3, 3))
ns = run(5, x=xr, W=W, v=vr)
gr = lambda W_: ad.grad(ns["rnn"], wrt="W")(xr, W_)
np.testing.assert_allclose(ns["hv"], (gr(W + 1e-5 * vr) - gr(W - 1e-5 * vr)) / 2e-5, rtol=1e-5)
shows(ad.source(ad.vjp(ad.grad(ns["rnn"], wrt="W"), wrt="W"), generic=True), 6)

ns = run(7, header=3)
wt, xt = rng.normal(size=3), rng.normal(size=(4, 3))
lt = lambda w_: ns["loss"](w_, xt, 3)
value, slope = ad.jvp(ns["loss"], wrt="w")(wt, xt, 3, v)
np.testing.assert_allclose(slope, fd_grad(lt, wt) @ v, rtol=1e-6)
shows(ad.source(ad.jvp(ns["loss"], wrt="w"), generic=True), 8)
shows(ad.source(ad.hvp(ns["loss"], wrt="w"), generic=True), 9)

yb = (rng.random(5) > 0.5).astype(float)
ns = run(10)
le = lambda w_: ns["loss"](w_, x, yb)
np.testing.assert_allclose(ad.grad(ns["loss"])(w, x, yb), fd_grad(le, w), rtol=1e-6)
shows(ad.source(ad.grad(ns["loss"]), generic=True), 11)

ns = run(12)
hypot_scaled = ns["hypot_scaled"]
def h2(a, b):
    return np.sum(hypot_scaled(a, b, scale=2.0))
a, b = rng.normal(size=4), rng.normal(size=4)
ga, gb = ad.grad(h2, wrt=("a", "b"))(a, b)
np.testing.assert_allclose(ga, fd_grad(lambda a_: h2(a_, b), a), rtol=1e-6)
np.testing.assert_allclose(gb, fd_grad(lambda b_: h2(a, b_), b), rtol=1e-6)

ns = run(13)
xs = np.array([-1.0, 0.5, 2.0])
np.testing.assert_allclose(ad.grad(ns["f"])(xs), 2 * xs * (xs > 0))
print("ok")
'''

_SUBSET_CHECKS = r"""
x = rng.normal(size=3)
ns = run(0, prefix="def f(x):\n    return SCALE * np.sum(x * x)\n\n\n", x=x)
assert ns["g"] is ad.grad(ns["f"])
np.testing.assert_allclose(ns["g"](x), 10 * x, rtol=1e-12)  # SCALE = 5.0 now

W, b = rng.normal(size=(3, 2)), rng.normal(size=2)
x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
ns = run(1, prefix="from typing import NamedTuple\n\n", W=W, b=b, x=x, y=y)
g, Params = ns["g"], ns["Params"]
assert isinstance(g, Params)
np.testing.assert_allclose(g.W, fd_grad(lambda W_: ns["loss"](Params(W_, b), x, y), W), rtol=1e-6)
np.testing.assert_allclose(g.b, fd_grad(lambda b_: ns["loss"](Params(W, b_), x, y), b), rtol=1e-6)

x = rng.normal(size=(2, 3))
W1, W2, V1, V2 = (rng.normal(size=(3, 3)) for _ in range(4))
ns = run(2, x=x, W1=W1, W2=W2, V1=V1, V2=V2)  # *ws: a packed parameter
loss = ns["loss"]
np.testing.assert_allclose(ns["gx"], fd_grad(lambda x_: loss(x_, W1, W2), x), rtol=1e-6)
np.testing.assert_allclose(ns["gW1"], fd_grad(lambda w: loss(x, w, W2), W1), rtol=1e-6)
np.testing.assert_allclose(ns["gW2"], fd_grad(lambda w: loss(x, W1, w), W2), rtol=1e-6)
np.testing.assert_allclose(ns["t"], np.sum(ns["gW1"] * V1) + np.sum(ns["gW2"] * V2), rtol=1e-9)
print("ok")
"""


def run_page(page: str, checks: str, tmp_path: Path) -> None:
    """The page's Python blocks, each run as its own file by `checks` (see _DRIVER)."""
    script = _DRIVER + f"\nBLOCKS = {code_blocks(page)!r}\n" + checks
    (tmp_path / "driver.py").write_text(script)
    completed = subprocess.run(
        [sys.executable, "driver.py", str(ROOT)], cwd=tmp_path, env=env(),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().endswith("ok")


def test_forward_page_examples(tmp_path):
    """docs/forward.md: the examples run and give what they say (against central
    differences); each excerpt of generated code is what adcompiler generates."""
    run_page("forward.md", _FORWARD_CHECKS, tmp_path)


def test_subset_page_examples(tmp_path):
    run_page("subset.md", _SUBSET_CHECKS, tmp_path)


_PARALLEL_CHECKS = r"""
from adcompiler.train import Adam, fit
def loss(params, x, y):
    return np.mean((x @ params["w"] + params["b"] - y) ** 2)
x = rng.normal(size=(128, 3))
y = x @ np.array([1.0, 2.0, 3.0]) + 0.5
params = {"w": np.zeros(3), "b": np.array(0.0)}
given = dict(fit=fit, Adam=Adam, loss=loss, params=params, x=x, y=y)
run(0, **given)  # local sync and async with 2 workers, and MPI (one rank: no mpiexec)
result = run(1, **given)["result"]
assert result.history["parallel"]["mode"] == "async", result.history["parallel"]
assert sum(result.history["parallel"]["staleness"]) > 0
assert Path("run.ckpt").exists()
assert loss(result.params, x, y) < loss(params, x, y)
print("ok")
"""


def test_parallel_page_examples(tmp_path):
    run_page("parallel.md", _PARALLEL_CHECKS, tmp_path)
