import numpy as np
import pytest

from adcompiler.train import ArrayDataset, ShardedDataset, split, write_shards
from adcompiler.train.data import as_dataset, batch_order, batch_slices, steps_per_epoch


def test_split_fractions_seed_and_disjointness():
    x = np.arange(100)
    (a,), (b,), (c,) = split((x,), (0.7, 0.2, 0.1), seed=3)
    assert (len(a), len(b), len(c)) == (70, 20, 10)
    assert sorted(np.concatenate([a, b, c]).tolist()) == list(range(100))
    (a2,), _, _ = split((x,), (0.7, 0.2, 0.1), seed=3)
    np.testing.assert_array_equal(a, a2)
    (a3,), _, _ = split((x,), (0.7, 0.2, 0.1), seed=4)
    assert not np.array_equal(a, a3)


def test_split_keeps_rows_together():
    x = np.arange(10)
    (xa, ya), (xb, yb) = split((x, x * 10), (0.5, 0.5), seed=0)
    np.testing.assert_array_equal(ya, xa * 10)
    with pytest.raises(ValueError):
        split((x,), (0.5, 0.4))


def test_batch_order_is_a_pure_function_of_seed_and_epoch():
    assert np.array_equal(batch_order(50, 1, 2), batch_order(50, 1, 2))
    assert not np.array_equal(batch_order(50, 1, 2), batch_order(50, 1, 3))
    assert not np.array_equal(batch_order(50, 1, 2), batch_order(50, 2, 2))
    assert sorted(batch_order(50, 1, 2)) == list(range(50))


def test_last_partial_batch_kept_or_dropped():
    order = np.arange(10)
    kept = batch_slices(order, 4)
    assert [len(b) for b in kept] == [4, 4, 2]
    assert [len(b) for b in batch_slices(order, 4, drop_last=True)] == [4, 4]
    assert steps_per_epoch(10, 4) == 3 and steps_per_epoch(10, 4, drop_last=True) == 2


def test_sharded_dataset_reads_the_same_rows_as_memory(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(103, 4))
    y = rng.integers(0, 10, size=103)
    write_shards(tmp_path, {"x": x, "y": y}, shard_size=25)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[:3] == ["shards.json", "x.00000.npy", "x.00001.npy"]
    sharded = ShardedDataset(tmp_path, fields=("x", "y"), max_open=2)
    memory = ArrayDataset(x, y)
    assert len(sharded) == 103
    rows = batch_order(103, 0, 0)[:40]
    for got, want in zip(sharded.take(rows), memory.take(rows), strict=True):
        np.testing.assert_array_equal(got, want)
    assert all(len(cache) <= 2 for cache in sharded._open)
    assert isinstance(np.load(tmp_path / "x.00000.npy", mmap_mode="r"), np.memmap)


def test_sharded_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ShardedDataset(tmp_path)
    np.save(tmp_path / "x.00000.npy", np.zeros((3, 2)))
    np.save(tmp_path / "y.00000.npy", np.zeros(4))
    with pytest.raises(ValueError, match="shard lengths"):
        ShardedDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="z"):
        ShardedDataset(tmp_path, fields=("x", "z"))


def test_as_dataset():
    assert len(as_dataset((np.zeros(3), np.ones(3)))) == 3
    with pytest.raises(ValueError, match="differ in length"):
        as_dataset((np.zeros(3), np.ones(4)))
    with pytest.raises(TypeError):
        as_dataset("data")


def test_sharded_dataset_reads_headers_only_and_fortran_order(tmp_path):
    x = np.asfortranarray(np.arange(40.0).reshape(10, 4))
    np.save(tmp_path / "x.00000.npy", x[:6])
    np.save(tmp_path / "x.00001.npy", np.asfortranarray(x[6:]))
    sharded = ShardedDataset(tmp_path)
    assert all(len(cache) == 0 for cache in sharded._open)  # nothing mapped until take()
    (rows,) = sharded.take(np.array([9, 0, 7, 5]))
    np.testing.assert_array_equal(rows, x[[9, 0, 7, 5]])
    np.save(tmp_path / "x.00002.npy", np.zeros((2, 4), dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects"):
        ShardedDataset(tmp_path)
