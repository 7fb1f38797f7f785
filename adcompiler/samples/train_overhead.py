"""Where does a training step of the digits MLP go? The generated gradient vs the rest.

    python -m adcompiler.samples.train_overhead [--epochs 40] [--batch-size 64] [--repeats 3]
        [--progress]

Runs ``mlp_digits.py``'s training through the same loop as ``fit``
(``adcompiler.train.loop.Run``), with timers wrapped around the three parts
of a step that do real work: taking the mini-batch, calling the generated
``value_and_grad``, and the optimizer update. "Rest" is everything else in
the loop (loss check, history, progress bar, Python overhead): the wall time
of the step loop minus those three. Validation after each epoch is timed
separately and not counted as step time. Prints the best of ``--repeats`` runs.
"""

import argparse
import importlib.util
import os
import sys
import time

from adcompiler.train.loop import Run
from adcompiler.train.optimizers import Adam
from adcompiler.train.threads import set_blas_threads

HERE = os.path.dirname(os.path.abspath(__file__))


def load_mlp():
    spec = importlib.util.spec_from_file_location("mlp_digits", os.path.join(HERE, "mlp_digits.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Timed:
    """Wraps a callable and adds up the time spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


def measure(mlp, data, epochs, batch_size, progress):
    run = Run(mlp.loss, mlp.init_params(0), data["train"], epochs=epochs, batch_size=batch_size,
              optimizer=Adam(mlp.defaults["lr"]), validation=data["validation"],
              metric=mlp.accuracy)  # fmt: skip
    gradient = Timed(run.objective.grad_fn)  # compiles before timing starts
    run.objective._grad_fn = gradient
    take = run.dataset.take = Timed(run.dataset.take)
    update = Timed(run.optimizer.update)
    object.__setattr__(run, "optimizer", _WithUpdate(run.optimizer, update))
    end_epoch = run.end_epoch = Timed(run.end_epoch)
    state = run.start()
    started = time.perf_counter()
    result = run.train(state, quiet=not progress)
    total = time.perf_counter() - started
    steps = result.steps
    loop = total - end_epoch.seconds
    parts = {
        "generated gradient": gradient.seconds,
        "optimizer update": update.seconds,
        "mini-batch take": take.seconds,
    }
    parts["rest of the loop"] = loop - sum(parts.values())
    return steps, loop, parts, end_epoch.seconds, result


class _WithUpdate:
    """The optimizer with a timed ``update``."""

    def __init__(self, optimizer, update):
        self._optimizer, self.update = optimizer, update

    def __getattr__(self, name):
        return getattr(self._optimizer, name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true", help="with the tqdm progress bar")
    args = parser.parse_args(argv)
    set_blas_threads(args.blas_threads)
    mlp = load_mlp()
    data = mlp.load_data()
    best = None
    for _ in range(args.repeats):
        measured = measure(mlp, data, args.epochs, args.batch_size, args.progress)
        if best is None or measured[1] < best[1]:
            best = measured
    steps, loop, parts, evaluation, result = best
    print(f"digits MLP 64-{'-'.join(map(str, mlp.HIDDEN))}-10, batch {args.batch_size}, "
          f"{steps} steps, BLAS threads {args.blas_threads}, "
          f"progress bar {'on' if args.progress else 'off'}")  # fmt: skip
    print(f"step loop {loop:.3f} s = {1e6 * loop / steps:.1f} us/step "
          f"(validation after epochs, not counted: {evaluation:.3f} s)")  # fmt: skip
    for name, seconds in parts.items():
        print(f"  {name:<20} {1e6 * seconds / steps:8.1f} us/step  {100 * seconds / loop:5.1f} %")
    print(f"final validation accuracy {result.history['val_accuracy'][-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
