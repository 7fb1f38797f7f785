"""Data-parallel training on the embedded backend: sync equals one process, async converges.

The problems here carry hand-written gradients (``grad_fn=``), so these
tests exercise the parallel engine, not the compiler.
"""

import sys

import numpy as np
import pytest

from adcompiler.train import fit
from adcompiler.train.loop import EarlyStopping, NonFiniteLossError
from adcompiler.train.optimizers import SGD, Adam
from adcompiler.train.parallel import fit_parallel, local

# ---------------------------------------------------------------- problems


def linear_loss(W, b, x, y):
    residual = x @ W + b - y
    return np.mean(residual * residual)


def linear_grad(W, b, x, y):
    residual = x @ W + b - y
    n = len(y)
    return np.mean(residual * residual), (2.0 * x.T @ residual / n, np.array(2.0 * residual.mean()))


def linear_problem(n=203, features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = x @ rng.normal(size=features) + 0.1 * rng.normal(size=n)
    return {"W": np.zeros(features), "b": np.array(0.0)}, (x, y)


def mlp_loss(W1, b1, W2, b2, x, y):
    return mlp_grad(W1, b1, W2, b2, x, y)[0]


def mlp_grad(W1, b1, W2, b2, x, y):
    """tanh hidden layer, softmax cross-entropy (mean over rows), by hand."""
    hidden = np.tanh(x @ W1 + b1)
    logits = hidden @ W2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(y)
    value = -log_probs[np.arange(n), y].mean()
    dlogits = np.exp(log_probs)
    dlogits[np.arange(n), y] -= 1.0
    dlogits /= n
    dhidden = (dlogits @ W2.T) * (1.0 - hidden * hidden)
    return value, (x.T @ dhidden, dhidden.sum(0), hidden.T @ dlogits, dlogits.sum(0))


def mlp_problem(n=150, features=6, hidden=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = np.argmax(x @ rng.normal(size=(features, classes)), axis=1)
    params = {
        "W1": rng.normal(0, 0.5, size=(features, hidden)),
        "b1": np.zeros(hidden),
        "W2": rng.normal(0, 0.5, size=(hidden, classes)),
        "b2": np.zeros(classes),
    }
    return params, (x, y)


def relative_difference(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]) / np.maximum(np.abs(b[k]), 1e-30))) for k in b)


@pytest.fixture(autouse=True)
def no_leaked_segments():
    before = set(shared_segments())
    yield
    assert set(shared_segments()) - before == set(), "a shared-memory segment was left behind"


def shared_segments(pid=None):
    """This process's segments (other processes may be training at the same time)."""
    import os

    if not os.path.isdir("/dev/shm"):
        return []
    prefix = f"{local.SEGMENT_PREFIX}{os.getpid() if pid is None else pid}_"
    return [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]


# ---------------------------------------------------------------- sync


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_sync_matches_a_single_process_on_the_same_global_batches(workers):
    params, data = mlp_problem()
    options = dict(
        epochs=3, batch_size=16, optimizer=Adam(0.02), seed=3, quiet=True, grad_fn=mlp_grad
    )
    single = fit(mlp_loss, params, data, **options)
    parallel = fit_parallel(mlp_loss, params, data, workers=workers, **options)
    assert parallel.steps == single.steps == 3 * 10  # 150 rows: 9 batches of 16 and one of 6
    assert relative_difference(parallel.params, single.params) < 1e-12
    np.testing.assert_allclose(parallel.history["loss"], single.history["loss"], rtol=1e-12)
    assert parallel.history["parallel"]["workers"] == workers


@pytest.mark.parametrize("workers", [2, 3])
def test_sharded_optimizer_update_gives_the_whole_optimizer_state(workers):
    params, data = mlp_problem()
    options = dict(
        epochs=2, batch_size=16, optimizer=Adam(0.02), seed=3, quiet=True, grad_fn=mlp_grad
    )
    single = fit(mlp_loss, params, data, **options)
    parallel = fit_parallel(mlp_loss, params, data, workers=workers, **options)
    assert parallel.history["parallel"]["sharded_update"]
    assert parallel.opt_state["step"] == single.opt_state["step"]
    for key in ("m", "v"):
        assert relative_difference(parallel.opt_state[key], single.opt_state[key]) < 1e-12


