import sys
import types

import numpy as np
import pytest

from adcompiler.train import (
    SGD,
    Adam,
    CheckpointError,
    EarlyStopping,
    NonFiniteLossError,
    ShardedDataset,
    fit,
    plot_history,
    write_shards,
)

try:
    from test_train_helpers import (
        linear_loss,
        linear_problem,
        linear_value_and_grad,
        needs_compiler,
    )
except ImportError:  # collected as part of a package
    from tests.test_train_helpers import (
        linear_loss,
        linear_problem,
        linear_value_and_grad,
        needs_compiler,
    )


def train(**options):
    params, data = linear_problem()
    settings = dict(epochs=3, batch_size=16, optimizer=SGD(0.05), grad_fn=linear_value_and_grad,
                    quiet=True)  # fmt: skip
    settings.update(options)
    return fit(linear_loss, params, data, **settings)


def test_fit_converges_and_returns_history():
    params, (x, y) = linear_problem()
    result = train(epochs=20, validation=(x[:50], y[:50]), metric=linear_loss)
    np.testing.assert_allclose(result.params["w"], [1.0, 2.0, 3.0], atol=0.02)
    history = result.history
    assert history["epoch"] == list(range(1, 21))
    assert len(history["loss"]) == len(history["val_loss"]) == len(history["val_linear_loss"]) == 20
    assert len(history["step_loss"]) == result.steps == 20 * 13  # 200 rows, batches of 16
    assert history["loss"][-1] < history["loss"][0] / 100
    assert history["lr"][-1] == 0.05


def test_drop_last_changes_steps_per_epoch():
    assert train(epochs=1).steps == 13
    assert train(epochs=1, drop_last=True).steps == 12


def test_same_seed_same_parameters_other_seed_others():
    a, b, c = train(seed=1), train(seed=1), train(seed=2)
    assert a.params["w"].tobytes() == b.params["w"].tobytes()
    assert a.history["step_loss"] == b.history["step_loss"]
    assert a.params["w"].tobytes() != c.params["w"].tobytes()


def test_non_finite_loss_names_the_step():
    calls = []

    def failing(w, b, x, y):
        calls.append(1)
        value, grads = linear_value_and_grad(w, b, x, y)
        return (np.nan if len(calls) == 17 else value), grads

    with pytest.raises(NonFiniteLossError, match=r"step 17 \(epoch 2, batch 4\)"):
        train(grad_fn=failing)


def test_diverging_run_reports_infinite_loss():
    with pytest.raises(NonFiniteLossError, match="loss became (inf|nan) at step"):
        with np.errstate(over="ignore", invalid="ignore"):
            train(optimizer=SGD(10.0), epochs=50)


def test_early_stopping_restores_the_best_epoch():
    params, (x, y) = linear_problem()

    def ascent(w, b, xb, yb):  # climbs the loss, so validation only gets worse
        value, (dw, db) = linear_value_and_grad(w, b, xb, yb)
        return value, (-dw, -db)

    first = train(grad_fn=ascent, epochs=1, validation=(x, y))
    result = train(grad_fn=ascent, epochs=10, validation=(x, y), early_stopping=2)
    assert result.stopped_early and len(result.history["val_loss"]) == 3
    assert result.params["w"].tobytes() == first.params["w"].tobytes()
    kept = train(grad_fn=ascent, epochs=10, validation=(x, y),
                 early_stopping=EarlyStopping(patience=1, restore_best=False))  # fmt: skip
    assert (
        len(kept.history["loss"]) == 2 and kept.params["w"].tobytes() != first.params["w"].tobytes()
    )


def test_early_stopping_on_a_maximized_metric_needs_validation():
    with pytest.raises(ValueError, match="needs validation data"):
        train(early_stopping=3)
    stop = EarlyStopping(patience=1, monitor="loss", mode="max")
    assert train(epochs=5, early_stopping=stop).stopped_early


class Crash(Exception):
    pass


def test_interrupted_run_resumes_to_identical_parameters(tmp_path):
    path = tmp_path / "run.ckpt"
    params, (x, y) = linear_problem()
    options = dict(epochs=4, optimizer=Adam(0.05), validation=(x[:40], y[:40]), seed=5)
    whole = train(**options)
    calls = []

    def crashing(*args):
        calls.append(1)
        if len(calls) == 30:  # mid-epoch 3 (13 steps per epoch); last checkpoint at step 28
            raise Crash
        return linear_value_and_grad(*args)

    with pytest.raises(Crash):
        train(grad_fn=crashing, checkpoint=path, checkpoint_every=4, **options)
    resumed = train(resume=path, checkpoint=path, **options)
    for key in ("w", "b"):
        assert resumed.params[key].tobytes() == whole.params[key].tobytes()
    assert resumed.history["step_loss"] == whole.history["step_loss"]
    assert resumed.history["val_loss"] == whole.history["val_loss"]
    assert resumed.opt_state["step"] == whole.opt_state["step"] == 52


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    path = tmp_path / "run.ckpt"
    train(checkpoint=path, seed=1, epochs=1)
    with pytest.raises(CheckpointError, match="seed=1"):
        train(resume=path, seed=2)
    with pytest.raises(CheckpointError, match="batch_size"):
        train(resume=path, seed=1, batch_size=8)


