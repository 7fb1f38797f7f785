"""The MPI backend: mpi4py, uppercase buffer calls only, launched with ``mpiexec``.

::

    mpiexec -n N python script.py          # every rank runs the same script and fit(...)

    sync:   every rank is a worker:  Allreduce(IN_PLACE, [grads | loss], SUM)  once per step
    async:  rank 0 is the parameter server, ranks 1..N-1 are workers:
              worker -> server   Send([grads | loss, version, epoch, batch])     tag GRADIENT
              server -> worker   Send([params | version, epoch, batch or STOP])  tag PARAMS
            the server keeps one Irecv posted per worker and serves whichever completes.

When this node runs more ranks than it has cores (``-n 3`` on 2 cores),
waits are "polite": a request is tested, yielding the core to other
processes between tests (``sched_yield``), and after 20 ms with sleeps that
grow to a millisecond, instead of MPICH's busy polling, so that ranks
sharing a core do not starve each other. Otherwise the blocking calls
are used (lowest latency). ``ADCOMPILER_MPI_WAIT=blocking|polite`` overrides.
Only rank 0 evaluates, keeps the history and writes checkpoints; a rank that
raises calls ``Abort`` so the others never wait forever, and ``mpiexec``
stops the whole job when any rank dies (it prints the pid and the signal;
unless ``quiet``, every rank first prints a line mapping its pid to its rank).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import traceback

import numpy as np

from adcompiler.train import checkpoint as checkpoints
from adcompiler.train import tree
from adcompiler.train.loop import TrainState
from adcompiler.train.parallel.job import Job, available_cores, share_cores
from adcompiler.train.parallel.server import STOP, ParameterServer, run_async_worker
from adcompiler.train.parallel.sync import run_sync

GRADIENT, PARAMS = 11, 12
YIELD_SECONDS = 0.02
MAX_SLEEP = 1e-3
_polite = False  # set by configure_waits()


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(
            "backend='mpi' needs mpi4py and an MPI library: pip install 'adcompiler[mpi]' "
            "(mpi4py and the MPICH wheel)"
        ) from error
    return MPI


def configure_waits(comm) -> bool:
    """Choose polite waits if this node has more ranks than cores; returns the choice.

    Also caps BLAS threads so the ranks on this node share its cores.
    """
    global _polite
    MPI = _mpi()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_ranks = node.Get_size()
    node.Free()
    share_cores(local_ranks)
    choice = os.environ.get("ADCOMPILER_MPI_WAIT", "")
    if choice in ("blocking", "polite"):
        _polite = choice == "polite"
    else:
        _polite = local_ranks > available_cores()
    return _polite


def wait(request) -> None:
    """Complete ``request``; politely (without busy-polling a shared core) if configured."""
    if not _polite:
        request.Wait()
        return
    _politely(lambda: True if request.Test() else None)


def wait_any(requests) -> int:
    """Index of a completed request among ``requests`` (polite, like :func:`wait`)."""
    MPI = _mpi()
    if not _polite:
        return MPI.Request.Waitany(requests)

    def test():
        index, done = MPI.Request.Testany(requests)
        return index if done and index != MPI.UNDEFINED else None

    return _politely(test)


def _politely(test):
    """Call ``test`` until it returns something: yielding the core between calls, and
    after ``YIELD_SECONDS`` sleeping between them (up to ``MAX_SLEEP``)."""
    started, pause = time.perf_counter(), 0.0
    while True:
        result = test()
        if result is not None:
            return result
        if time.perf_counter() - started < YIELD_SECONDS:
            os.sched_yield()
        else:
            time.sleep(pause)
            pause = min(max(2 * pause, 20e-6), MAX_SLEEP)


class MPIComm:
    """The sync-mode communicator: rank, size and an in-place sum of one buffer."""

    def __init__(self, comm=None):
        MPI = _mpi()
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._sum, self._in_place, self._double = MPI.SUM, MPI.IN_PLACE, MPI.DOUBLE

    def allreduce_sum(self, buffer: np.ndarray) -> np.ndarray:
        if self.size == 1:
            return buffer
        if _polite:
            wait(self.comm.Iallreduce(self._in_place, buffer, op=self._sum))
        else:
            self.comm.Allreduce(self._in_place, buffer, op=self._sum)
        return buffer

    def allgather(self, piece: np.ndarray, out: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Join every rank's ``piece`` (``counts[r]`` values from rank r) into ``out``."""
        if self.size == 1:
            np.copyto(out, piece)
            return out
        displacements = np.concatenate([[0], np.cumsum(counts)[:-1]])
        receive = [out, counts, displacements, self._double]
        if _polite:
            wait(self.comm.Iallgatherv(piece, receive))
        else:
            self.comm.Allgatherv(piece, receive)
        return out

    def barrier(self) -> None:
        if _polite:
            wait(self.comm.Ibarrier())
        else:
            self.comm.Barrier()

    def progress(self, step: int) -> None:
        pass


