"""Faults on the embedded backend, with real signals to real processes.

A training script runs in a subprocess; the tests SIGKILL one of its
workers (the run must stop within seconds, naming the worker), SIGKILL or
SIGTERM the script itself (workers and shared memory must go), and resume
from the last checkpoint (sync mode: the same parameters as an
uninterrupted run).
"""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from adcompiler.train.optimizers import Adam
from adcompiler.train.parallel import fit_parallel, local

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="finds worker processes through /proc"
)
OPTIONS = dict(epochs=4, batch_size=16, optimizer=Adam(0.02), seed=3, quiet=True)

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path[:0] = [{root!r}, {tests!r}]
    from test_parallel_local import mlp_grad, mlp_loss, mlp_problem
    from adcompiler.train.optimizers import Adam
    from adcompiler.train.parallel import fit_parallel

    def slow_grad(*args):
        time.sleep({delay})
        return mlp_grad(*args)

    params, data = mlp_problem()
    result = fit_parallel(mlp_loss, params, data, workers=2, mode={mode!r}, grad_fn=slow_grad,
                          checkpoint={checkpoint!r}, checkpoint_every={every}, resume={resume!r},
                          epochs=4, batch_size=16, optimizer=Adam(0.02), seed=3, quiet=True,
                          heartbeat_timeout={heartbeat})
    np.savez({out!r}, **result.params)
    print("finished", flush=True)
    """
)


def start(tmp_path, mode="sync", resume=None, delay=0.05, every=5, heartbeat=30.0):
    script = tmp_path / f"train_{mode}.py"
    script.write_text(
        SCRIPT.format(
            root=str(ROOT),
            tests=str(TESTS),
            delay=delay,
            mode=mode,
            checkpoint=str(tmp_path / "run.ckpt"),
            every=every,
            resume=resume,
            out=str(tmp_path / "final.npz"),
            heartbeat=heartbeat,
        )
    )
    return subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def children(pid: int) -> list[int]:
    """Worker processes of ``pid`` (its children, minus multiprocessing's resource tracker)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"resource_tracker" not in cmdline:
            found.append(int(entry))
    return sorted(found)


def segments_of(pid: int) -> list[str]:
    prefix = f"{local.SEGMENT_PREFIX}{pid}_"
    return [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]


def wait_for(condition, seconds=20.0, what="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def running_with_checkpoint(process, tmp_path):
    wait_for(
        lambda: (tmp_path / "run.ckpt").exists() or process.poll() is not None,
        what="the first checkpoint",
    )
    assert process.poll() is None, process.communicate()
    workers = children(process.pid)
    assert len(workers) == 2, workers
    return workers


def uninterrupted(mode="sync"):
    from test_parallel_local import mlp_grad, mlp_loss, mlp_problem

    params, data = mlp_problem()
    return fit_parallel(
        mlp_loss, params, data, workers=2, mode=mode, grad_fn=mlp_grad, **OPTIONS
    ).params


@pytest.fixture(autouse=True)
def tests_on_path():
    sys.path.insert(0, str(TESTS))
    yield
    sys.path.remove(str(TESTS))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_killing_a_worker_stops_the_run_at_once_naming_it(tmp_path, mode):
    process = start(tmp_path, mode)
    workers = running_with_checkpoint(process, tmp_path)
    victim = workers[-1]
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    try:
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    assert time.monotonic() - killed < 5.0
    assert process.returncode != 0
    assert "WorkerLostError" in stderr
    assert f"(pid {victim}) was killed by SIGKILL" in stderr
    assert "worker " in stderr.splitlines()[-1]
    assert segments_of(process.pid) == []
    wait_for(lambda: children(process.pid) == [], 5.0, "the other worker to exit")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stopped_worker_is_detected_by_its_heartbeat(tmp_path, mode):
    """SIGSTOP: the worker neither runs nor exits; without heartbeats the others (and the
    parent) waited for it forever."""
    process = start(tmp_path, mode, heartbeat=1.5)
    workers = running_with_checkpoint(process, tmp_path)
    victim = workers[-1]
    stopped = time.monotonic()
    os.kill(victim, signal.SIGSTOP)
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    # the last beat came at most a beat interval (timeout / 4) before the stop
    assert 1.5 * 0.75 <= time.monotonic() - stopped < 15.0
    assert process.returncode != 0
    last = stderr.strip().splitlines()[-1]
    assert "WorkerLostError" in last and f"(pid {victim}) stopped responding" in last, stderr
    assert "heartbeat_timeout=1.5 s" in last
    assert segments_of(process.pid) == []
    wait_for(lambda: children(process.pid) == [], 5.0, "the workers to exit")


def test_stopping_and_continuing_the_whole_job_is_not_a_lost_worker(tmp_path):
    """Ctrl-Z then ``fg`` stops and continues the parent and its workers together: when the
    parent runs again, the workers' beats are old, but so is its own last look."""
    process = start(tmp_path, heartbeat=1.0, delay=0.02)
    workers = running_with_checkpoint(process, tmp_path)
    everyone = [process.pid, *workers]
    try:
        for pid in everyone:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(3.0)  # three times the timeout
    finally:
        for pid in reversed(everyone):  # the workers first, the parent last
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "finished" in stdout


def _sleepy_worker(comm, seconds):
    time.sleep(seconds)  # one long step that neither communicates nor reports progress
    return comm.rank


def test_a_slow_step_is_not_a_stopped_worker():
    """The beat comes from a thread, not from progress: a step slower than the timeout
    passes; a bad timeout is refused."""
    assert local.run(2, {}, _sleepy_worker, (1.5,), heartbeat_timeout=0.5) == [0, 1]
    with pytest.raises(ValueError, match="heartbeat_timeout"):
        local.run(2, {}, _sleepy_worker, (0.0,), heartbeat_timeout=0)


def test_resume_after_a_killed_worker_gives_the_uninterrupted_parameters(tmp_path):
    process = start(tmp_path)
    workers = running_with_checkpoint(process, tmp_path)
    os.kill(workers[0], signal.SIGKILL)
    process.communicate(timeout=10)
    assert not (tmp_path / "final.npz").exists()
    resumed = start(tmp_path, resume=str(tmp_path / "run.ckpt"), delay=0.0)
    stdout, stderr = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, stderr
    final = np.load(tmp_path / "final.npz")
    for key, value in uninterrupted().items():
        np.testing.assert_array_equal(final[key], value)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killing_the_run_removes_its_workers_and_shared_memory(tmp_path, how):
    process = start(tmp_path)
    workers = running_with_checkpoint(process, tmp_path)
    assert segments_of(process.pid) != []
    os.kill(process.pid, how)
    process.communicate(timeout=10)
    wait_for(
        lambda: not any(os.path.exists(f"/proc/{w}") for w in workers), 5.0, "the workers to exit"
    )
    # After SIGKILL the resource tracker unlinks the segment once the workers are gone.
    wait_for(lambda: segments_of(process.pid) == [], 5.0, "the segment to be unlinked")
