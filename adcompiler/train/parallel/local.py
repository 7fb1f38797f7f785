"""The embedded backend: worker processes on one machine, arrays through shared memory.

::

    parent ──fork──▶ worker 0 … worker N-1        (one SharedMemory segment for all buffers)
      │                 │ sync:  slots[t % 2][rank] = contribution; barrier;
      │                 │        result = slots[t % 2][0] + … + slots[t % 2][N-1]  (same bits)
      │                 │ async: gradient into grads[rank]; a 32-byte token up the pipe;
      │                 │        the parent (parameter server) answers: params[rank] + a token
      └─ waits on every worker's sentinel and pipe at once: a worker that dies
         sets the abort word and wakes every waiter, so the others raise
         WorkerLostError at once, naming it.

Heartbeats: a thread in every worker writes the time (``CLOCK_MONOTONIC``,
the same in every process) into the worker's word of the control block
every ``heartbeat_timeout / 4`` seconds; the parent wakes at least that
often and stops the run, naming the worker, when a beat is more than
``heartbeat_timeout`` seconds old. That catches a worker that no longer
runs at all (SIGSTOP, a frozen process) without a false alarm on a slow
step: the beat comes from its own thread, not from progress.

Why ``fork``: the model's gradient function is often generated code or a
closure that cannot be pickled, and the data set is inherited copy-on-write
instead of being sent to each worker. ``spawn``/``forkserver`` work too
(``start_method=``) when everything handed to the workers pickles; the
shared-memory segment is then re-attached by name.

Cleanup: the parent unlinks the segment in a ``finally`` (SIGTERM and SIGINT
are turned into exceptions while a run is in progress, so that ``finally``
runs). If the parent is SIGKILLed, its workers die with it (Linux
``PR_SET_PDEATHSIG``, and a parent-pid check in every wait) and
multiprocessing's resource tracker, a separate process that ignores SIGINT
and SIGTERM, unlinks the registered segment once the last of them is gone.
Segments named ``adc_<pid>_*`` whose creating process no longer exists are
also removed when the next run starts (the case where the tracker was killed
too).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing import connection, shared_memory

import numpy as np

from adcompiler.train.parallel import HEARTBEAT_TIMEOUT
from adcompiler.train.parallel.errors import WorkerError, WorkerLostError
from adcompiler.train.parallel.job import available_cores

SEGMENT_PREFIX = "adc_"
POLL_SECONDS = 0.05  # how often a blocked wait looks at the abort word and the parent
SPIN_SECONDS = 200e-6  # how long a barrier polls before it sleeps (when workers <= cores)

# Control words at the start of the segment: then one progress word per worker, then one
# heartbeat word per worker (monotonic nanoseconds).
_ABORT, _DEAD_RANK, _DEAD_CODE, _PROGRESS = 0, 1, 2, 3
_STOPPED = -998  # _DEAD_CODE of a worker that stopped responding (no heartbeat)


# ---------------------------------------------------------------- shared memory


class Arena:
    """One shared-memory segment cut into named arrays.

    Args:
        layout: ``{name: (shape, dtype)}``; each array starts on a 64-byte boundary.
    """

    def __init__(self, layout: dict[str, tuple[tuple[int, ...], str]]):
        self.layout = dict(layout)
        self.offsets, size = {}, 0
        for name, (shape, dtype) in self.layout.items():
            self.offsets[name] = size
            nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            size += -(-nbytes // 64) * 64
        name = f"{SEGMENT_PREFIX}{os.getpid()}_{os.urandom(6).hex()}"
        self.segment = shared_memory.SharedMemory(name=name, create=True, size=max(size, 64))
        self.owner_pid = os.getpid()
        self._views()

    def _views(self) -> None:
        self.arrays = {
            name: np.ndarray(shape, dtype, buffer=self.segment.buf, offset=self.offsets[name])
            for name, (shape, dtype) in self.layout.items()
        }
        for array in self.arrays.values():
            array.fill(0)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __getstate__(self):  # only used under spawn/forkserver
        return {
            "layout": self.layout,
            "offsets": self.offsets,
            "name": self.segment.name,
            "owner_pid": self.owner_pid,
        }

    def __setstate__(self, state):
        self.__dict__.update({k: v for k, v in state.items() if k != "name"})
        self.segment = shared_memory.SharedMemory(name=state["name"])
        self.arrays = {
            name: np.ndarray(shape, dtype, buffer=self.segment.buf, offset=self.offsets[name])
            for name, (shape, dtype) in self.layout.items()
        }

    def release(self) -> None:
        """Drop the views and unlink the segment (in the process that created it)."""
        self.arrays = {}
        with contextlib.suppress(BufferError):
            self.segment.close()
        if os.getpid() == self.owner_pid:
            with contextlib.suppress(FileNotFoundError):
                self.segment.unlink()


def reap_stale_segments(folder: str = "/dev/shm") -> list[str]:
    """Unlink ``adc_<pid>_*`` segments whose creating process is gone; returns their names."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        if not name.startswith(SEGMENT_PREFIX):
            continue
        try:
            pid = int(name[len(SEGMENT_PREFIX) :].split("_")[0])
        except ValueError:
            continue
        if not _alive(pid):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
                removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------- the barrier


