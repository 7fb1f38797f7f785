"""The sync-mode optimizer step: on the whole tree, or sharded over the flat vector.

After the all-reduce every worker holds the same mean gradient. The plain
way (:class:`TreeUpdate`) is for every worker to run the optimizer on the
whole parameter tree. When the optimizer is elementwise (SGD with or without
(Nesterov) momentum, Adam, AdamW) and every parameter is float64, each
worker instead updates only its slice of the flat parameter vector, with
only that slice of the optimizer state, and the workers all-gather the
slices (:class:`ShardedUpdate`)::

    worker r:  params[lo_r:hi_r], state_r = opt.update(params[lo_r:hi_r], grads[lo_r:hi_r], state_r)
    all:       params = allgather(params[lo_0:hi_0], ..., params[lo_N-1:hi_N-1])

Elementwise arithmetic does not depend on how the vector is cut, so the
result has the bits the whole-tree update would give; the update costs 1/N
of the work, on one array instead of one per leaf. The full optimizer state
is gathered only when a checkpoint is written and at the end.
"""

from __future__ import annotations

import time

import numpy as np

from adcompiler.train import tree
from adcompiler.train.loop import TrainState
from adcompiler.train.optimizers import SGD, Adam, AdamW
from adcompiler.train.parallel.job import Packer

ELEMENTWISE = (SGD, Adam, AdamW)  # exact types: a subclass may add a non-elementwise step
BLOCK = 16_000  # values per array handed to the optimizer (125 KiB: under malloc's mmap threshold)


def make_update(comm, optimizer, state: TrainState):
    """A :class:`ShardedUpdate` where that gives the same bits, else a :class:`TreeUpdate`.

    ``comm`` needs ``rank``, ``size`` and ``allgather``; :class:`Solo` is the
    one-process communicator (the async parameter server uses it, to update
    one flat vector instead of one array per leaf).
    """
    spec = tree.flat_spec(state.params)
    float64 = all(np.dtype(d) == np.float64 for d in spec.dtypes)
    if type(optimizer) in ELEMENTWISE and float64 and spec.size >= comm.size:
        return ShardedUpdate(comm, optimizer, state, spec)
    return TreeUpdate(optimizer, state, spec)


class Solo:
    """The communicator of a single process."""

    rank, size = 0, 1

    def allgather(self, piece: np.ndarray, out: np.ndarray, counts) -> np.ndarray:
        np.copyto(out, piece)
        return out


class TreeUpdate:
    """Every worker updates the whole tree (any optimizer, any dtypes)."""

    sharded = False
    gather_seconds = 0.0

    def __init__(self, optimizer, state: TrainState, spec: tree.FlatSpec):
        self.optimizer, self.state, self.spec = optimizer, state, spec
        self._flat = np.empty(spec.size, dtype=np.float64)
        # One packer per gradient buffer (they are long-lived; a packer's views keep
        # its buffer alive, so an address cannot be reused while it is cached).
        self._packers: dict[int, Packer] = {}

    @property
    def flat(self) -> np.ndarray:
        """The parameters as one flat vector (a copy, refreshed at each call)."""
        return tree.flatten(self.state.params, out=self._flat)[0]

    def apply(self, grads: np.ndarray) -> None:
        """Update ``state.params`` and ``state.opt_state`` with the flat gradient ``grads``."""
        address = grads.__array_interface__["data"][0]
        if address not in self._packers:
            self._packers[address] = Packer(self.state.params, grads)
        state = self.state
        state.params, state.opt_state = self.optimizer.update(
            state.params, self._packers[address].unpack(), state.opt_state
        )

    def gather_state(self) -> None:
        """Nothing to do: ``state.opt_state`` is always whole."""


class ShardedUpdate:
    """Each worker updates its slice of the flat parameters; an all-gather joins them.

    The slice is handed to the optimizer as a tuple of blocks of at most
    ``BLOCK`` values: above 128 KiB, glibc's malloc serves every temporary
    array with a fresh ``mmap`` (and page faults), which makes one update of
    a 17,000-value vector slower than the same update leaf by leaf.
    """

    sharded = True

    def __init__(self, comm, optimizer, state: TrainState, spec: tree.FlatSpec):
        self.comm, self.optimizer, self.state, self.spec = comm, optimizer, state, spec
        bounds = np.linspace(0, spec.size, comm.size + 1).astype(int)
        self.counts = np.diff(bounds)
        lo, hi = int(bounds[comm.rank]), int(bounds[comm.rank + 1])
        self.blocks = [slice(i, min(i + BLOCK, hi)) for i in range(lo, hi, BLOCK)]
        self.flat = np.empty(spec.size, dtype=np.float64)
        params = Packer(state.params, self.flat)
        params.pack(state.params)
        state.params = params.unpack()  # views into self.flat, updated in place
        self.piece = np.empty(hi - lo, dtype=np.float64)  # this worker's updated slice
        self.lo = lo
        self.shard_state = self._slice_state(state.opt_state)
        self.gather_seconds = 0.0  # time spent in the per-step all-gather

    def _is_param_tree(self, value) -> bool:
        if isinstance(value, bool | int | float | str) or value is None:
            return False
        return tree.structure(value) == self.spec.structure and (
            tree.flat_spec(value).shapes == self.spec.shapes
        )

    def _slice_state(self, full: dict) -> dict:
        sliced = {}
        for key, value in full.items():
            if self._is_param_tree(value):
                flat = tree.flatten(value)[0]
                value = tuple(flat[block].copy() for block in self.blocks)
            sliced[key] = value
        return sliced

    def apply(self, grads: np.ndarray) -> None:
        """Update this worker's slice with ``grads`` (the flat mean gradient), then all-gather."""
        params = tuple(self.flat[block] for block in self.blocks)
        gradient = tuple(grads[block] for block in self.blocks)
        updated, self.shard_state = self.optimizer.update(params, gradient, self.shard_state)
        for block, values in zip(self.blocks, updated, strict=True):
            self.piece[block.start - self.lo : block.stop - self.lo] = values
        started = time.perf_counter()
        self.comm.allgather(self.piece, self.flat, self.counts)
        self.gather_seconds += time.perf_counter() - started

    def gather_state(self) -> None:
        """Put the whole optimizer state into ``state.opt_state`` (every worker takes part)."""
        whole = {}
        for key, value in self.shard_state.items():
            if isinstance(value, tuple) and len(value) == len(self.blocks):
                piece = np.concatenate(value) if value else np.empty(0)
                joined = np.empty(self.spec.size, dtype=np.float64)
                self.comm.allgather(piece, joined, self.counts)
                whole[key] = tree.tree_map(np.copy, tree.unflatten(joined, self.spec))
            else:
                whole[key] = value
        self.state.opt_state = whole
