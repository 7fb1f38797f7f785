"""The command line, and emitted gradient files that run with NumPy alone."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import adcompiler as ad
from tests import corpus_models as m

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "adcompiler", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=120,
    )


def test_emitted_file_runs_without_adcompiler(tmp_path):
    out = tmp_path / "mlp_grad.py"
    result = run_cli("grad", "tests/corpus_models.py:mlp", "--wrt", "W1,b1,W2,b2", "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "adcompiler" not in "".join(line for line in text.splitlines() if "import" in line)
    rng = np.random.default_rng(0)
    args = [
        rng.normal(size=(4, 5)),
        rng.normal(size=5),
        rng.normal(size=(5, 3)),
        rng.normal(size=3),
        rng.normal(size=(6, 4)),
        np.eye(3)[rng.integers(0, 3, 6)],
    ]
    np.savez(tmp_path / "args.npz", *args)
    script = (
        "import sys, json\n"
        "sys.modules['adcompiler'] = None  # importing adcompiler now fails\n"
        "import numpy as np\n"
        "sys.path.insert(0, '.')\n"
        "from mlp_grad import mlp_grad\n"
        "a = np.load('args.npz')\n"
        "grads = mlp_grad(*[a[f'arr_{i}'] for i in range(6)])\n"
        "print(json.dumps([g.tolist() for g in grads]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    expected = ad.grad(m.mlp, wrt=("W1", "b1", "W2", "b2"))(*args)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(np.array(g), e, rtol=1e-12)


def test_emitted_file_passes_ruff(tmp_path):
    if shutil.which("ruff") is None:
        import pytest

        pytest.skip("ruff is not installed")
    out = tmp_path / "lr_grad.py"
    assert (
        run_cli(
            "grad",
            "tests/corpus_models.py:logistic_regression",
            "--wrt",
            "w,b",
            "--value",
            "-o",
            str(out),
        ).returncode
        == 0
    )
    check = subprocess.run(
        ["ruff", "check", "--isolated", "--no-cache", str(out)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout


def test_grad_to_stdout_and_ir():
    result = run_cli("grad", "tests/corpus_models.py:logistic_regression", "--wrt", "w")
    assert result.returncode == 0 and "def logistic_regression_grad(" in result.stdout
    result = run_cli("ir", "tests/corpus_models.py:logistic_regression")
    assert result.returncode == 0 and result.stdout.startswith("function logistic_regression(")


def test_cli_reports_unsupported_code_and_bad_targets():
    result = run_cli("grad", "tests/corpus_errors.py:many_problems")
    assert result.returncode == 1
    assert "3 constructs" in result.stderr and "corpus_errors.py:" in result.stderr
    result = run_cli("grad", "tests/corpus_models.py:nope")
    assert result.returncode != 0 and "has no function 'nope'" in result.stderr
    result = run_cli("grad", "tests/corpus_models.py:mlp", "--wrt", "W9")
    assert result.returncode == 2 and "choose from" in result.stderr  # a usage error


DICT_MODEL = """
import numpy as np

def loss(params, x, y):
    h = np.tanh(x @ params["W1"] + params["b1"])
    return np.mean((h @ params["W2"] - y) ** 2)
"""


def test_grad_with_respect_to_a_dict_of_parameters(tmp_path):
    """``--wrt params --keys params=W1,b1,W2``: the emitted file takes and returns dicts,
    and agrees with ad.grad and with central finite differences."""
    model = tmp_path / "dict_model.py"
    model.write_text(DICT_MODEL)
    out = tmp_path / "dict_grad.py"
    result = run_cli("grad", f"{model}:loss", "--wrt", "params", "--keys", "params=W1,b1,W2",
                     "-o", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rng = np.random.default_rng(1)
    params = {"W1": rng.normal(size=(3, 4)), "b1": rng.normal(size=4),
              "W2": rng.normal(size=4)}  # fmt: skip
    x, y = rng.normal(size=(5, 3)), rng.normal(size=5)
    namespace = {}
    exec(compile(out.read_text(), str(out), "exec"), namespace)  # noqa: S102 - our own output
    grads = namespace["loss_grad"](params, x, y)
    assert list(grads) == ["W1", "b1", "W2"]
    sys.path.insert(0, str(tmp_path))
    try:
        import dict_model
    finally:
        sys.path.remove(str(tmp_path))
    expected = ad.grad(dict_model.loss, wrt="params")(params, x, y)
    for key in params:
        np.testing.assert_allclose(grads[key], expected[key], rtol=1e-12)
        fd = np.zeros_like(params[key])
        for i in np.ndindex(params[key].shape):
            up = {k: v.copy() for k, v in params.items()}
            down = {k: v.copy() for k, v in params.items()}
            up[key][i] += 1e-6
            down[key][i] -= 1e-6
            fd[i] = (dict_model.loss(up, x, y) - dict_model.loss(down, x, y)) / 2e-6
        np.testing.assert_allclose(grads[key], fd, rtol=1e-6, atol=1e-8)
    result = run_cli("ir", f"{model}:loss", "--wrt", "params", "--keys", "params=W1,b1,W2")
    assert result.returncode == 0 and "%W1 = getitem(%params)" in result.stdout
    result = run_cli("grad", f"{model}:loss", "--wrt", "params", "--keys", "params=W1,W2")
    assert result.returncode == 1 and "the dict has no key 'b1'" in result.stderr
    result = run_cli("grad", f"{model}:loss", "--wrt", "params", "--keys", "params=W1,,W2")
    assert result.returncode == 2 and "expected NAME=KEY1,KEY2" in result.stderr