class Barrier:
    """A dissemination barrier on semaphores that a watcher can break.

    In round ``k`` worker ``i`` posts ``sem[k][(i + 2**k) % n]`` and waits on
    ``sem[k][i]``; after ``ceil(log2 n)`` rounds every worker has heard,
    directly or not, from every other. Each semaphore has one poster, so
    counts left over from a fast worker's next barrier cannot be mistaken
    for this one's. Nothing is ever held while waiting, so a worker killed
    at any point cannot leave a lock behind.
    """

    def __init__(self, context, parties: int, control: np.ndarray):
        self.parties = parties
        self.rounds = max(0, (parties - 1).bit_length())
        self.sems = [[context.Semaphore(0) for _ in range(parties)] for _ in range(self.rounds)]
        self.control = control
        # Polling briefly before sleeping saves the wake-up latency of a blocked
        # process; when workers share cores, each poll yields the core first.
        self.yields = parties > available_cores()

    def wait(self, rank: int, parent_pid: int) -> None:
        for k in range(self.rounds):
            self.sems[k][(rank + (1 << k)) % self.parties].release()
            acquire(self.sems[k][rank], self.control, parent_pid, SPIN_SECONDS, self.yields)

    def break_all(self) -> None:
        """Wake every waiter (they then see the abort word)."""
        for row in self.sems:
            for sem in row:
                for _ in range(self.parties):
                    sem.release()


def acquire(
    sem, control: np.ndarray, parent_pid: int, spin: float = 0.0, yields: bool = False
) -> None:
    """Acquire ``sem``, raising WorkerLostError if the run was aborted or the parent died.

    Polls for ``spin`` seconds first (yielding the core between polls if
    ``yields``), then blocks.
    """
    if spin:
        deadline = time.perf_counter() + spin
        while time.perf_counter() < deadline:
            if sem.acquire(False):
                check_abort(control, parent_pid)
                return
            if yields:
                os.sched_yield()
    while True:
        got = sem.acquire(timeout=POLL_SECONDS)
        check_abort(control, parent_pid)
        if got:
            return


def check_abort(control: np.ndarray, parent_pid: int) -> None:
    if control[_ABORT]:
        raise WorkerLostError(describe_loss(control))
    if os.getppid() != parent_pid:
        raise WorkerLostError("the parent process is gone")


def describe_loss(control: np.ndarray) -> str:
    rank, code = int(control[_DEAD_RANK]), int(control[_DEAD_CODE])
    step = int(control[_PROGRESS + rank])
    return f"worker {rank} {exit_reason(code)} (it had reached step {step}); the run was stopped"


