"""Run-time errors inside generated code show the generated line (issue 16): in the
interpreter's own report of an uncaught exception, which reads source lines from disk,
and through `traceback`/`linecache` (pytest, IPython, pdb), also with no disk cache."""

import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np

import adcompiler as ad

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import numpy as np
import adcompiler as ad

def model(W, x):
    hidden = np.tanh(x @ W)
    return np.sum(hidden)

grad = ad.grad(model)
grad(np.ones((3, 2)), np.ones((4, 5)))  # x has 5 columns, W 3 rows
"""


def run_script(tmp_path, cache: str):
    script = tmp_path / "shapes_do_not_match.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ADCOMPILER_CACHE_DIR": cache}
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )


def generated_frame(stderr: str) -> tuple[str, str]:
    """The traceback's frame in `model_grad`: its file name and the line shown under it."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.rstrip().endswith(", in model_grad"):
            return re.search(r'File "([^"]+)"', line).group(1), lines[i + 1].strip()
    raise AssertionError(f"no frame in model_grad:\n{stderr}")


def test_uncaught_error_shows_the_generated_line(tmp_path):
    cache = str(tmp_path / "cache")
    for run in ("generated", "loaded from the disk cache"):
        completed = run_script(tmp_path, cache)
        assert completed.returncode == 1, run
        filename, shown = generated_frame(completed.stderr)
        assert shown == "hidden = np.tanh(x @ W)", (run, completed.stderr)
        assert os.path.basename(filename).startswith("model_grad-"), run
        assert Path(filename).read_text().splitlines()[0].startswith("def model_grad(")


def test_traceback_module_shows_the_line_without_a_disk_cache(monkeypatch):
    monkeypatch.setenv("ADCOMPILER_DISK_CACHE", "0")

    def model(W, x):
        hidden = np.tanh(x @ W)
        return np.sum(hidden)

    grad = ad.grad(model)
    try:
        grad(np.ones((3, 2)), np.ones((4, 5)))
    except ValueError:
        text = traceback.format_exc()
    else:
        raise AssertionError("expected a shape error")
    filename, shown = generated_frame(text)
    assert filename.startswith("<adcompiler-") and shown == "hidden = np.tanh(x @ W)"


def test_generated_source_file_is_rewritten_when_deleted(tmp_path, monkeypatch):
    """A source file removed from the cache (a cleaned ~/.cache) is written again when
    code that names it is loaded, so the lines never go missing."""
    from adcompiler import load

    path = tmp_path / "source" / "f_grad-0123.py"
    source = "def f_grad(x):\n    return x\n"
    assert load.register_source(source, "f_grad", str(path)) == str(path)
    assert path.read_text() == source
    path.unlink()
    load.register_source(source, "f_grad", str(path))
    assert path.read_text() == source
