"""Progress output reads well in a terminal and in a log (issue 16): a bar only on a
terminal, no carriage returns in a log, and the epoch line's time has a unit."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading

try:
    from test_train_helpers import ROOT, needs_compiler, subprocess_env
except ImportError:  # collected as part of a package
    from tests.test_train_helpers import ROOT, needs_compiler, subprocess_env

from adcompiler.train.progress import epoch_line, interactive

SAMPLE = """
import numpy as np
from adcompiler.train.losses import mean_squared_error

defaults = {"epochs": 2, "batch_size": 8, "lr": 1e-2, "optimizer": "sgd"}

def loss(w, x, y):
    return mean_squared_error(x @ w, y)

def init_params(seed):
    return {"w": np.zeros(2)}

def load_data():
    x = np.random.default_rng(0).normal(size=(64, 2))
    y = x @ np.array([1.0, -1.0])
    return {"train": (x, y), "validation": (x, y)}
"""


def train_command(tmp_path):
    sample = tmp_path / "tiny.py"
    sample.write_text(SAMPLE)
    return [sys.executable, "-m", "adcompiler", "train", str(sample)]


def test_epoch_line_has_units():
    record = {"epoch": 3, "loss": 0.41213, "lr": 0.001, "time": 1.2534, "val_loss": 0.441}
    assert epoch_line(record, 10) == "epoch 3/10: loss 0.4121, lr 0.001, val_loss 0.441, 1.25 s"


def test_interactive_is_false_for_files_and_pipes(tmp_path):
    with open(tmp_path / "log.txt", "w") as file:
        assert not interactive(file)
    read, write = os.pipe()
    with os.fdopen(read) as r, os.fdopen(write, "w") as w:
        assert not interactive(w) and not interactive(r)


@needs_compiler
def test_log_output_has_no_carriage_returns(tmp_path):
    """``adcompiler train ... 2>&1 | tee run.log``: stdout and stderr are a pipe."""
    completed = subprocess.run(
        train_command(tmp_path), cwd=ROOT, env=subprocess_env(), timeout=120,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log = completed.stdout.decode()
    assert completed.returncode == 0, log
    assert "\r" not in log
    epoch_lines = [line for line in log.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all(line.endswith(" s") for line in epoch_lines), log


@needs_compiler
def test_terminal_shows_a_progress_bar(tmp_path):
    """On a real terminal (a pseudo-terminal here) the bar is drawn (with carriage returns)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks = []

    def read_terminal():
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal has no writer left
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        completed = subprocess.run(
            train_command(tmp_path), cwd=ROOT, env=subprocess_env(), timeout=120,
            stdout=subprocess.PIPE, stderr=follower,
        )  # fmt: skip
    finally:
        os.close(follower)
        reader.join(10)
        os.close(leader)
    terminal = b"".join(chunks)
    assert completed.returncode == 0
    assert b"\r" in terminal and b"step" in terminal
    assert b"\r" not in completed.stdout
