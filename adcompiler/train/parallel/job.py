"""What every process of a data-parallel run knows: the same :class:`~adcompiler.train.loop.Run`.

A :class:`Job` wraps the training loop's ``Run`` (objective, data set,
optimizer, batch order, evaluation, early stopping) with the options of
parallel training. Every process builds or inherits the same one, so the
state a run starts from is the loop's own ``TrainState``, fresh or read
from a checkpoint written by one process; sync-mode checkpoints are
interchangeable with single-process ones::

    job = Job(Run(loss, params, data, epochs=5, batch_size=64), checkpoint="run.ckpt")
    state = job.initial_state(resume)          # TrainState(params, opt_state, epoch, batch, ...)
    job.batches(state.epoch)[state.batch]      # rows of the next global mini-batch
    loss, grads = job.step(state.params, job.run.dataset.take(rows))
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from adcompiler.train import tree
from adcompiler.train.data import batch_order, batch_slices
from adcompiler.train.loop import NonFiniteLossError, Run, TrainState
from adcompiler.train.threads import blas_threads, set_blas_threads


@dataclass
class Job:
    """A training run plus its parallel options; identical in every process.

    Args:
        run: the loop's ``Run`` (its loss must be a mean over the batch's rows:
            sync mode weights each shard's gradient by its share of the rows).
        checkpoint: path the one writing process saves to.
        checkpoint_every: sync mode: also save every this many steps (async
            mode saves at the end of every epoch only).
        max_staleness: async mode: bound on how many updates old an applied gradient may be.
        quiet: no per-epoch lines on stdout.
    """

    run: Run
    checkpoint: str | None = None
    checkpoint_every: int | None = None
    max_staleness: int | None = None
    quiet: bool = True
    _slices: dict = field(default_factory=dict, repr=False)

    @property
    def dataset(self):
        return self.run.dataset

    @property
    def optimizer(self):
        return self.run.optimizer

    @property
    def epochs(self) -> int:
        return self.run.epochs

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The rows of every global mini-batch of ``epoch`` (a function of seed and epoch)."""
        if epoch not in self._slices:
            self._slices.clear()
            order = batch_order(len(self.dataset), self.run.seed, epoch)
            self._slices[epoch] = batch_slices(order, self.run.batch_size, self.run.drop_last)
        return self._slices[epoch]

    def step(self, params: tree.Tree, batch: tuple) -> tuple[float, tree.Tree]:
        """The loss on ``batch`` and its gradient, laid out like ``params``."""
        return self.run.objective.value_and_grad(params, batch)

    def initial_state(self, resume=None) -> TrainState:
        """A fresh state, or the one in checkpoint ``resume``."""
        return self.run.resume(resume) if resume is not None else self.run.start()

    def save(self, state: TrainState) -> None:
        """Write ``state`` to the checkpoint (call from exactly one process)."""
        if self.checkpoint is not None:
            state.save(self.checkpoint, self.run.identity)


def check_finite(value: float, state: TrainState) -> None:
    """The loop's error for a NaN or infinite loss, naming the step."""
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"the loss became {value} at step {state.step + 1} "
            f"(epoch {state.epoch + 1}, batch {state.batch + 1}); lower the learning rate "
            "or check the data and the loss for overflow"
        )


def record_step(state: TrainState, value: float, examples: int) -> None:
    """The loop's per-step bookkeeping after an update on a batch of ``examples`` rows."""
    state.step += 1
    state.batch += 1
    state.loss_sum += value * examples
    state.examples += examples
    state.history.setdefault("step_loss", []).append(value)


def skip_epoch_end(state: TrainState) -> None:
    """What ``Run.end_epoch`` does to the counters, for processes that keep no history."""
    state.epoch += 1
    state.batch = 0
    state.loss_sum = 0.0
    state.examples = 0


def parallel_record(state: TrainState, **info) -> dict:
    """``history["parallel"]``: how the run was parallelized, and its timings."""
    record = state.history.setdefault("parallel", {})
    record.update(info)
    return record


def share_cores(processes: int) -> None:
    """Cap BLAS threads so that ``processes`` on this machine do not oversubscribe its cores.

    OpenBLAS threads spin while they wait, so two workers with two threads each
    on two cores run many times slower than with one each.
    """
    cores = available_cores()
    current = blas_threads()
    if current and current * processes > cores:
        set_blas_threads(max(1, cores // processes))


def available_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Packer:
    """A tree laid out in one flat float64 buffer, with the views computed once.

    ``tree.flatten``/``tree.unflatten`` rebuild their layout on every call;
    a training step packs and unpacks the same layout thousands of times::

        packer = Packer(params, buffer)     # buffer: float64, at least spec.size long
        packer.pack(grads, scale=0.5)       # buffer[:size] = 0.5 * grads, leaf by leaf
        packer.unpack()                     # a tree of views into buffer (float64 leaves)
    """

    def __init__(self, template: tree.Tree, buffer: np.ndarray):
        self.spec = tree.flat_spec(template)
        self.buffer = buffer[: self.spec.size]
        self.views, start = [], 0
        for shape, size in zip(self.spec.shapes, self.spec.sizes, strict=True):
            self.views.append(self.buffer[start : start + size].reshape(shape))
            start += size
        all_float64 = all(np.dtype(d) == np.float64 for d in self.spec.dtypes)
        self._tree = tree.build(self.spec.structure, self.views) if all_float64 else None

    def pack(self, values: tree.Tree, scale: float = 1.0) -> None:
        leaves = tree.leaves(values)
        if len(leaves) != len(self.views):
            raise ValueError(
                f"gradients have {len(leaves)} arrays, the parameters {len(self.views)}"
            )
        for view, leaf in zip(self.views, leaves, strict=True):
            if scale == 1.0:
                np.copyto(view, leaf)
            else:
                np.multiply(leaf, scale, out=view)

    def unpack(self) -> tree.Tree:
        if self._tree is not None:
            return self._tree
        return tree.unflatten(self.buffer, self.spec)
