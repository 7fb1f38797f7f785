"""``adcompiler train SAMPLE.py``: train a model that a Python file describes.

A sample (any ``.py`` file) exposes itself through module-level names:

==================  ========  =================================================================
name                required  what
==================  ========  =================================================================
``loss``            yes       ``loss(<params...>, <data fields...>)``, a scalar mean over the batch
``init_params``     yes       ``init_params(seed) -> params`` (dict named like loss's arguments)
``load_data``       yes       ``load_data() -> {"train": (x, y), "validation": ..., "test": ...}``
                              (validation and test optional; arrays or a data set)
``metric``          no        ``metric(<same arguments as loss>) -> float``, reported on val/test
``make_optimizer``  no        ``make_optimizer(lr) -> optimizer`` (else by name: ``--optimizer``)
``defaults``        no        dict of defaults for the options below, e.g. ``{"epochs": 30}``
``report``          no        ``report(params, data) -> str``, printed after the test scores
==================  ========  =================================================================

Command-line options override ``defaults``::

    adcompiler train mlp_digits --epochs 30 --batch-size 64 --lr 3e-3 --seed 0 \\
        --checkpoint run.ckpt [--resume run.ckpt] [--save params.npz] [--plot history.png] \\
        [--emit loss_grad.py]

A sample is a path to a ``.py`` file or the name of one that ships with adcompiler
(``linear_regression``, ``logistic_regression``, ``mlp_digits``, ``rnn_sequence``; see
:mod:`adcompiler.samples`). ``python -m adcompiler.samples.mlp_digits [options]`` does the
same, through :func:`run_module`.
It prints one line per epoch, then the test loss and metric and the training time.
Exit status: 0 on success, 1 when the compiler refuses the loss (its diagnostics are
printed) or training fails (non-finite loss, bad checkpoint), 2 for a bad input (printed as
one line: a sample that cannot be imported, an unwritable output path, a bad option).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from types import ModuleType

from adcompiler import samples
from adcompiler.errors import UnsupportedSyntaxError
from adcompiler.train.checkpoint import CheckpointError
from adcompiler.train.loop import NonFiniteLossError, evaluate, fit
from adcompiler.train.objective import MetricSignatureError, Objective
from adcompiler.train.optimizers import make_optimizer
from adcompiler.usage import (
    ArgumentParser,
    UsageError,
    check_output_path,
    import_file,
    non_negative_int,
    positive_float,
    positive_int,
)

BUILTIN_DEFAULTS = {"epochs": 10, "batch_size": 32, "lr": 1e-3, "seed": 0, "optimizer": "adam"}


def build_parser(prog: str = "adcompiler train") -> argparse.ArgumentParser:
    """The argument parser; option defaults are ``None`` so a sample's ``defaults`` apply."""
    parser = ArgumentParser(prog=prog, description="Train a sample model.")
    parser.add_argument(
        "sample", nargs="?",
        help="a .py file exposing loss, init_params, load_data, or the name of a sample that "
        "ships with adcompiler: " + ", ".join(samples.NAMES),
    )  # fmt: skip
    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--lr", type=positive_float, help="learning rate")
    parser.add_argument("--optimizer", help="sgd, momentum, nesterov, adam or adamw")
    parser.add_argument("--seed", type=non_negative_int, help="seeds initialization and order")
    parser.add_argument("--checkpoint", help="write a checkpoint here after every epoch")
    parser.add_argument(
        "--checkpoint-every", type=positive_int, help="also checkpoint every N steps"
    )
    parser.add_argument("--resume", help="continue from this checkpoint")
    parser.add_argument("--early-stopping", type=positive_int, metavar="PATIENCE")
    parser.add_argument("--emit", help="write the generated gradient's source to this file")
    parser.add_argument("--save", help="write the trained parameters to this .npz")
    parser.add_argument("--plot", help="write the loss/metric curves to this PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    parser.add_argument(
        "--blas-threads", type=positive_int, default=1,
        help="NumPy BLAS threads (default 1: fastest here)",
    )
    parser.add_argument("--workers", type=positive_int, default=1, help="data-parallel workers")
    parser.add_argument(
        "--heartbeat-timeout", type=positive_float, metavar="SECONDS",
        help="with --workers > 1: stop when a worker sends no heartbeat for this long "
        "(default 30)",
    )  # fmt: skip
    parser.add_argument("--mode", choices=("sync", "async"), default="sync")
    parser.add_argument("--backend", choices=("local", "mpi"), default="local")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``adcompiler train``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sample is None:
        parser.error("the sample file is required")
    try:
        check_arguments(args)
        module = load_sample(args.sample)
    except UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    return run(module, args)


def check_arguments(args: argparse.Namespace) -> None:
    """Options that only make sense together, and every file the run will write (which must
    be writable): checked before any work is done."""
    if args.heartbeat_timeout is not None and (args.workers < 2 or args.backend != "local"):
        raise UsageError("--heartbeat-timeout applies to --workers 2 or more (local backend)")
    for option in ("checkpoint", "emit", "save", "plot"):
        path = getattr(args, option)
        if path is not None:
            check_output_path(path, "--" + option)


def run_module(module: ModuleType, argv: list[str] | None = None) -> int:
    """Train ``module`` (a sample) with command-line ``argv``; for a sample's ``__main__``."""
    parser = build_parser(prog=os.path.basename(getattr(module, "__file__", "sample")))
    args = parser.parse_args(argv)
    if args.sample is not None:
        parser.error(f"unexpected argument {args.sample!r}")
    try:
        check_arguments(args)
    except UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    return run(module, args)