def test_fewer_parameters_than_workers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 1))
    data = (x, 3.0 * x[:, 0] + 0.1 * rng.normal(size=30))

    def loss(W, x, y):
        return np.mean((x @ W - y) ** 2)

    def grad(W, x, y):
        residual = x @ W - y
        return np.mean(residual**2), (2.0 * x.T @ residual / len(y),)

    options = dict(epochs=2, batch_size=8, optimizer=Adam(0.1), quiet=True, grad_fn=grad)
    single = fit(loss, {"W": np.zeros(1)}, data, **options)
    parallel = fit_parallel(loss, {"W": np.zeros(1)}, data, workers=2, **options)
    assert relative_difference(parallel.params, single.params) < 1e-12


class HalvingSGD(SGD):
    """A subclass: the engine cannot know it is elementwise, so it updates whole trees."""

    def update(self, params, grads, state):
        return super().update(params, {k: g / 2 for k, g in grads.items()}, state)


def test_other_optimizers_update_the_whole_tree_in_every_worker():
    params, data = mlp_problem()
    options = dict(
        epochs=2, batch_size=16, optimizer=HalvingSGD(0.1), seed=3, quiet=True, grad_fn=mlp_grad
    )
    single = fit(mlp_loss, params, data, **options)
    parallel = fit_parallel(mlp_loss, params, data, workers=2, **options)
    assert not parallel.history["parallel"]["sharded_update"]
    assert relative_difference(parallel.params, single.params) < 1e-12


def test_uneven_and_empty_shards_are_weighted_by_their_rows():
    # 13 rows in batches of 2: the last batch has 1 row, so with 3 workers the
    # shards are (1, 1, 0) and (1, 0, 0); the average must still be exact.
    params, data = linear_problem(n=13)
    options = dict(
        epochs=2, batch_size=2, optimizer=SGD(0.05), seed=0, quiet=True, grad_fn=linear_grad
    )
    single = fit(linear_loss, params, data, **options)
    parallel = fit_parallel(linear_loss, params, data, workers=3, **options)
    assert relative_difference(parallel.params, single.params) < 1e-12


def test_fit_hands_workers_over_to_the_parallel_engine():
    params, data = linear_problem()
    options = dict(
        epochs=2, batch_size=32, optimizer=Adam(0.05), seed=1, quiet=True, grad_fn=linear_grad
    )
    result = fit(linear_loss, params, data, workers=2, **options)
    assert result.history["parallel"]["mode"] == "sync"
    single = fit(linear_loss, params, data, **options)
    assert relative_difference(result.params, single.params) < 1e-12


def test_sync_validation_and_early_stopping_stop_every_worker():
    params, data = linear_problem()
    validation = linear_problem(seed=1)[1]
    options = dict(
        epochs=50,
        batch_size=64,
        optimizer=SGD(1e-4),
        seed=0,
        quiet=True,
        grad_fn=linear_grad,
        validation=validation,
        early_stopping=EarlyStopping(patience=1, min_delta=10.0),
    )
    single = fit(linear_loss, params, data, **options)
    parallel = fit_parallel(linear_loss, params, data, workers=2, **options)
    assert parallel.stopped_early and single.stopped_early
    assert parallel.history["epoch"] == single.history["epoch"] == [1, 2]
    np.testing.assert_allclose(parallel.history["val_loss"], single.history["val_loss"], rtol=1e-12)


def test_sync_checkpoint_resume_gives_the_uninterrupted_parameters(tmp_path):
    params, data = mlp_problem()
    path = str(tmp_path / "run.ckpt")
    options = dict(batch_size=16, optimizer=Adam(0.02), seed=3, quiet=True, grad_fn=mlp_grad)
    whole = fit_parallel(mlp_loss, params, data, workers=2, epochs=3, **options)
    fit_parallel(mlp_loss, params, data, workers=2, epochs=1, checkpoint=path, **options)
    resumed = fit_parallel(mlp_loss, params, data, workers=2, epochs=3, resume=path, **options)
    for key in params:
        np.testing.assert_array_equal(resumed.params[key], whole.params[key])
    assert resumed.history["loss"] == whole.history["loss"]


