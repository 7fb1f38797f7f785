"""The errors a data-parallel run raises in the process that started it."""


class WorkerLostError(RuntimeError):
    """A worker (or the parent, or an MPI rank) died, so the run was stopped.

    The message names the worker, how it ended (the signal or exit code) and
    the step it had reached.
    """


class WorkerError(RuntimeError):
    """A worker raised an exception that could not be sent back as itself."""