def fit(job: Job, resume, workers: int | None, mode: str) -> TrainState:
    """Run this rank's part of the job; every rank returns a state (full history on rank 0)."""
    MPI = _mpi()
    comm = MPI.COMM_WORLD
    size = comm.Get_size()
    expected = size if mode == "sync" else size - 1
    if expected < 1:
        raise ValueError(
            "mode='async' with backend='mpi' needs a server and at least one worker: "
            "launch with  mpiexec -n 3 python script.py  (rank 0 serves, the others compute)"
        )
    if workers not in (None, 1, expected):
        ranks = workers if mode == "sync" else workers + 1
        raise ValueError(
            f"workers={workers} with mode={mode!r} needs {ranks} MPI ranks, but this job has "
            f"{size}: launch with  mpiexec -n {ranks} python script.py"
        )
    configure_waits(comm)
    if not job.quiet and size > 1:
        # mpiexec names a dead process by pid only; this line maps pids to ranks.
        sys.stderr.write(
            f"[adcompiler] mpi rank {comm.Get_rank()} of {size}: pid {os.getpid()} "
            f"on {MPI.Get_processor_name()} ({mode} mode)\n"
        )
        sys.stderr.flush()
    try:
        if job.checkpoint is not None and comm.Get_rank() == 0:  # rank 0 writes it
            checkpoints.check_writable(job.checkpoint)  # before the first step, not after
        state = job.initial_state(resume)  # every rank reads it: a shared file system
        if mode == "sync":
            return _fit_sync(job, state, MPIComm(comm))
        return _fit_async(job, state, comm)
    except Exception:
        if size == 1:
            raise
        sys.stderr.write(f"[rank {comm.Get_rank()}] " + traceback.format_exc())
        sys.stderr.flush()
        time.sleep(0.5)  # let mpiexec forward the report before Abort tears the job down
        comm.Abort(1)
        raise


def _fit_sync(job: Job, state: TrainState, comm: MPIComm) -> TrainState:
    state = run_sync(comm, job, state, "mpi")
    _check_replicas(comm, state)
    state.history["parallel"]["rank"] = comm.rank
    return state


def _check_replicas(comm: MPIComm, state: TrainState) -> None:
    """Every rank must hold the same bits; compare a digest of the parameters."""
    if comm.size == 1:
        return
    digest = hashlib.sha256(tree.flatten(state.params)[0].tobytes()).digest()
    mine = np.frombuffer(digest[:8], dtype=np.int64).astype(np.float64)
    low, high = mine.copy(), mine.copy()
    MPI = _mpi()
    wait(comm.comm.Iallreduce(MPI.IN_PLACE, low, op=MPI.MIN))
    wait(comm.comm.Iallreduce(MPI.IN_PLACE, high, op=MPI.MAX))
    if low[0] != high[0]:
        raise RuntimeError("the ranks' parameters differ after synchronous training")


def _fit_async(job: Job, state: TrainState, comm) -> TrainState:
    spec = tree.flat_spec(state.params)
    if comm.Get_rank() == 0:
        return _serve(job, state, comm, spec)
    stats = run_async_worker(_WorkerTransport(comm, spec.size), job, spec)
    state.params = tree.tree_map(np.copy, tree.unflatten(stats.pop("flat"), spec))
    state.step = stats.pop("version")  # the server's final version: updates applied
    state.history = {
        "parallel": {"mode": "async", "backend": "mpi", "rank": comm.Get_rank(), **stats}
    }
    return state


def _serve(job: Job, state: TrainState, comm, spec: tree.FlatSpec) -> TrainState:
    MPI = _mpi()
    workers = comm.Get_size() - 1
    server = ParameterServer(job, state, workers, "mpi")
    size = spec.size
    inbox = np.empty((workers, size + 4), dtype=np.float64)
    outbox = np.empty((workers, size + 3), dtype=np.float64)
    sends = [None] * workers
    receives = [MPI.REQUEST_NULL] * workers
    stopped = 0

    def send(replies) -> int:
        for worker, epoch, index in replies:
            if sends[worker] is not None:
                wait(sends[worker])
            if index != STOP:  # a worker answers every batch, so its receive is posted first
                receives[worker] = comm.Irecv(inbox[worker], source=worker + 1, tag=GRADIENT)
            outbox[worker, :size] = server.flat
            outbox[worker, size:] = (server.version, epoch, index)
            sends[worker] = comm.Isend(outbox[worker], dest=worker + 1, tag=PARAMS)
        return sum(1 for _, _, index in replies if index == STOP)

    stopped = send(server.assign_all())
    while stopped < workers:
        worker = wait_any(receives)
        receives[worker] = MPI.REQUEST_NULL
        message = inbox[worker]
        value, version, epoch, index = message[size:]
        replies = server.on_gradient(
            worker, message[:size], float(value), int(version), int(epoch), int(index)
        )
        stopped += send(replies)
    for request in sends:
        if request is not None:
            wait(request)
    final = server.result()
    final.history["parallel"]["rank"] = 0
    return final


class _WorkerTransport:
    def __init__(self, comm, size: int):
        self.comm, self.size = comm, size
        self.inbox = np.empty(size + 3, dtype=np.float64)
        self.outbox = np.empty(size + 4, dtype=np.float64)

    def pull(self):
        wait(self.comm.Irecv(self.inbox, source=0, tag=PARAMS))
        version, epoch, index = (int(x) for x in self.inbox[self.size :])
        return self.inbox[: self.size], version, epoch, index

    def push(self, grads, value, version, epoch, index):
        self.outbox[: self.size] = grads
        self.outbox[self.size :] = (value, version, epoch, index)
        wait(self.comm.Isend(self.outbox, dest=0, tag=GRADIENT))
