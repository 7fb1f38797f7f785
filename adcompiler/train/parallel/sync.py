"""Synchronous data parallelism: every step, one all-reduce of one packed buffer.

Each of ``N`` workers takes its shard of every global mini-batch
(``np.array_split(rows, N)[rank]``), so the run visits exactly the batches a
single process would. With ``n`` rows in the batch and ``n_r`` in shard
``r``, and the loss a mean over rows::

    buffer = [ (n_r / n) * grads_r  (flattened) ,  (n_r / n) * loss_r ]
    allreduce_sum(buffer)       ->  [ full-batch mean gradient , full-batch mean loss ]

and every worker applies the same optimizer update to the same bits, so
the replicas never drift apart (for elementwise optimizers each worker
updates a slice and the slices are all-gathered: :mod:`.update`).
Weighting by ``n_r / n`` is what makes uneven shards (and empty ones, when
a batch has fewer rows than workers) exact. Rank 0 evaluates, keeps the
history, decides early stopping (and tells the others with a one-number
all-reduce) and writes the checkpoints.
"""

from __future__ import annotations

import time

import numpy as np

from adcompiler.train import tree
from adcompiler.train.loop import TrainState
from adcompiler.train.parallel.job import (
    Job,
    Packer,
    check_finite,
    parallel_record,
    record_step,
    skip_epoch_end,
)
from adcompiler.train.parallel.update import make_update


def run_sync(comm, job: Job, state: TrainState, backend: str) -> TrainState:
    """Train on this worker's shards until the run ends; returns the final state."""
    size = tree.flat_spec(state.params).size
    buffer = np.empty(size + 1, dtype=np.float64)
    packer = Packer(state.params, buffer)
    update = make_update(comm, job.optimizer, state)
    seconds = {"compute": 0.0, "communicate": 0.0, "update": 0.0}
    while state.epoch < job.epochs and not state.stopped:
        batches = job.batches(state.epoch)
        started = time.perf_counter()
        while state.batch < len(batches):
            rows = batches[state.batch]
            clock = time.perf_counter()
            _contribution(comm, job, state.params, rows, packer, buffer)
            tick = time.perf_counter()
            comm.allreduce_sum(buffer)
            tock = time.perf_counter()
            value = float(buffer[size])
            check_finite(value, state)
            gathering = update.gather_seconds
            update.apply(buffer[:size])
            record_step(state, value, len(rows))
            comm.progress(state.step)
            gathered = update.gather_seconds - gathering  # the all-gather is communication
            seconds["compute"] += tick - clock
            seconds["communicate"] += tock - tick + gathered
            seconds["update"] += time.perf_counter() - tock - gathered
            if job.checkpoint and job.checkpoint_every and state.step % job.checkpoint_every == 0:
                update.gather_state()
                if comm.rank == 0:
                    job.save(state)
        _end_epoch(comm, job, state, update, time.perf_counter() - started)
    update.gather_state()
    parallel_record(
        state,
        mode="sync",
        backend=backend,
        workers=comm.size,
        sharded_update=update.sharded,
        seconds={k: round(v, 6) for k, v in seconds.items()},
    )
    if hasattr(comm, "seconds"):  # local backend: communicate = barrier wait + copy and sum
        state.history["parallel"]["allreduce_seconds"] = {
            k: round(v, 6) for k, v in comm.seconds.items()
        }
    return state


def _contribution(comm, job: Job, params, rows, packer: Packer, buffer: np.ndarray) -> None:
    """Write this worker's weighted gradient (through ``packer``) and loss into ``buffer``."""
    shard = np.array_split(rows, comm.size)[comm.rank]
    if len(shard) == 0:
        buffer.fill(0.0)
        return
    value, grads = job.step(params, job.dataset.take(shard))
    weight = len(shard) / len(rows)
    packer.pack(grads, scale=weight)
    buffer[-1] = float(value) * weight


def _end_epoch(comm, job: Job, state: TrainState, update, seconds: float) -> None:
    """Rank 0 evaluates and records; everyone learns whether early stopping fired."""
    if job.checkpoint:
        update.gather_state()
    if comm.rank == 0:
        job.run.end_epoch(state, seconds, quiet=job.quiet)
        job.save(state)
    else:
        skip_epoch_end(state)
    flag = np.array([1.0 if (comm.rank == 0 and state.stopped) else 0.0])
    comm.allreduce_sum(flag)
    state.stopped = bool(flag[0])