def load_sample(path: str) -> ModuleType:
    """Import a sample file (or a shipped sample, by name) as a module and check that it
    exposes what training needs."""
    if not os.path.exists(path) and samples.path(path) is not None:
        path = samples.path(path)
    elif not os.path.exists(path) and os.sep not in path and not path.endswith(".py"):
        raise UsageError(
            f"no sample file or shipped sample named {path!r}; the shipped samples are "
            + ", ".join(samples.NAMES)
        )
    name = "adcompiler_sample_" + os.path.splitext(os.path.basename(path))[0]
    module = import_file(path, name, what="sample file")
    missing = [n for n in ("loss", "init_params", "load_data") if not hasattr(module, n)]
    if missing:
        raise UsageError(
            f"{path} does not define {', '.join(missing)} (see adcompiler.train.cli)"
        )
    return module


def options(module: ModuleType, args: argparse.Namespace) -> dict:
    """Built-in defaults, then the sample's ``defaults``, then the command line."""
    merged = dict(BUILTIN_DEFAULTS)
    merged.update(getattr(module, "defaults", {}))
    for key in ("epochs", "batch_size", "lr", "seed", "optimizer", "early_stopping"):
        if getattr(args, key) is not None:
            merged[key] = getattr(args, key)
    return merged


def run(module: ModuleType, args: argparse.Namespace) -> int:
    """Load data, build parameters and optimizer, train, evaluate on the test set, print."""
    settings = options(module, args)
    data = module.load_data()
    params = module.init_params(settings["seed"])
    if hasattr(module, "make_optimizer"):
        optimizer = module.make_optimizer(settings["lr"])
    else:
        optimizer = make_optimizer(settings["optimizer"], settings["lr"])
    metric = getattr(module, "metric", None)
    started = time.perf_counter()
    try:
        if args.emit:
            emit_gradient(module.loss, params, args.emit)
            print(f"wrote the generated gradient to {args.emit}")
            started = time.perf_counter()
        result = fit(
            module.loss, params, data["train"], epochs=settings["epochs"],
            batch_size=settings["batch_size"], optimizer=optimizer,
            validation=data.get("validation"), metric=metric, seed=settings["seed"],
            early_stopping=settings.get("early_stopping"), checkpoint=args.checkpoint,
            checkpoint_every=args.checkpoint_every, resume=args.resume, quiet=args.quiet,
            workers=args.workers, mode=args.mode, backend=args.backend,
            blas_threads=args.blas_threads, **parallel_options(args),
        )  # fmt: skip
    except (NonFiniteLossError, CheckpointError) as error:
        print(f"adcompiler train: {error}", file=sys.stderr)
        return 1
    except UnsupportedSyntaxError as error:  # the sample's loss: every problem, located
        print(error, file=sys.stderr)
        return 1
    except MetricSignatureError as error:
        print(f"adcompiler train: error: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    if result.history.get("parallel", {}).get("rank", 0) != 0:
        return 0  # under MPI, rank 0 reports (and writes files) for the job
    print(f"trained {result.steps} steps in {seconds:.2f} s"
          + (" (stopped early)" if result.stopped_early else ""))  # fmt: skip
    if "test" in data:
        objective = Objective(module.loss, result.params)
        scores = evaluate(objective, result.params, data["test"], metric)
        print(", ".join(f"test {k}: {v:.4f}" for k, v in scores.items()))
    if hasattr(module, "report"):
        print(module.report(result.params, data))
    if args.save:
        save_params(args.save, result.params)
        print(f"wrote {args.save}")
    if args.plot:
        from adcompiler.train.plot import plot_history

        try:
            print(f"wrote {plot_history(result.history, args.plot)}")
        except ImportError as error:
            print(f"adcompiler train: {error}", file=sys.stderr)
            return 1
    return 0


def parallel_options(args: argparse.Namespace) -> dict:
    """Options that only the data-parallel engines take, when they are given."""
    if args.heartbeat_timeout is None:
        return {}
    return {"heartbeat_timeout": args.heartbeat_timeout}


def emit_gradient(loss, params, path: str) -> None:
    """Write the source of the ``value_and_grad`` that training uses (compiling it now)."""
    import os
    import sys

    from adcompiler.standalone import module_source

    grad_fn = Objective(loss, params).grad_fn
    emitted = grad_fn.__adcompiler_emitted__
    text = module_source(
        [emitted],
        doc=grad_fn.__doc__.splitlines()[0],
        origin=os.path.relpath(loss.__code__.co_filename),
        command="adcompiler " + " ".join(sys.argv[1:]),
    )
    with open(path, "w") as file:
        file.write(text)


def save_params(path: str, params) -> None:
    """Write a parameter tree as an ``.npz`` of arrays named by their tree paths (no pickle)."""
    import numpy as np

    from adcompiler.train.tree import leaves, paths

    arrays = {name.replace("/", ".") or "params": np.asarray(leaf) for name, leaf in zip(
        paths(params), leaves(params), strict=True)}  # fmt: skip
    with open(path, "wb") as file:
        np.savez(file, allow_pickle=False, **arrays)


if __name__ == "__main__":
    sys.exit(main())
