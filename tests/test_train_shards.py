"""Shard sets are checked when opened (issue 16): numbered without gaps, the same shards
and rows for every field, no truncated file, nothing the manifest lists missing; every
error names the file. Resume refuses parameters unlike the checkpoint's; checkpoint
paths are checked before the first step."""

import os

import numpy as np
import pytest

from adcompiler.train import SGD, ShardedDataset, fit, write_shards
from adcompiler.train.checkpoint import CheckpointError
from adcompiler.train.data import ShardError

try:
    from test_train_helpers import linear_loss, linear_problem, linear_value_and_grad
except ImportError:  # collected as part of a package
    from tests.test_train_helpers import linear_loss, linear_problem, linear_value_and_grad


def four_shards(folder, rows=100):
    x = np.arange(4 * rows, dtype=np.float64).reshape(-1, 1)
    write_shards(folder, {"x": x, "y": 2 * x[:, 0]}, shard_size=rows)
    return x


def test_the_issue_example_a_gap_in_each_field_is_refused(tmp_path):
    """x.00002 and y.00003 missing: both fields have 3 shards of 100 rows, and without the
    check rows 200-299 of x (shard 3) were paired with y's shard 2."""
    four_shards(tmp_path)
    os.remove(tmp_path / "x.00002.npy")
    os.remove(tmp_path / "y.00003.npy")
    with pytest.raises(ShardError, match=r"x\.00002\.npy is missing.*numbered 0-1, 3"):
        ShardedDataset(tmp_path)


def test_a_field_with_fewer_shards_is_refused(tmp_path):
    four_shards(tmp_path)
    os.remove(tmp_path / "y.00003.npy")
    with pytest.raises(ShardError, match=r"y\.00003\.npy is missing: field 'y' has 3"):
        ShardedDataset(tmp_path)


def test_a_missing_last_shard_is_caught_by_the_manifest(tmp_path):
    four_shards(tmp_path)
    os.remove(tmp_path / "x.00003.npy")
    os.remove(tmp_path / "y.00003.npy")
    with pytest.raises(ShardError, match=r"x\.00003\.npy is missing: .*shards.json lists 4"):
        ShardedDataset(tmp_path)


def test_a_stale_shard_beyond_the_manifest_is_refused(tmp_path):
    four_shards(tmp_path)
    np.save(tmp_path / "x.00004.npy", np.zeros((5, 1)))
    np.save(tmp_path / "y.00004.npy", np.zeros(5))
    with pytest.raises(ShardError, match="not those .*shards.json lists"):
        ShardedDataset(tmp_path)


def test_rows_that_do_not_pair_up_are_refused(tmp_path):
    four_shards(tmp_path)
    np.save(tmp_path / "y.00001.npy", np.zeros(99))
    with pytest.raises(ShardError, match=r"y\.00001\.npy has 99 rows but .*x\.00001\.npy has 100"):
        ShardedDataset(tmp_path)


def test_a_truncated_shard_is_refused_when_opened(tmp_path):
    four_shards(tmp_path)
    path = tmp_path / "x.00002.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 80])  # a copy cut short
    with pytest.raises(ShardError, match=r"x\.00002\.npy is truncated"):
        ShardedDataset(tmp_path)


def test_a_file_that_is_not_npy_is_named(tmp_path):
    four_shards(tmp_path)
    (tmp_path / "y.00000.npy").write_bytes(b"not an array")
    with pytest.raises(ShardError, match=r"y\.00000\.npy is not a readable \.npy file"):
        ShardedDataset(tmp_path)


def test_a_consistent_folder_without_manifest_still_opens(tmp_path):
    x = four_shards(tmp_path)
    os.remove(tmp_path / "shards.json")
    data = ShardedDataset(tmp_path)
    assert len(data) == 400
    got_x, got_y = data.take(np.array([399, 0, 250]))
    np.testing.assert_array_equal(got_x[:, 0], x[[399, 0, 250], 0])
    np.testing.assert_array_equal(got_y, 2 * got_x[:, 0])


# ------------------------------------------------------------------ checkpoints


def test_resume_refuses_parameters_of_other_shapes(tmp_path):
    params, data = linear_problem()
    path = tmp_path / "run.ckpt"
    options = dict(epochs=1, batch_size=8, optimizer=SGD(0.1), grad_fn=linear_value_and_grad,
                   quiet=True)  # fmt: skip
    fit(linear_loss, params, data, checkpoint=path, **options)
    wider = {k: np.zeros(np.shape(v) + (2,)) if k == "w" else v for k, v in params.items()}
    with pytest.raises(CheckpointError, match=r"parameter w is float64\[3\] in the checkpoint "
                                              r"but float64\[3, 2\] in this run"):
        fit(linear_loss, wider, data, resume=path, **{**options, "epochs": 2})
    single = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
    with pytest.raises(CheckpointError, match="float64.* in the checkpoint but float32"):
        fit(linear_loss, single, data, resume=path, **{**options, "epochs": 2})
    renamed = {("weights" if k == "w" else k): v for k, v in params.items()}
    with pytest.raises(CheckpointError, match="the run has weights, the checkpoint does not"):
        fit(linear_loss, renamed, data, resume=path, **{**options, "epochs": 2})


def test_an_unwritable_checkpoint_fails_before_the_first_step(tmp_path):
    params, data = linear_problem()
    steps = []

    def counting_value_and_grad(*args):
        steps.append(1)
        return linear_value_and_grad(*args)

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for path, message in [(blocker / "run.ckpt", "does not exist"), (tmp_path, "is a folder")]:
        with pytest.raises(CheckpointError, match=message):
            fit(linear_loss, params, data, epochs=1, batch_size=8, optimizer=SGD(0.1),
                grad_fn=counting_value_and_grad, quiet=True, checkpoint=path)  # fmt: skip
    assert steps == []