def test_finished_checkpoint_resumes_to_the_same_result(tmp_path):
    path = tmp_path / "run.ckpt"
    done = train(checkpoint=path)
    again = train(resume=path)
    assert again.params["w"].tobytes() == done.params["w"].tobytes()
    assert again.steps == done.steps


def test_sharded_data_trains_like_memory(tmp_path):
    params, (x, y) = linear_problem()
    write_shards(tmp_path, {"a_x": x, "b_y": y}, shard_size=37)
    memory = fit(linear_loss, params, (x, y), epochs=2, batch_size=16,
                 grad_fn=linear_value_and_grad, quiet=True)  # fmt: skip
    disk = fit(linear_loss, params, ShardedDataset(tmp_path, max_open=1), epochs=2,
               batch_size=16, grad_fn=linear_value_and_grad, quiet=True)  # fmt: skip
    assert disk.params["w"].tobytes() == memory.params["w"].tobytes()


def test_single_tree_parameter_argument():
    params, (x, y) = linear_problem()

    def loss(p, x, y):
        return linear_loss(p[0], p[1], x, y)

    def value_and_grad(p, x, y):
        value, (dw, db) = linear_value_and_grad(p[0], p[1], x, y)
        return value, (dw, db)

    result = fit(loss, (params["w"], params["b"]), (x, y), epochs=20, batch_size=16,
                 optimizer=SGD(0.05), grad_fn=value_and_grad, quiet=True)  # fmt: skip
    assert isinstance(result.params, tuple)
    np.testing.assert_allclose(result.params[0], [1.0, 2.0, 3.0], atol=0.02)


def test_argument_errors():
    params, data = linear_problem()
    with pytest.raises(TypeError, match="not both"):
        fit(linear_loss, params, data, lr=0.1, optimizer=SGD(0.1), grad_fn=linear_value_and_grad)
    with pytest.raises(TypeError, match="data argument"):
        fit(linear_loss, params, data[:1], grad_fn=linear_value_and_grad, quiet=True)


def test_progress_and_epoch_lines_unless_quiet(capsys, monkeypatch):
    from adcompiler.train import progress

    monkeypatch.setattr(progress, "interactive", lambda stream=None: True)  # as on a terminal
    train(epochs=2, quiet=False)
    captured = capsys.readouterr()
    assert "epoch 2/2: loss" in captured.out
    assert "epoch 2/2: 0%| | 0/13" in " ".join(captured.err.split())  # the tqdm bar
    train(epochs=2, quiet=True)
    assert capsys.readouterr() == ("", "")


def test_parallel_arguments_go_to_fit_parallel(monkeypatch):
    seen = {}
    fake = types.ModuleType("adcompiler.train.parallel")
    fake.fit_parallel = lambda loss, params, data, **kw: seen.update(kw, loss=loss) or "done"
    monkeypatch.setitem(sys.modules, "adcompiler.train.parallel", fake)
    assert train(workers=2, mode="async") == "done"
    assert seen["workers"] == 2 and seen["mode"] == "async" and seen["backend"] == "local"
    assert seen["loss"] is linear_loss and seen["batch_size"] == 16
    assert train(backend="mpi") == "done" and seen["backend"] == "mpi"


def test_plot_history(tmp_path, monkeypatch):
    params, (x, y) = linear_problem()
    result = train(validation=(x, y), metric=linear_loss)
    path = plot_history(result.history, tmp_path / "history.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="optional extra"):
        plot_history(result.history, tmp_path / "other.png")


@needs_compiler
def test_fit_on_the_generated_gradient():
    params, (x, y) = linear_problem()
    result = fit(linear_loss, params, (x, y), epochs=20, batch_size=16, optimizer=SGD(0.05),
                 quiet=True)  # fmt: skip
    reference = train(epochs=20)
    np.testing.assert_allclose(result.params["w"], reference.params["w"], rtol=1e-10)


def test_blas_threads_are_set_during_fit_and_restored():
    from adcompiler.train import threads

    before = threads.blas_threads()
    if before is None:
        pytest.skip("NumPy is not linked against OpenBLAS here")
    seen = []

    def recording(*args):
        seen.append(threads.blas_threads())
        return linear_value_and_grad(*args)

    train(grad_fn=recording, epochs=1, blas_threads=1)
    assert set(seen) == {1}
    assert threads.blas_threads() == before


def test_a_metric_that_cannot_take_the_loss_arguments_is_refused_before_training():
    """metrics.accuracy(logits, labels) as metric= used to fail after the first epoch."""
    from adcompiler.train.metrics import r2_score

    params, data = linear_problem()
    calls = []

    def counting_grad(*args):
        calls.append(1)
        return linear_value_and_grad(*args)

    expected = (r"the metric r2_score\(prediction, target\) is called like the loss, "
                r"with linear_loss's arguments \(w, b, x, y\)")  # fmt: skip
    with pytest.raises(TypeError, match=expected):
        fit(linear_loss, params, data, validation=data, metric=r2_score, epochs=1,
            batch_size=8, optimizer=SGD(0.1), grad_fn=counting_grad, quiet=True)  # fmt: skip
    assert calls == []

    def r2(w, b, x, y):
        return r2_score(x @ w + b, y)

    result = fit(linear_loss, params, data, validation=data, metric=r2, epochs=1, batch_size=8,
                 optimizer=SGD(0.1), grad_fn=linear_value_and_grad, quiet=True)  # fmt: skip
    assert "val_r2" in result.history
