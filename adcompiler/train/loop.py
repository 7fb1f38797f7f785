"""The training loop: epochs of mini-batch updates on a generated gradient.

::

    result = fit(loss, params, (x, y), epochs=20, batch_size=64, optimizer=Adam(1e-3),
                 validation=(x_val, y_val), metric=accuracy, checkpoint="run.ckpt")
    result.params                      # trained parameters (same layout as params)
    result.history["val_loss"]         # one entry per epoch

One step: take the next mini-batch of the epoch's seeded order, call the
generated ``value_and_grad`` once, check that the loss is finite, apply the
optimizer. After each epoch: evaluate on the validation set, record
history, consult early stopping, write the checkpoint. The whole run is
a :class:`TrainState`; a checkpoint is that state, so ``resume=`` continues
exactly where the run was (bit for bit, because the batch order is a pure
function of ``(seed, epoch)`` and everything else is saved).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from adcompiler.errors import NonFiniteError
from adcompiler.train import checkpoint as checkpoints
from adcompiler.train.data import as_dataset, batch_order, batch_slices
from adcompiler.train.objective import Objective
from adcompiler.train.optimizers import Adam
from adcompiler.train.progress import epoch_line, progress_bar
from adcompiler.train.threads import set_blas_threads
from adcompiler.train.tree import Tree, describe, leaves, paths, structure, tree_map


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step."""


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor`` is a history key (``"val_loss"``, ``"val_accuracy"``, ``"loss"``);
    ``mode`` is ``"min"`` or ``"max"``. With ``restore_best`` the returned
    parameters are those of the best epoch.
    """

    patience: int = 5
    monitor: str = "val_loss"
    mode: str = "min"
    min_delta: float = 0.0
    restore_best: bool = True

    def improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta


@dataclass
class TrainState:
    """Everything a run needs to continue: what a checkpoint holds."""

    params: Tree
    opt_state: dict
    epoch: int = 0  # the epoch in progress (or next to start)
    batch: int = 0  # the next batch within that epoch
    step: int = 0  # updates applied so far
    loss_sum: float = 0.0  # sum of batch loss * batch size so far this epoch
    examples: int = 0  # examples seen so far this epoch
    history: dict = field(default_factory=dict)
    best_value: float | None = None
    best_epoch: int = -1
    best_params: Tree | None = None
    waited: int = 0
    stopped: bool = False

    def save(self, path, run: dict) -> None:
        """Write this state plus the run's identity (seed, batch size, ...) as a checkpoint."""
        arrays = {
            "params": self.params,
            "opt_state": self.opt_state,
            "best_params": self.best_params,
            "order": batch_order(run["examples"], run["seed"], self.epoch),
            "history": {k: np.asarray(v) for k, v in self.history.items() if _numbers(v)},
        }
        meta = {
            "run": run,
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "loss_sum": self.loss_sum,
            "examples": self.examples,
            "history": {k: v for k, v in self.history.items() if not _numbers(v)},
            "history_order": list(self.history),
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "waited": self.waited,
            "stopped": self.stopped,
            "rng": {
                "kind": "numpy default_rng([seed, epoch]).permutation",
                "seed": run["seed"],
                "epoch": self.epoch,
            },
        }
        checkpoints.save(path, arrays, meta)

    @classmethod
    def load(cls, path, run: dict, params: Tree) -> TrainState:
        """Read a checkpoint, checking that it belongs to a run like ``run`` and ``params``."""
        arrays, meta = checkpoints.load(path)
        for key, value in run.items():
            if meta["run"].get(key) != value:
                raise checkpoints.CheckpointError(
                    f"checkpoint {path} is from a run with {key}={meta['run'].get(key)!r}, "
                    f"this run has {key}={value!r}"
                )
        _check_same_parameters(path, arrays["params"], params)
        expected = batch_order(run["examples"], run["seed"], meta["epoch"])
        if not np.array_equal(arrays["order"], expected):
            raise checkpoints.CheckpointError(f"checkpoint {path}: the data order does not match")
        history = {**meta["history"], **{k: v.tolist() for k, v in arrays["history"].items()}}
        meta["history"] = {k: history[k] for k in meta["history_order"]}
        fields = (
            "epoch",
            "batch",
            "step",
            "loss_sum",
            "examples",
            "history",
            "best_value",
            "best_epoch",
            "waited",
            "stopped",
        )
        return cls(
            params=arrays["params"],
            opt_state=arrays["opt_state"],
            best_params=arrays["best_params"],
            **{k: meta[k] for k in fields},
        )


