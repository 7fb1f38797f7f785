"""Sync and async training on the embedded backend (see :mod:`.local` for the machinery).

::

    sync:   N worker processes run sync.run_sync; slots (2 x N x (P+1)) in shared memory
    async:  the parent is the parameter server; worker w reads params[w] and writes
            grads[w] (shared memory) and exchanges 32-byte tokens with the parent:
              worker -> parent  (loss, version read, epoch, batch)
              parent -> worker  (version, epoch, batch or STOP)
"""

from __future__ import annotations

import hashlib
import struct

from adcompiler.train import tree
from adcompiler.train.loop import TrainState
from adcompiler.train.parallel import local
from adcompiler.train.parallel.job import Job, share_cores
from adcompiler.train.parallel.server import ParameterServer, run_async_worker
from adcompiler.train.parallel.sync import run_sync

_UP = struct.Struct("<dqqq")  # loss, version read, epoch, batch index
_DOWN = struct.Struct("<qqq")  # version, epoch, batch index (or STOP)


def fit_sync(
    job: Job,
    state: TrainState,
    workers: int,
    start_method=None,
    heartbeat_timeout: float | None = local.HEARTBEAT_TIMEOUT,
) -> TrainState:
    """``workers`` processes, one all-reduce per step; returns rank 0's final state."""
    size = tree.flat_spec(state.params).size
    layout = {"slots": ((2, workers, size + 1), "float64"), "gathered": ((2, size), "float64")}
    results = local.run(workers, layout, _sync_worker, (job, state), start_method=start_method,
                        heartbeat_timeout=heartbeat_timeout)  # fmt: skip
    digests = {r["digest"] for r in results}
    if len(digests) != 1:
        raise RuntimeError("the workers' parameters differ after synchronous training")
    return results[0]["state"]


def _sync_worker(comm, job: Job, state: TrainState) -> dict:
    share_cores(comm.size)
    final = run_sync(comm, job, state, "local")
    digest = hashlib.sha256(tree.flatten(final.params)[0].tobytes()).hexdigest()
    return {"digest": digest, "state": final if comm.rank == 0 else None}


def fit_async(
    job: Job,
    state: TrainState,
    workers: int,
    start_method=None,
    heartbeat_timeout: float | None = local.HEARTBEAT_TIMEOUT,
) -> TrainState:
    """The parent serves parameters to ``workers`` processes; returns the server's state."""
    spec = tree.flat_spec(state.params)
    layout = {
        "params": ((workers, spec.size), "float64"),
        "grads": ((workers, spec.size), "float64"),
    }
    server = ParameterServer(job, state, workers, "local")
    holder = {}

    def send(replies):
        group = holder["group"]
        for worker, epoch, index in replies:
            group.arena["params"][worker] = server.flat
            group.pipes[worker].send_bytes(_DOWN.pack(server.version, epoch, index))

    def on_start(group):
        holder["group"] = group
        send(server.assign_all())

    def on_message(rank, message):
        value, version, epoch, index = _UP.unpack(message[1:])
        grads = holder["group"].arena["grads"][rank]
        send(server.on_gradient(rank, grads, value, version, epoch, index))

    results = local.run(
        workers,
        layout,
        _async_worker,
        (job, spec),
        on_message=on_message,
        start_method=start_method,
        on_start=on_start,
        heartbeat_timeout=heartbeat_timeout,
    )
    final = server.result()
    final.history["parallel"]["worker_seconds"] = [r["seconds"] for r in results]
    final.history["parallel"]["computed"] = [r["computed"] for r in results]
    return final


class _WorkerTransport:
    def __init__(self, comm):
        self.comm = comm
        self.params = comm.group.arena["params"][comm.rank]
        self.grads = comm.group.arena["grads"][comm.rank]

    def pull(self):
        version, epoch, index = _DOWN.unpack(self.comm.recv())
        self.comm.progress(version)
        return self.params, version, epoch, index

    def push(self, grads, value, version, epoch, index):
        self.grads[:] = grads
        self.comm.send(_UP.pack(value, version, epoch, index))


def _async_worker(comm, job: Job, spec: tree.FlatSpec) -> dict:
    share_cores(comm.size)
    stats = run_async_worker(_WorkerTransport(comm), job, spec)
    del stats["flat"], stats["version"]
    return stats
