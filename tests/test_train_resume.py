"""Kill a real training process with SIGKILL mid-epoch, resume it from its checkpoint,
and check that it ends with exactly the parameters of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from adcompiler.train import checkpoint

try:
    from test_train_helpers import ROOT, SAMPLES, needs_compiler, subprocess_env
except ImportError:  # collected as part of a package
    from tests.test_train_helpers import ROOT, SAMPLES, needs_compiler, subprocess_env

HERE = os.path.dirname(os.path.abspath(__file__))

TRAINER = """
import sys, time
import numpy as np
sys.path.insert(0, {here!r})
from test_train_helpers import linear_loss, linear_problem, linear_value_and_grad
from adcompiler.train import Adam, fit
from adcompiler.train.cli import save_params

def slow_value_and_grad(*args):
    time.sleep(0.002)  # long enough for the parent to kill us mid-run
    return linear_value_and_grad(*args)

checkpoint, resume, output = sys.argv[1], sys.argv[2] == "resume", sys.argv[3]
params, (x, y) = linear_problem(n=2000)
result = fit(linear_loss, params, (x, y), epochs=3, batch_size=16, optimizer=Adam(0.01),
             validation=(x[:100], y[:100]), seed=7, quiet=True, grad_fn=slow_value_and_grad,
             checkpoint=checkpoint if checkpoint != "-" else None, checkpoint_every=9,
             resume=checkpoint if resume else None)
save_params(output, result.params)
"""


def wait_for_checkpoint(path, process, min_step, timeout=60.0):
    """Wait until a checkpoint past ``min_step`` exists; return its metadata."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the training process ended before it could be killed"
        if os.path.exists(path):
            meta = checkpoint.load(path)[1]
            if meta["step"] >= min_step and meta["batch"] > 0:
                return meta
        time.sleep(0.01)
    raise TimeoutError("no checkpoint appeared")


def kill_and_resume(command, path, final, min_step):
    """Run ``command + [...]``, SIGKILL it after a mid-epoch checkpoint, rerun with resume."""
    env = subprocess_env()
    process = subprocess.Popen(command("start"), env=env, cwd=ROOT)
    try:
        meta = wait_for_checkpoint(path, process, min_step)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    killed_at = checkpoint.load(path)[1]
    assert killed_at["batch"] > 0, "the kill must land mid-epoch"
    assert killed_at["step"] >= meta["step"]
    subprocess.run(command("resume"), env=env, cwd=ROOT, check=True, timeout=300)
    return np.load(final, allow_pickle=False), killed_at


def test_sigkilled_run_resumes_to_bit_identical_parameters(tmp_path):
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER.format(here=HERE))
    path = str(tmp_path / "run.ckpt")

    def command(mode):
        return [sys.executable, str(script), path, mode, str(tmp_path / f"{mode}.npz")]

    resumed, killed_at = kill_and_resume(command, path, tmp_path / "resume.npz", min_step=40)
    assert killed_at["step"] < 3 * 125  # it really was interrupted
    uninterrupted = [sys.executable, str(script), "-", "start", str(tmp_path / "whole.npz")]
    subprocess.run(uninterrupted, env=subprocess_env(), cwd=ROOT, check=True, timeout=300)
    whole = np.load(tmp_path / "whole.npz", allow_pickle=False)
    for name in ("w", "b"):
        assert resumed[name].tobytes() == whole[name].tobytes()


@needs_compiler
@pytest.mark.slow
def test_cli_mlp_digits_killed_and_resumed_matches_uninterrupted(tmp_path):
    path = str(tmp_path / "mlp.ckpt")
    sample = os.path.join(SAMPLES, "mlp_digits.py")
    base = [sys.executable, "-m", "adcompiler.train.cli", sample, "--epochs", "6", "--quiet"]

    def command(mode):
        extra = ["--resume", path] if mode == "resume" else []
        return base + ["--checkpoint", path, "--checkpoint-every", "1",
                       "--save", str(tmp_path / f"{mode}.npz")] + extra  # fmt: skip

    resumed, killed_at = kill_and_resume(command, path, tmp_path / "resume.npz", min_step=30)
    assert killed_at["step"] < 6 * 20
    subprocess.run(base + ["--save", str(tmp_path / "whole.npz")], env=subprocess_env(),
                   cwd=ROOT, check=True, timeout=300)  # fmt: skip
    whole = np.load(tmp_path / "whole.npz", allow_pickle=False)
    assert sorted(whole.files) == sorted(resumed.files)
    for name in whole.files:
        assert resumed[name].tobytes() == whole[name].tobytes()
