"""Data-parallel training: one interface, two modes, two backends.

::

    fit(loss, params, (x, y), epochs=5, batch_size=64, workers=2, mode="sync")
    fit(loss, params, (x, y), epochs=5, batch_size=64, workers=2, mode="async", max_staleness=2)
    fit(..., backend="mpi")          # under:  mpiexec -n 2 python script.py

=========  ==========================================  ===========================================
mode       ``backend="local"`` (default)               ``backend="mpi"``
=========  ==========================================  ===========================================
sync       ``workers`` forked processes; all-reduce    every rank is a worker; ``Allreduce`` of
           through shared memory (:mod:`.local`)       one packed buffer (:mod:`.mpi`)
async      the parent is the parameter server for      rank 0 is the server, ranks 1..N-1 workers;
           ``workers`` processes                       ``Send``/``Irecv``
=========  ==========================================  ===========================================

Sync mode ends with the parameters a single process gets on the same
global batches (:mod:`.sync`); async mode applies gradients as they
arrive, at most ``max_staleness`` updates old (:mod:`.server`). Both return
the loop's ``FitResult``; ``history["parallel"]`` says how the run went
(timings; for async, the staleness distribution). A worker that dies stops
the run with :class:`WorkerLostError` naming it, and so does a local worker
that stops responding (no heartbeat for ``heartbeat_timeout`` seconds, e.g.
a SIGSTOPped process).
"""

from __future__ import annotations

from adcompiler.train.parallel.errors import WorkerError, WorkerLostError

__all__ = ["WorkerError", "WorkerLostError", "fit_parallel"]

MODES = ("sync", "async")
HEARTBEAT_TIMEOUT = 30.0  # default seconds without a local worker's heartbeat
BACKENDS = ("local", "mpi")


def fit_parallel(
    loss,
    params,
    data,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    workers: int | None = 2,
    mode: str = "sync",
    backend: str = "local",
    max_staleness: int | None = None,
    start_method: str | None = None,
    heartbeat_timeout: float | None = HEARTBEAT_TIMEOUT,
    checkpoint=None,
    checkpoint_every: int | None = None,
    resume=None,
    quiet: bool = False,
    **fit_options,
):
    """Train like :func:`adcompiler.train.fit`, with the batch split over workers.

    Args:
        loss, params, data: as for ``fit``; the loss must be a mean over the batch's rows.
        epochs, batch_size: as for ``fit`` (``batch_size`` is the global batch, split
            over the workers in sync mode, whole per worker step in async mode).
        workers: worker processes (``local``); with ``mpi``, ``None`` or the number the
            launch implies (sync: ranks; async: ranks - 1).
        mode: ``"sync"`` (all-reduce every step) or ``"async"`` (parameter server).
        backend: ``"local"`` (processes on this machine) or ``"mpi"`` (under ``mpiexec``).
        max_staleness: async only: the most updates an applied gradient may lag behind
            (older ones are dropped and recomputed); default ``workers``.
        start_method: ``local`` only: multiprocessing start method (default ``fork`` on Linux).
        heartbeat_timeout: ``local`` only: seconds without a heartbeat from a worker (a
            thread in it beats every quarter of this) after which the run stops with
            ``WorkerLostError`` naming it; ``None`` waits forever.
        checkpoint, checkpoint_every, resume, quiet: as for ``fit``; one process writes
            (sync: rank 0; async: the server); async mode checkpoints at epoch ends only.
        **fit_options: the rest of ``fit``'s keyword arguments (optimizer, lr, validation,
            metric, seed, drop_last, early_stopping, grad_fn,
            wrt, eval_batch_size).

    Returns:
        ``FitResult`` (with MPI, on every rank; the history is complete on rank 0).

    Raises:
        WorkerLostError: a worker died or stopped responding; the message names it.
    """
    from adcompiler.train.loop import Run
    from adcompiler.train.parallel.job import Job

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if max_staleness is not None and mode != "async":
        raise ValueError("max_staleness applies to mode='async' only")
    job = Job(
        Run(loss, params, data, epochs=epochs, batch_size=batch_size, **fit_options),
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        max_staleness=max_staleness,
        quiet=quiet,
    )
    if backend == "mpi":
        from adcompiler.train.parallel import mpi

        state = mpi.fit(job, resume, workers, mode)
    else:
        from adcompiler.train.parallel import run_local

        if workers is None or workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        state = job.initial_state(resume)
        fit_mode = run_local.fit_sync if mode == "sync" else run_local.fit_async
        state = fit_mode(job, state, workers, start_method, heartbeat_timeout)
    return job.run.result(state)
