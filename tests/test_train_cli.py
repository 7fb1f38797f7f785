"""``adcompiler train SAMPLE.py``: options, checkpoints, resume and errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

from adcompiler.train import checkpoint
from adcompiler.train.cli import main

try:
    from test_train_helpers import ROOT, SAMPLES, needs_compiler, subprocess_env
except ImportError:  # collected as part of a package
    from tests.test_train_helpers import ROOT, SAMPLES, needs_compiler, subprocess_env

LOGISTIC = os.path.join(SAMPLES, "logistic_regression.py")

TINY_SAMPLE = """
import numpy as np
from adcompiler.train.losses import mean_squared_error

defaults = {{"epochs": 2, "batch_size": 8, "lr": {lr}, "optimizer": "sgd"}}

def loss(w, x, y):
    return mean_squared_error(x @ w, y)

def init_params(seed):
    return {{"w": np.zeros(2)}}

def load_data():
    x = np.random.default_rng(0).normal(size=(40, 2)) * 100.0
    return {{"train": (x, x @ np.array([1.0, -1.0])), "test": (x, x @ np.array([1.0, -1.0]))}}
"""


@needs_compiler
def test_cli_trains_and_reports_test_metric(tmp_path, capsys):
    args = [LOGISTIC, "--epochs", "3", "--batch-size", "16", "--lr", "0.1", "--seed", "2",
            "--optimizer", "nesterov", "--quiet", "--save", str(tmp_path / "p.npz"),
            "--emit", str(tmp_path / "grad.py")]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "trained 42 steps" in out  # 214 training images / 16 -> 14 batches x 3 epochs
    assert "test accuracy:" in out
    assert "def loss_value_and_grad(w, b, x, y):" in (tmp_path / "grad.py").read_text()
    saved = np.load(tmp_path / "p.npz", allow_pickle=False)
    assert saved["w"].shape == (64,) and saved["b"].shape == ()


@needs_compiler
def test_cli_checkpoint_then_resume_equals_one_run(tmp_path, capsys):
    path = str(tmp_path / "run.ckpt")
    common = [LOGISTIC, "--batch-size", "16", "--quiet"]
    assert main(common + ["--epochs", "4", "--save", str(tmp_path / "whole.npz")]) == 0
    assert main(common + ["--epochs", "2", "--checkpoint", path]) == 0
    assert checkpoint.load(path)[1]["epoch"] == 2
    assert main(common + ["--epochs", "4", "--resume", path, "--checkpoint", path,
                          "--save", str(tmp_path / "resumed.npz")]) == 0  # fmt: skip
    whole, resumed = np.load(tmp_path / "whole.npz"), np.load(tmp_path / "resumed.npz")
    assert whole["w"].tobytes() == resumed["w"].tobytes()


@needs_compiler
def test_cli_reports_a_diverging_loss(tmp_path, capsys):
    sample = tmp_path / "tiny.py"
    sample.write_text(TINY_SAMPLE.format(lr=1.0))
    with np.errstate(over="ignore", invalid="ignore"):
        assert main([str(sample), "--quiet", "--epochs", "20"]) == 1
    assert "loss became" in capsys.readouterr().err


def test_cli_rejects_bad_samples_and_checkpoints(tmp_path, capsys):
    assert main([str(tmp_path / "missing.py")]) == 2
    incomplete = tmp_path / "incomplete.py"
    incomplete.write_text("def loss(w, x):\n    return w\n")
    assert main([str(incomplete)]) == 2
    assert "does not define init_params, load_data" in capsys.readouterr().err
    sample = tmp_path / "tiny.py"
    sample.write_text(TINY_SAMPLE.format(lr=1e-5))
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    assert main([str(sample), "--quiet", "--resume", str(bad)]) == 1
    assert "not a checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])


@needs_compiler
def test_adcompiler_train_command(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "adcompiler.cli", "train", LOGISTIC, "--epochs", "2", "--quiet",
         "--plot", str(tmp_path / "history.png")],
        env=subprocess_env(), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "test accuracy:" in completed.stdout
    assert (tmp_path / "history.png").read_bytes()[:4] == b"\x89PNG"