def _check_same_parameters(path, saved: Tree, params: Tree) -> None:
    """Refuse to resume when the checkpoint's parameters differ from the run's in their
    names, shapes or dtypes: the checkpoint's would silently replace them."""
    if structure(saved) != structure(params):
        theirs, ours = set(paths(saved)), set(paths(params))
        missing, extra = sorted(ours - theirs), sorted(theirs - ours)
        detail = "; ".join(
            part
            for part in (
                f"the run has {', '.join(missing)}, the checkpoint does not" if missing else "",
                f"the checkpoint has {', '.join(extra)}, the run does not" if extra else "",
            )
            if part
        ) or f"checkpoint: {describe(structure(saved))}, run: {describe(structure(params))}"
        raise checkpoints.CheckpointError(
            f"checkpoint {path} holds parameters of another layout ({detail})"
        )
    for name, old, new in zip(paths(saved), leaves(saved), leaves(params)):
        old_shape, new_shape = np.shape(old), np.shape(new)
        old_dtype, new_dtype = np.asarray(old).dtype, np.asarray(new).dtype
        if old_shape != new_shape or old_dtype != new_dtype:
            raise checkpoints.CheckpointError(
                f"checkpoint {path}: parameter {name or 'params'} is {old_dtype}{list(old_shape)} "
                f"in the checkpoint but {new_dtype}{list(new_shape)} in this run; resume with "
                "the model the checkpoint was written by"
            )


def _numbers(values) -> bool:
    """A history list of plain numbers, stored as an array in checkpoints rather than JSON."""
    return (
        isinstance(values, list)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        and len({type(v) for v in values}) <= 1
    )


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    params: Tree
    history: dict
    opt_state: dict
    steps: int
    stopped_early: bool


def fit(
    loss: Callable,
    params: Tree,
    data,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    optimizer=None,
    lr: float | None = None,
    validation=None,
    metric: Callable | None = None,
    seed: int = 0,
    drop_last: bool = False,
    early_stopping: EarlyStopping | int | None = None,
    checkpoint=None,
    checkpoint_every: int | None = None,
    resume=None,
    quiet: bool = False,
    grad_fn: Callable | None = None,
    wrt=None,
    eval_batch_size: int = 4096,
    workers: int = 1,
    mode: str = "sync",
    backend: str = "local",
    blas_threads: int | None = None,
    check_finite: bool = False,
    **parallel_options,
) -> FitResult:
    """Train ``params`` to minimize ``loss`` over mini-batches of ``data``.

    Args:
        loss: scalar loss ``loss(<params...>, <batch fields...>)``; see
            :mod:`adcompiler.train.objective` for how parameters are passed.
        params: initial parameters: a dict of arrays named like the loss's
            arguments, or a single tree argument.
        data: a tuple of arrays (sharing their first axis) or a data set with ``take()``.
        epochs: passes over the data.
        batch_size: examples per update.
        optimizer: an optimizer from :mod:`adcompiler.train.optimizers` (default ``Adam(lr)``).
        lr: learning rate for the default optimizer (default 1e-3).
        validation: data evaluated after each epoch (``val_loss`` and ``val_<metric>``).
        metric: ``metric(<same arguments as loss>) -> float``, a mean over examples.
        seed: seeds the batch order of every epoch.
        drop_last: drop the last partial batch of each epoch.
        early_stopping: an :class:`EarlyStopping`, or an int patience on ``val_loss``.
        checkpoint: path written after every epoch (and every ``checkpoint_every`` steps).
        checkpoint_every: also checkpoint after every this many steps.
        resume: a checkpoint path to continue from.
        quiet: no progress bar.
        grad_fn: a ready ``value_and_grad`` for the loss (default: adcompiler compiles one).
        wrt: name of the parameter argument when ``params`` is a single tree.
        eval_batch_size: rows per evaluation chunk.
        workers, mode, backend: data-parallel training; ``workers > 1`` or
            ``backend="mpi"`` hands the run to :func:`adcompiler.train.parallel.fit_parallel`.
        blas_threads: run NumPy's BLAS on this many threads during training (1 is
            fastest for small models, above all on a busy machine); None leaves it alone.
        check_finite: when a step's loss or gradient is not finite, compute that step
            again with the gradient that checks every statement
            (``value_and_grad(loss, check_finite=True)``): the ``NonFiniteError`` it raises
            names the line of the loss that made the first NaN or infinity, and the step.
            Without it, a non-finite loss raises ``NonFiniteLossError`` (and a non-finite
            gradient alone is not looked for).
        **parallel_options: passed on to ``fit_parallel`` (e.g. a staleness bound).

    Returns:
        a :class:`FitResult` with ``params``, ``history`` (lists per key, one entry per
        epoch, plus ``step_loss`` per step), ``opt_state``, ``steps``, ``stopped_early``.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite (the message names the step).
        NonFiniteError: with ``check_finite``, the loss or gradient became NaN or infinite
            (the message names the line and the step).
        CheckpointError: ``resume`` is unreadable, corrupted or from another run.
    """
    previous = set_blas_threads(blas_threads)
    try:
        return _fit(
            loss, params, data, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
            lr=lr, validation=validation, metric=metric, seed=seed, drop_last=drop_last,
            early_stopping=early_stopping, checkpoint=checkpoint,
            checkpoint_every=checkpoint_every, resume=resume, quiet=quiet, grad_fn=grad_fn,
            wrt=wrt, eval_batch_size=eval_batch_size, workers=workers, mode=mode,
            backend=backend, check_finite=check_finite, **parallel_options,
        )  # fmt: skip
    finally:
        set_blas_threads(previous)


