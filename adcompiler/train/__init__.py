"""Training on adcompiler's generated gradients.

Users call :func:`fit`::

    from adcompiler.train import fit, Adam
    from adcompiler.train.losses import softmax_cross_entropy

    def loss(W, b, x, y):
        return softmax_cross_entropy(x @ W + b, y)

    result = fit(loss, {"W": W0, "b": b0}, (x, y), epochs=10, batch_size=64,
                 optimizer=Adam(1e-3), validation=(x_val, y_val))

Modules: ``losses`` (differentiable NumPy losses), ``metrics``,
``optimizers``, ``schedules``, ``data`` (splits, batch order, in-memory and
memory-mapped sharded data sets), ``loop`` (``fit``), ``checkpoint``,
``tree``, ``plot``, ``cli`` (``adcompiler train``).

The interface other engines build on (``adcompiler.train.parallel``):

* Trees -- ``tree.flatten(params) -> (buffer, spec)`` packs a structure of
  arrays into one contiguous float64 vector (``out=`` writes into an
  existing one, e.g. shared memory); ``tree.unflatten(buffer, spec)``
  returns views; ``tree.tree_map``, ``tree.spec_to_json``.
* Optimizers -- ``state = opt.init(params)``;
  ``params, state = opt.update(params, grads, state)``: pure, new arrays
  out, inputs untouched; state is ``{"step": int, <name>: tree of arrays}``.
  ``opt.learning_rate(step)`` gives the scheduled rate.
* Batch order -- ``data.batch_order(n, seed, epoch)`` is a pure function;
  ``data.batch_slices(order, batch_size, drop_last)`` cuts it into batches;
  a data set has ``len()`` and ``take(rows) -> tuple of arrays``.
* The gradient -- ``objective.Objective(loss, params, grad_fn=None, wrt=None)``
  binds parameters and batch fields to the loss's arguments;
  ``objective.value_and_grad(params, batch) -> (value, grads like params)``.
* The loop -- ``loop.Run(loss, params, data, epochs=, batch_size=, ...)``
  holds a run's fixed parts (``fit``'s arguments that describe the problem:
  optimizer, lr, validation, metric, seed, drop_last, early_stopping,
  grad_fn, wrt, eval_batch_size); ``run.start()`` / ``run.resume(path)`` give a
  ``loop.TrainState``; ``run.step(state, batch)`` applies one update;
  ``run.end_epoch(state, seconds)`` evaluates, records history and applies
  early stopping; ``state.save(path, run.identity)`` writes a checkpoint
  that ``fit(..., resume=path)`` continues; ``run.result(state)``.
* Checkpoints -- ``checkpoint.save(path, tree, meta)`` /
  ``checkpoint.load(path) -> (tree, meta)``: atomic, checksummed, no pickle.
* ``fit(..., workers=1, mode="sync", backend="local")``: with ``workers > 1``,
  ``backend != "local"`` or ``mode != "sync"``, ``fit`` calls
  ``adcompiler.train.parallel.fit_parallel`` with all of its arguments as
  keywords (``loss, params, data`` positional) and returns its result, a
  ``loop.FitResult``.
"""

from adcompiler.train import losses, metrics, schedules
from adcompiler.train.checkpoint import CheckpointError
from adcompiler.train.data import ArrayDataset, ShardedDataset, ShardError, split, write_shards
from adcompiler.train.loop import EarlyStopping, FitResult, NonFiniteLossError, evaluate, fit
from adcompiler.train.optimizers import SGD, Adam, AdamW, momentum, nesterov
from adcompiler.train.plot import plot_history

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "ArrayDataset",
    "CheckpointError",
    "EarlyStopping",
    "FitResult",
    "NonFiniteLossError",
    "ShardedDataset",
    "ShardError",
    "evaluate",
    "fit",
    "losses",
    "metrics",
    "momentum",
    "nesterov",
    "plot_history",
    "schedules",
    "split",
    "write_shards",
]