def test_spawned_workers_give_the_same_result_when_everything_pickles():
    params, data = linear_problem()
    options = dict(
        epochs=2, batch_size=32, optimizer=SGD(0.05), seed=1, quiet=True, grad_fn=linear_grad
    )
    single = fit(linear_loss, params, data, **options)
    spawned = fit_parallel(linear_loss, params, data, workers=2, start_method="spawn", **options)
    assert relative_difference(spawned.params, single.params) < 1e-12


def test_sync_on_a_memory_mapped_sharded_data_set(tmp_path):
    from adcompiler.train import ShardedDataset, write_shards

    params, (x, y) = mlp_problem()
    write_shards(tmp_path, {"x": x, "y": y}, shard_size=40)
    dataset = ShardedDataset(tmp_path, fields=("x", "y"), max_open=1)
    options = dict(
        epochs=2, batch_size=16, optimizer=Adam(0.02), seed=3, quiet=True, grad_fn=mlp_grad
    )
    single = fit(mlp_loss, params, (x, y), **options)
    parallel = fit_parallel(mlp_loss, params, dataset, workers=2, **options)
    assert relative_difference(parallel.params, single.params) < 1e-12


# ---------------------------------------------------------------- errors in workers


def test_an_exception_in_one_worker_is_raised_in_the_parent_naming_it():
    import os

    params, data = linear_problem()
    parent = os.getpid()

    def failing(W, b, x, y):
        if os.getpid() != parent and len(y) == 10:  # worker 1's shard of a 21-row batch
            raise ValueError("bad shard")
        return linear_grad(W, b, x, y)

    with pytest.raises(ValueError, match="bad shard") as caught:
        fit_parallel(
            linear_loss,
            params,
            data,
            workers=2,
            epochs=1,
            batch_size=21,
            grad_fn=failing,
            quiet=True,
        )
    assert any("worker 1" in note for note in caught.value.__notes__)


class Unpicklable(Exception):
    def __init__(self):
        super().__init__("cannot travel")
        self.callback = lambda: None


def _raise_unpicklable(comm):
    raise Unpicklable()


def test_an_exception_that_does_not_pickle_arrives_as_text():
    from adcompiler.train.parallel import WorkerError

    with pytest.raises(WorkerError, match="worker 0 failed: Unpicklable: cannot travel"):
        local.run(1, {}, _raise_unpicklable)


def test_a_non_finite_loss_stops_the_run_naming_the_step():
    params, data = linear_problem()
    data = (data[0], data[1] * 1e200)
    with pytest.raises(NonFiniteLossError, match="step 1 "):
        fit_parallel(
            linear_loss,
            params,
            data,
            workers=2,
            epochs=1,
            batch_size=32,
            grad_fn=linear_grad,
            quiet=True,
        )


def test_bad_arguments_are_reported():
    params, data = linear_problem()
    with pytest.raises(ValueError, match="mode"):
        fit_parallel(linear_loss, params, data, mode="bulk", grad_fn=linear_grad)
    with pytest.raises(ValueError, match="async"):
        fit_parallel(linear_loss, params, data, max_staleness=1, grad_fn=linear_grad)


# ---------------------------------------------------------------- async


