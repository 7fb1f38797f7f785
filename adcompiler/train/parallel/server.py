"""Asynchronous data parallelism: a parameter server applies gradients as they arrive.

The server holds the parameters, the optimizer state and a version counter
``v`` (updates applied so far). It hands each worker the current parameters,
their version and a mini-batch ``(epoch, index)``; the worker computes the
gradient of the whole mini-batch and sends it back with the version it
read. On arrival::

    staleness = v - v_read        (updates applied since the worker read the parameters)
    staleness <= max_staleness  ->  apply it (v += 1); fresh parameters and the next batch
    staleness >  max_staleness  ->  drop it; fresh parameters and the SAME batch again

so every applied gradient is at most ``max_staleness`` updates old, every
batch is applied exactly once per epoch, and no worker waits for another
(except at the end of an epoch, where the server finishes the epoch's
batches, evaluates, records the epoch and writes the checkpoint before
handing out the next one). ``history["parallel"]`` gets ``staleness``:
counts of applied gradients by staleness (index = staleness), and
``rejected``: how many were dropped.

Transports (``local``: shared memory + tokens over pipes; ``mpi``:
``Send``/``Irecv``) move only ``(params, version, epoch, index)`` one way and
``(grads, loss, version, epoch, index)`` the other, as flat float64 buffers.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from adcompiler.train import tree
from adcompiler.train.loop import TrainState
from adcompiler.train.parallel.job import (
    Job,
    Packer,
    check_finite,
    parallel_record,
    record_step,
)
from adcompiler.train.parallel.update import Solo, make_update

STOP = -1  # batch index that tells a worker to finish


class ParameterServer:
    """The server's bookkeeping, independent of how messages travel.

    ``assign_all()`` gives the first replies; ``on_gradient(...)`` applies
    or drops one gradient and returns the replies to send, as a list of
    ``(worker, epoch, index)``; the parameters to send are ``self.flat``
    and their version ``self.state.step``.
    """

    def __init__(self, job: Job, state: TrainState, workers: int, backend: str):
        if workers < 1:
            raise ValueError("async mode needs at least one worker besides the server")
        self.job, self.state, self.workers = job, state, workers
        bound = workers if job.max_staleness is None else job.max_staleness
        if bound < 0:
            raise ValueError(f"max_staleness must be >= 0, got {bound}")
        self.max_staleness = bound
        self.update = make_update(Solo(), job.optimizer, state)  # one flat vector if elementwise
        self.flat = self.update.flat
        self.record = parallel_record(
            state, mode="async", backend=backend, workers=workers, max_staleness=bound
        )
        self.record.setdefault("staleness", [])
        self.record.setdefault("rejected", 0)
        self.queue: deque = deque()
        self.parked: list[int] = []
        self.in_flight = 0
        self.done = False
        self.seconds = {"apply": 0.0, "evaluate": 0.0}
        self.epoch_started = time.perf_counter()
        self._open_epoch(first=state.batch)

    @property
    def version(self) -> int:
        return self.state.step

    def _open_epoch(self, first: int = 0) -> None:
        state = self.state
        if state.epoch >= self.job.epochs or state.stopped:
            self.done = True
            return
        self.queue = deque(range(first, len(self.job.batches(state.epoch))))
        self.epoch_started = time.perf_counter()

    def _close_epoch(self) -> None:
        clock = time.perf_counter()
        self.job.run.end_epoch(self.state, clock - self.epoch_started, quiet=self.job.quiet)
        if self.job.checkpoint:
            self.update.gather_state()
            self.job.save(self.state)
        self.seconds["evaluate"] += time.perf_counter() - clock
        self._open_epoch()

    def assign_all(self) -> list[tuple[int, int, int]]:
        self.parked = list(range(self.workers))
        return self._hand_out()

    def _hand_out(self) -> list[tuple[int, int, int]]:
        replies = []
        while self.parked and (self.queue or self.done):
            worker = self.parked.pop(0)
            if self.done:
                replies.append((worker, self.state.epoch, STOP))
            else:
                replies.append((worker, self.state.epoch, self.queue.popleft()))
                self.in_flight += 1
        return replies

    def on_gradient(
        self,
        worker: int,
        grads: np.ndarray,
        value: float,
        read_version: int,
        epoch: int,
        index: int,
    ) -> list[tuple[int, int, int]]:
        """Apply or drop one worker's gradient; returns the replies to send."""
        state = self.state
        staleness = state.step - read_version
        if staleness > self.max_staleness:
            self.record["rejected"] += 1
            return [(worker, epoch, index)]
        clock = time.perf_counter()
        check_finite(value, state)
        counts = self.record["staleness"]
        counts.extend([0] * (staleness + 1 - len(counts)))
        counts[staleness] += 1
        self.update.apply(grads)
        if not self.update.sharded:
            self.flat = self.update.flat
        record_step(state, value, len(self.job.batches(epoch)[index]))
        self.in_flight -= 1
        self.parked.append(worker)
        self.seconds["apply"] += time.perf_counter() - clock
        if not self.queue and self.in_flight == 0:
            self._close_epoch()
        return self._hand_out()

    def result(self) -> TrainState:
        self.update.gather_state()
        self.record["seconds"] = {k: round(v, 6) for k, v in self.seconds.items()}
        return self.state


def run_async_worker(transport, job: Job, spec: tree.FlatSpec) -> dict:
    """A worker: pull parameters and a batch, push the gradient, until told to stop."""
    buffer = np.empty(spec.size, dtype=np.float64)
    packer = None
    computed, seconds = 0, {"compute": 0.0, "communicate": 0.0}
    clock = time.perf_counter()
    while True:
        flat, version, epoch, index = transport.pull()
        tick = time.perf_counter()
        seconds["communicate"] += tick - clock
        if index == STOP:
            return {"computed": computed, "seconds": seconds, "flat": flat, "version": version}
        params = tree.unflatten(flat, spec)
        value, grads = job.step(params, job.dataset.take(job.batches(epoch)[index]))
        if packer is None:
            packer = Packer(params, buffer)
        packer.pack(grads)
        clock = time.perf_counter()
        seconds["compute"] += clock - tick
        transport.push(buffer, float(value), version, epoch, index)
        computed += 1