def exit_reason(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code == _STOPPED:
        return "stopped responding (no heartbeat)"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code == 0:
        return "exited early without reporting a result"
    return f"exited with code {code}"


# ---------------------------------------------------------------- the group


class LocalGroup:
    """Worker processes plus the shared state they synchronise through."""

    def __init__(
        self,
        workers: int,
        layout: dict,
        start_method: str | None = None,
        heartbeat_timeout: float | None = HEARTBEAT_TIMEOUT,
    ):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if heartbeat_timeout is not None and not heartbeat_timeout > 0:
            raise ValueError(f"heartbeat_timeout must be > 0 or None, got {heartbeat_timeout}")
        reap_stale_segments()
        self.workers = workers
        self.heartbeat_timeout = heartbeat_timeout
        self.context = mp.get_context(start_method or _default_start_method())
        layout = {"control": ((_PROGRESS + 2 * workers,), "int64"), **layout}
        self.arena = Arena(layout)
        self.control = self.arena["control"]
        self.barrier = Barrier(self.context, workers, self.control)
        self.parent_pid = os.getpid()
        self.processes: list = []
        self.pipes: list = []

    def __getstate__(self):  # spawn/forkserver: what a worker needs, not the processes
        state = dict(self.__dict__)
        state.update(processes=[], pipes=[], context=None)
        return state

    # -- in the parent

    def start(self, target: Callable, args: Sequence = ()) -> None:
        """Start ``target(comm, *args)`` in every worker; ``comm`` is a :class:`LocalComm`."""
        now = time.monotonic_ns()
        self.control[_PROGRESS + self.workers :] = now  # a grace period to start
        self._last_check = self._resumed = now  # see _check_heartbeats
        for rank in range(self.workers):
            parent_end, child_end = self.context.Pipe(duplex=True)
            process = self.context.Process(
                target=_worker_main,
                args=(self, rank, child_end, target, tuple(args)),
                name=f"adcompiler-worker-{rank}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self.processes.append(process)
            self.pipes.append(parent_end)

    def abort(self, rank: int, code: int | None) -> None:
        """Tell every worker that ``rank`` is gone and wake the ones that wait."""
        if not self.control[_ABORT]:
            self.control[_DEAD_RANK] = rank
            self.control[_DEAD_CODE] = -999 if code is None else code
            self.control[_ABORT] = 1
        self.barrier.break_all()

    def collect(self, on_message: Callable | None = None) -> list:
        """Wait for every worker's result; raise at the first failure.

        ``on_message(rank, message)`` handles messages other than the final
        result (the async parameter server uses this); it runs in the parent.
        """
        results: dict[int, object] = {}
        exits = {p.sentinel: r for r, p in enumerate(self.processes)}
        readers = {c: r for r, c in enumerate(self.pipes)}
        timeout = None if self.heartbeat_timeout is None else self.heartbeat_timeout / 4
        while len(results) < self.workers:
            for handle in connection.wait(list(exits) + list(readers), timeout):
                if handle in readers:
                    self._read(readers, handle, results, on_message)
                elif handle in exits:
                    self._exited(exits.pop(handle), results)
            if timeout is not None:
                self._check_heartbeats(set(exits.values()) - set(results))
        return [results[r] for r in range(self.workers)]

    def _check_heartbeats(self, running: set[int]) -> None:
        """Stop the run if a running worker's last heartbeat is too old (it is stopped).

        A beat counts from when this process last ran without a gap: if the parent was
        stopped too (Ctrl-Z stops the whole job, then ``fg``), the workers get a whole
        timeout to beat again instead of being declared lost at once."""
        now = time.monotonic_ns()
        interval = self.heartbeat_timeout / 4 * 1e9
        if now - self._last_check > 2 * interval:  # this process did not run for a while
            self._resumed = now
        self._last_check = now
        for rank in sorted(running):
            beat = max(int(self.control[_PROGRESS + self.workers + rank]), self._resumed)
            silent = (now - beat) / 1e9
            if silent <= self.heartbeat_timeout:
                continue
            process = self.processes[rank]
            self.abort(rank, _STOPPED)
            with contextlib.suppress(OSError):
                process.kill()  # SIGKILL ends a stopped process too
            raise WorkerLostError(
                f"worker {rank} (pid {process.pid}) stopped responding: no heartbeat for "
                f"{silent:.1f} s (heartbeat_timeout={self.heartbeat_timeout:g} s) at step "
                f"{int(self.control[_PROGRESS + rank])}; the other workers were stopped"
            )

    def _read(self, readers: dict, handle, results: dict, on_message) -> None:
        rank = readers[handle]
        try:
            message = handle.recv_bytes()
        except (EOFError, OSError):
            del readers[handle]
            return
        if message[:1] == b"R":
            results[rank] = pickle.loads(message[1:])
            del readers[handle]
        elif message[:1] == b"E":
            self._fail_with(rank, pickle.loads(message[1:]))
        elif on_message is not None:
            on_message(rank, message)

    def _exited(self, rank: int, results: dict) -> None:
        """A worker process ended: fine if it reported its result, else stop the run."""
        process = self.processes[rank]
        process.join()
        if rank in results or self._drain_result(rank, results):
            return
        self.abort(rank, process.exitcode)
        raise WorkerLostError(
            f"worker {rank} (pid {process.pid}) {exit_reason(process.exitcode)}"
            f" at step {int(self.control[_PROGRESS + rank])}; the other workers were stopped"
        )

    def _drain_result(self, rank: int, results: dict) -> bool:
        """A worker that exited may still have its result in the pipe."""
        pipe = self.pipes[rank]
        with contextlib.suppress(EOFError, OSError):
            while pipe.poll():
                message = pipe.recv_bytes()
                if message[:1] == b"R":
                    results[rank] = pickle.loads(message[1:])
                    return True
                if message[:1] == b"E":
                    self._fail_with(rank, pickle.loads(message[1:]))
        return False

    def _fail_with(self, rank: int, failure: dict) -> None:
        self.abort(rank, 1)
        error = failure.get("exception")
        if not isinstance(error, BaseException):
            error = WorkerError(f"worker {rank} failed: {failure['summary']}")
        error.add_note(f"raised in worker {rank}:\n{failure['traceback']}")
        raise error

    def shutdown(self) -> None:
        """Stop every worker still running and release the shared memory."""
        if any(p.is_alive() for p in self.processes):
            self.control[_ABORT] = 1
            self.barrier.break_all()
        deadline = time.monotonic() + 2.0
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                process.kill()
                process.join(1.0)
        for pipe in self.pipes:
            pipe.close()
        self.arena.release()


def _default_start_method() -> str:
    return "fork" if sys.platform.startswith("linux") else "spawn"


def run(
    workers: int,
    layout: dict,
    target: Callable,
    args: Sequence = (),
    on_message: Callable | None = None,
    start_method: str | None = None,
    on_start: Callable | None = None,
    heartbeat_timeout: float | None = HEARTBEAT_TIMEOUT,
) -> list:
    """Run ``target(comm, *args)`` in ``workers`` processes; return their results by rank.

    ``on_start(group)`` runs in the parent once the workers are started.
    SIGTERM is turned into an exception in the parent for the duration, so
    that the workers are stopped and the segment unlinked. A worker whose
    heartbeat is older than ``heartbeat_timeout`` seconds (None: never) stops
    the run with :class:`WorkerLostError` naming it.
    """
    group = LocalGroup(workers, layout, start_method, heartbeat_timeout)
    with _terminate_raises():
        try:
            group.start(target, args)
            if on_start is not None:
                on_start(group)
            return group.collect(on_message)
        finally:
            group.shutdown()


class Terminated(SystemExit):
    """Raised in the parent when it receives SIGTERM during a run."""


@contextlib.contextmanager
def _terminate_raises():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------- in a worker


class LocalComm:
    """What a worker sees: its rank, the group size, all-reduce and the parent's pipe."""

    def __init__(self, group: LocalGroup, rank: int, pipe):
        self.group, self.rank, self.size, self.pipe = group, rank, group.workers, pipe
        self.control = group.control
        self.parent_pid = group.parent_pid
        self._calls = self._gathers = 0
        self.seconds = {"barrier": 0.0, "reduce": 0.0}  # inside allreduce_sum

    def progress(self, step: int) -> None:
        """Publish how far this worker got (used in error messages)."""
        self.control[_PROGRESS + self.rank] = step

    def barrier(self) -> None:
        self.group.barrier.wait(self.rank, self.parent_pid)

    def allreduce_sum(self, buffer: np.ndarray) -> np.ndarray:
        """Sum ``buffer`` over all workers, in place; every worker gets the same bits."""
        slots = self.group.arena["slots"][self._calls % 2]
        self._calls += 1
        n = buffer.size
        if n > slots.shape[1]:
            raise ValueError(f"all-reduce of {n} values exceeds the {slots.shape[1]} reserved")
        start = time.perf_counter()
        slots[self.rank, :n] = buffer
        arrived = time.perf_counter()
        self.barrier()
        passed = time.perf_counter()
        # Rank order, in every worker: the result is bitwise identical everywhere.
        if self.size == 1:
            np.copyto(buffer, slots[0, :n])
        else:
            np.add(slots[0, :n], slots[1, :n], out=buffer)
            for rank in range(2, self.size):
                buffer += slots[rank, :n]
        self.seconds["barrier"] += passed - arrived
        self.seconds["reduce"] += (arrived - start) + (time.perf_counter() - passed)
        return buffer

    def allgather(self, piece: np.ndarray, out: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Join every worker's ``piece`` (``counts[r]`` values from rank r) into ``out``."""
        area = self.group.arena["gathered"][self._gathers % 2]  # double-buffered like slots
        self._gathers += 1
        start = int(np.sum(counts[: self.rank]))
        area[start : start + piece.size] = piece
        self.barrier()
        np.copyto(out, area[: out.size])
        return out

    # -- messages to and from the parent (async mode): small tokens, never arrays

    def send(self, message: bytes) -> None:
        self.pipe.send_bytes(b"M" + message)

    def recv(self) -> bytes:
        while not self.pipe.poll(POLL_SECONDS):
            check_abort(self.control, self.parent_pid)
        try:
            return self.pipe.recv_bytes()
        except EOFError:
            raise WorkerLostError("the parent process closed the connection") from None


def _worker_main(group: LocalGroup, rank: int, pipe, target: Callable, args: tuple) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    comm = LocalComm(group, rank, pipe)
    if group.heartbeat_timeout is not None:
        threading.Thread(
            target=_beat, args=(group.control, _PROGRESS + group.workers + rank,
                                group.heartbeat_timeout / 4),
            name="adcompiler-heartbeat", daemon=True,
        ).start()  # fmt: skip
    try:
        result = target(comm, *args)
    except WorkerLostError:
        os._exit(3)  # another worker's failure, which the parent reports
    except BaseException as error:  # noqa: BLE001 - everything goes back to the parent
        failure = {
            "summary": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
        }
        try:
            failure["exception"] = pickle.loads(pickle.dumps(error))
        except Exception:  # noqa: BLE001 - an unpicklable exception travels as text
            pass
        with contextlib.suppress(OSError):
            pipe.send_bytes(b"E" + pickle.dumps(failure))
        os._exit(1)
    pipe.send_bytes(b"R" + pickle.dumps(result))
    pipe.close()


def _beat(control: np.ndarray, word: int, interval: float) -> None:
    """The worker's heartbeat thread: the time, every ``interval`` seconds, until exit."""
    while True:
        control[word] = time.monotonic_ns()
        time.sleep(interval)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