_RUN_OPTIONS = {
    "epochs", "batch_size", "optimizer", "lr", "validation", "metric", "seed", "drop_last",
    "early_stopping", "grad_fn", "wrt", "eval_batch_size", "check_finite",
}  # fmt: skip


def _fit(loss, params, data, *, checkpoint, checkpoint_every, resume, quiet, workers, mode,
         backend, **options) -> FitResult:  # fmt: skip
    """One process, or hand everything (with any extra options) to the parallel engines."""
    if checkpoint is not None and backend == "local":  # (MPI: rank 0 checks, in mpi.fit)
        checkpoints.check_writable(checkpoint)
    if workers > 1 or backend != "local" or mode != "sync" or set(options) - _RUN_OPTIONS:
        from adcompiler.train.parallel import fit_parallel

        return fit_parallel(
            loss, params, data, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
            resume=resume, quiet=quiet, workers=workers, mode=mode, backend=backend, **options,
        )  # fmt: skip
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    run = Run(loss, params, data, **options)
    state = run.resume(resume) if resume is not None else run.start()
    return run.train(state, checkpoint=checkpoint, checkpoint_every=checkpoint_every, quiet=quiet)


class Run:
    """The fixed parts of a training run; :meth:`train` advances a :class:`TrainState`.

    Split out of :func:`fit` so that other engines (data-parallel training)
    reuse its pieces: ``identity`` (what a checkpoint must match),
    :meth:`end_epoch` (evaluation, history, early stopping) and :meth:`result`.
    """

    def __init__(
        self,
        loss,
        params,
        data,
        *,
        epochs,
        batch_size,
        optimizer=None,
        lr=None,
        validation=None,
        metric=None,
        seed=0,
        drop_last=False,
        early_stopping=None,
        grad_fn=None,
        wrt=None,
        eval_batch_size=4096,
        check_finite=False,
    ):
        self.objective = Objective(
            loss, params, grad_fn=grad_fn, wrt=wrt, check_finite=check_finite
        )
        self.initial_params = params
        self.dataset = as_dataset(data)
        self.validation = as_dataset(validation) if validation is not None else None
        if optimizer is None:
            optimizer = Adam(1e-3 if lr is None else lr)
        elif lr is not None:
            raise TypeError("pass lr= or optimizer=, not both (set the rate on the optimizer)")
        self.optimizer = optimizer
        if metric is not None:
            self.objective.check_metric(metric)
        self.metric = metric
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        self.drop_last, self.eval_batch_size = drop_last, eval_batch_size
        if isinstance(early_stopping, int) and not isinstance(early_stopping, bool):
            early_stopping = EarlyStopping(patience=early_stopping)
        if early_stopping is not None and self.validation is None:
            if early_stopping.monitor.startswith("val_"):
                raise ValueError(
                    f"early stopping monitors {early_stopping.monitor!r}, "
                    "which needs validation data"
                )
        self.early_stopping = early_stopping
        self.slices_per_epoch = len(self._slices(0))
        if self.slices_per_epoch == 0:
            raise ValueError(f"no full batch of {batch_size} in {len(self.dataset)} examples")
        self.identity = {
            "seed": seed,
            "batch_size": batch_size,
            "drop_last": drop_last,
            "examples": len(self.dataset),
        }

    def _slices(self, epoch: int) -> list[np.ndarray]:
        order = batch_order(len(self.dataset), self.seed, epoch)
        return batch_slices(order, self.batch_size, self.drop_last)

    def start(self) -> TrainState:
        return TrainState(
            params=self.initial_params, opt_state=self.optimizer.init(self.initial_params)
        )

    def resume(self, path) -> TrainState:
        return TrainState.load(path, self.identity, self.initial_params)

    def train(
        self, state: TrainState, checkpoint=None, checkpoint_every=None, quiet=False
    ) -> FitResult:
        """Run the remaining epochs of ``state`` in this process."""
        while state.epoch < self.epochs and not state.stopped:
            slices = self._slices(state.epoch)
            started = time.perf_counter()
            desc = f"epoch {state.epoch + 1}/{self.epochs}"
            with progress_bar(len(slices), state.batch, desc, quiet) as bar:
                while state.batch < len(slices):
                    rows = slices[state.batch]
                    self.step(state, self.dataset.take(rows))
                    if (
                        checkpoint is not None
                        and checkpoint_every
                        and (state.step % checkpoint_every == 0)
                    ):
                        state.save(checkpoint, self.identity)
                    bar.update()
            self.end_epoch(state, seconds=time.perf_counter() - started, quiet=quiet)
            if checkpoint is not None:
                state.save(checkpoint, self.identity)
        return self.result(state)

    def step(self, state: TrainState, batch: tuple) -> float:
        """One update on one batch."""
        try:
            value, grads = self.objective.value_and_grad(state.params, batch)
        except NonFiniteError as error:  # with check_finite: the line, and here the step
            error.add_note(
                f"at training step {state.step + 1} (epoch {state.epoch + 1}, "
                f"batch {state.batch + 1})"
            )
            raise
        value = float(value)
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"the loss became {value} at step {state.step + 1} "
                f"(epoch {state.epoch + 1}, batch {state.batch + 1}); lower the learning rate "
                "or check the data and the loss for overflow"
            )
        state.params, state.opt_state = self.optimizer.update(state.params, grads, state.opt_state)
        size = len(batch[0])
        state.step += 1
        state.batch += 1
        state.loss_sum += value * size
        state.examples += size
        state.history.setdefault("step_loss", []).append(value)
        return value

    def end_epoch(self, state: TrainState, seconds: float, quiet: bool = True) -> None:
        """Evaluate, record the epoch in the history, consult early stopping, move on."""
        record = {
            "epoch": state.epoch + 1,
            "loss": state.loss_sum / max(state.examples, 1),
            "lr": float(self.optimizer.learning_rate(max(state.step - 1, 0))),
            "time": seconds,
        }
        if self.validation is not None:
            values = evaluate(
                self.objective, state.params, self.validation, self.metric, self.eval_batch_size
            )
            record.update({f"val_{k}": v for k, v in values.items()})
        for key, value in record.items():
            state.history.setdefault(key, []).append(value)
        if not quiet:
            print(epoch_line(record, self.epochs), flush=True)
        self._early_stopping(state, record)
        state.epoch += 1
        state.batch = 0
        state.loss_sum = 0.0
        state.examples = 0

    def _early_stopping(self, state: TrainState, record: dict) -> None:
        rule = self.early_stopping
        if rule is None:
            return
        if rule.monitor not in record:
            raise KeyError(
                f"early stopping monitors {rule.monitor!r}; the history has {sorted(record)}"
            )
        value = record[rule.monitor]
        if rule.improved(value, state.best_value):
            state.best_value, state.best_epoch, state.waited = value, state.epoch, 0
            if rule.restore_best:
                state.best_params = tree_map(np.copy, state.params)
        else:
            state.waited += 1
            state.stopped = state.waited >= rule.patience

    def result(self, state: TrainState) -> FitResult:
        params = state.params
        if state.stopped and self.early_stopping.restore_best and state.best_params is not None:
            params = state.best_params
        return FitResult(
            params=params,
            history=state.history,
            opt_state=state.opt_state,
            steps=state.step,
            stopped_early=state.stopped,
        )


def evaluate(
    objective: Objective, params: Tree, data, metric: Callable | None = None, batch_size: int = 4096
) -> dict:
    """Mean loss (and metric) over a data set, in chunks of ``batch_size`` rows.

    Returns ``{"loss": ..., "<metric name>": ...}``.
    """
    dataset = as_dataset(data)
    totals: dict[str, float] = {}
    for start in range(0, len(dataset), batch_size):
        batch = dataset.take(np.arange(start, min(start + batch_size, len(dataset))))
        size = len(batch[0])
        values = {"loss": objective.value(params, batch)}
        if metric is not None:
            values[metric_name(metric)] = float(objective.call(metric, params, batch))
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value * size
    return {key: total / len(dataset) for key, total in totals.items()}


def metric_name(metric: Callable) -> str:
    """The history key of a metric: its ``__name__``."""
    return getattr(metric, "__name__", "metric")
