"""Data-parallel training on the MPI backend, through real ``mpiexec`` jobs.

This file is also the script the jobs run::

    mpiexec -n 3 python tests/test_parallel_mpi.py sync out.npz [--epochs 3] [--resume ckpt]

Rank 0 writes the final parameters (and the history as JSON) to ``out.npz``.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path[:0] = [str(ROOT), str(TESTS)]

from adcompiler.train.optimizers import SGD, Adam  # noqa: E402

try:
    import mpi4py  # noqa: F401

    MPI_MISSING = shutil.which("mpiexec") is None and "mpiexec is not on PATH"
except ImportError:
    MPI_MISSING = "mpi4py is not importable (pip install 'adcompiler[mpi]')"

pytestmark = [pytest.mark.mpi, pytest.mark.skipif(bool(MPI_MISSING), reason=str(MPI_MISSING))]

SYNC = dict(batch_size=16, optimizer=Adam(0.02), seed=3)
ASYNC = dict(batch_size=20, optimizer=SGD(0.2), seed=0)


def problem(mode):
    """(loss, grad_fn, params, data, options) for a mode: an MLP (sync), logistic (async)."""
    import test_parallel_local as problems

    if mode == "sync":
        params, data = problems.mlp_problem()
        return problems.mlp_loss, problems.mlp_grad, params, data, SYNC
    params, data = problems.logistic_problem()
    return problems.logistic_loss, problems.logistic_grad, params, data, ASYNC


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("sync", "async", "fail"))
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--resume")
    parser.add_argument("--checkpoint")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--loud", action="store_true")
    args = parser.parse_args()
    from mpi4py import MPI

    from adcompiler.train.parallel import fit_parallel

    mode = "sync" if args.mode == "fail" else args.mode
    loss, grad, params, data, options = problem(mode)
    rank = MPI.COMM_WORLD.Get_rank()

    def grad_fn(*arguments):
        if args.mode == "fail" and rank == 1:
            raise ValueError("rank 1 cannot compute")
        time.sleep(args.delay)
        return grad(*arguments)

    result = fit_parallel(
        loss,
        params,
        data,
        backend="mpi",
        mode=mode,
        workers=None,
        grad_fn=grad_fn,
        epochs=args.epochs,
        quiet=not args.loud,
        resume=args.resume,
        checkpoint=args.checkpoint,
        **options,
    )
    if rank == 0:
        np.savez(args.out, history=json.dumps(result.history), **result.params)


# ---------------------------------------------------------------- the tests


def mpiexec(ranks, *arguments, timeout=90, wait=True):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    command = ["mpiexec", "-n", str(ranks), sys.executable, __file__, *map(str, arguments)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    if not wait:
        return process
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, stdout, stderr


def load(path):
    with np.load(path) as archive:
        params = {k: archive[k] for k in archive.files if k != "history"}
        return params, json.loads(str(archive["history"]))


def single_process(mode, epochs):
    from adcompiler.train import fit

    loss, grad, params, data, options = problem(mode)
    return fit(loss, params, data, grad_fn=grad, epochs=epochs, quiet=True, **options)


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_sync_matches_a_single_process(tmp_path, ranks):
    code, _, stderr = mpiexec(ranks, "sync", tmp_path / "out.npz")
    assert code == 0, stderr
    params, history = load(tmp_path / "out.npz")
    reference = single_process("sync", 3)
    for key, value in reference.params.items():
        np.testing.assert_allclose(params[key], value, rtol=1e-12, atol=0)
    assert history["parallel"]["workers"] == ranks
    np.testing.assert_allclose(history["loss"], reference.history["loss"], rtol=1e-12)


@pytest.mark.parametrize("ranks", [2, 3])
def test_async_server_on_rank_0_converges_and_records_staleness(tmp_path, ranks):
    code, _, stderr = mpiexec(ranks, "async", tmp_path / "out.npz", "--epochs", 8)
    assert code == 0, stderr
    params, history = load(tmp_path / "out.npz")
    record = history["parallel"]
    assert record["workers"] == ranks - 1
    assert sum(record["staleness"]) == 8 * 20
    assert len(record["staleness"]) <= ranks  # the default bound: workers
    import test_parallel_local as problems

    _, data = problems.logistic_problem()
    reference = single_process("async", 8)
    assert problems.full_loss(params, data) < problems.full_loss(reference.params, data) + 0.02


def test_sync_resume_from_a_checkpoint_gives_the_uninterrupted_parameters(tmp_path):
    checkpoint = tmp_path / "run.ckpt"
    code, _, stderr = mpiexec(
        2, "sync", tmp_path / "a.npz", "--epochs", 1, "--checkpoint", checkpoint
    )
    assert code == 0, stderr
    code, _, stderr = mpiexec(2, "sync", tmp_path / "b.npz", "--resume", checkpoint)
    assert code == 0, stderr
    code, _, stderr = mpiexec(2, "sync", tmp_path / "whole.npz")
    assert code == 0, stderr
    resumed, whole = load(tmp_path / "b.npz")[0], load(tmp_path / "whole.npz")[0]
    for key in whole:
        np.testing.assert_array_equal(resumed[key], whole[key])


def test_an_exception_in_one_rank_aborts_the_job_instead_of_hanging(tmp_path):
    started = time.monotonic()
    code, _, stderr = mpiexec(2, "fail", tmp_path / "out.npz", timeout=30)
    assert code != 0
    assert time.monotonic() - started < 30
    assert "[rank 1]" in stderr and "rank 1 cannot compute" in stderr


def test_an_unwritable_checkpoint_stops_the_job_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    started = time.monotonic()
    code, _, stderr = mpiexec(2, "sync", tmp_path / "out.npz", "--epochs", 50, "--delay", 0.05,
                              "--checkpoint", blocker / "run.ckpt", timeout=60)  # fmt: skip
    assert code != 0
    assert time.monotonic() - started < 30  # 50 epochs with a 50 ms step take far longer
    assert "[rank 0]" in stderr and "does not exist" in stderr
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_killing_a_rank_stops_the_job_within_seconds_naming_it(tmp_path, mode):
    process = mpiexec(
        2, mode, tmp_path / "out.npz", "--epochs", 50, "--delay", 0.01, "--loud", wait=False
    )
    pids = {}
    deadline = time.monotonic() + 30
    lines = []
    while len(pids) < 2 and time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        match = re.search(r"mpi rank (\d+) of 2: pid (\d+)", line)
        if match:
            pids[int(match[1])] = int(match[2])
    assert len(pids) == 2, lines
    time.sleep(0.5)  # let it train
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    try:
        stdout, stderr = process.communicate(timeout=15)
    finally:
        process.kill()
    assert time.monotonic() - killed < 10
    assert process.returncode != 0
    report = stdout + stderr  # hydra's "BAD TERMINATION" banner goes to stdout
    assert f"PID {pids[1]}" in report and "signal 9" in report


def test_mpi_backend_without_mpiexec_says_how_to_launch():
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(TESTS)!r}]\n"
        "import test_parallel_local as p\n"
        "from adcompiler.train.parallel import fit_parallel\n"
        "params, data = p.linear_problem()\n"
        "fit_parallel(p.linear_loss, params, data, backend='mpi', workers=2,"
        " grad_fn=p.linear_grad, quiet=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "mpiexec -n 2 python script.py" in result.stderr


if __name__ == "__main__":
    main()