def logistic_problem(n=400, features=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = (x @ rng.normal(size=features) + 0.3 * rng.normal(size=n) > 0).astype(float)
    return {"w": np.zeros(features), "b": np.array(0.0)}, (x, y)


def logistic_grad(w, b, x, y):
    z = x @ w + b
    value = np.mean(np.logaddexp(0.0, z) - y * z)
    dz = (1.0 / (1.0 + np.exp(-z)) - y) / len(y)
    return value, (x.T @ dz, np.array(dz.sum()))


def logistic_loss(w, b, x, y):
    return logistic_grad(w, b, x, y)[0]


def full_loss(params, data):
    return logistic_loss(params["w"], params["b"], *data)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_async_converges_close_to_sync_and_records_staleness(workers):
    params, data = logistic_problem()
    options = dict(
        epochs=8, batch_size=20, optimizer=SGD(0.2), seed=0, quiet=True, grad_fn=logistic_grad
    )
    sync = fit_parallel(logistic_loss, params, data, workers=workers, **options)
    result = fit_parallel(
        logistic_loss, params, data, workers=workers, mode="async", max_staleness=2, **options
    )
    record = result.history["parallel"]
    assert result.steps == sync.steps == 8 * 20  # every batch applied exactly once per epoch
    assert sum(record["staleness"]) == result.steps
    assert len(record["staleness"]) <= 3  # no applied gradient more than 2 updates old
    assert full_loss(result.params, data) < full_loss(sync.params, data) + 0.02
    if workers == 1:
        assert record["staleness"] == [result.steps]
        assert relative_difference(result.params, sync.params) < 1e-12


@pytest.mark.parametrize("optimizer", [Adam(0.05), HalvingSGD(0.2)], ids=["flat", "tree"])
def test_async_with_one_worker_is_the_single_process_run(optimizer):
    params, data = mlp_problem()
    options = dict(
        epochs=2, batch_size=16, optimizer=optimizer, seed=0, quiet=True, grad_fn=mlp_grad
    )
    single = fit(mlp_loss, params, data, **options)
    result = fit_parallel(mlp_loss, params, data, workers=1, mode="async", **options)
    assert relative_difference(result.params, single.params) < 1e-12
    for key, value in single.opt_state.items():
        if key != "step":
            assert relative_difference(result.opt_state[key], value) < 1e-12


def test_async_staleness_zero_is_serial_sgd_with_recomputation():
    params, data = logistic_problem(n=120)
    options = dict(
        epochs=2, batch_size=20, optimizer=SGD(0.2), seed=0, quiet=True, grad_fn=logistic_grad
    )
    result = fit_parallel(
        logistic_loss, params, data, workers=2, mode="async", max_staleness=0, **options
    )
    record = result.history["parallel"]
    assert record["staleness"] == [12]
    assert sum(record["computed"]) == 12 + record["rejected"]


def test_async_checkpoints_at_epoch_ends_and_resumes(tmp_path):
    params, data = logistic_problem(n=120)
    path = str(tmp_path / "async.ckpt")
    options = dict(
        batch_size=20,
        optimizer=SGD(0.2),
        seed=0,
        quiet=True,
        grad_fn=logistic_grad,
        mode="async",
        workers=2,
    )
    first = fit_parallel(logistic_loss, params, data, epochs=2, checkpoint=path, **options)
    resumed = fit_parallel(logistic_loss, params, data, epochs=3, resume=path, **options)
    assert resumed.steps == first.steps + 6
    assert resumed.history["epoch"] == [1, 2, 3]


# ---------------------------------------------------------------- the machinery


def _sum_ranks(comm, size):
    buffer = np.full(size, comm.rank + 1.0)
    for _ in range(50):  # many calls: the double-buffered slots must not race
        buffer[:] = comm.rank + 1.0
        comm.allreduce_sum(buffer)
    return buffer.copy()


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_allreduce_sums_and_gives_every_worker_the_same_bits(workers):
    layout = {"slots": ((2, workers, 1000), "float64")}
    results = local.run(workers, layout, _sum_ranks, (1000,))
    expected = workers * (workers + 1) / 2
    for result in results:
        np.testing.assert_array_equal(result, np.full(1000, expected))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX segments in /dev/shm")
def test_stale_segments_of_dead_processes_are_reaped():
    from multiprocessing import shared_memory

    name = f"{local.SEGMENT_PREFIX}999999999_feedbeef"
    segment = shared_memory.SharedMemory(name=name, create=True, size=64)
    from multiprocessing import resource_tracker

    resource_tracker.unregister(segment._name, "shared_memory")
    segment.close()
    assert name in local.reap_stale_segments()
    assert name not in shared_segments(pid=999999999)
