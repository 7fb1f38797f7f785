"""The Python examples of docs/training.md and docs/cli.md run as written (issue 16), and
what docs/cli.md shows the command line printing is what it prints."""

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
