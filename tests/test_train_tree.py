import numpy as np
import pytest

from adcompiler.train import tree


def nested():
    return {"a": np.arange(6.0).reshape(2, 3), "b": (np.ones(2), [np.array(5.0)]), "c": np.int32(7)}


def test_leaves_and_build_round_trip():
    t = nested()
    rebuilt = tree.build(tree.structure(t), tree.leaves(t))
    assert tree.structure(rebuilt) == tree.structure(t)
    assert isinstance(rebuilt["b"], tuple) and isinstance(rebuilt["b"][1], list)
    assert tree.paths(t) == ["a", "b/0", "b/1/0", "c"]


def test_tree_map_over_several_trees_and_mismatch():
    t = nested()
    doubled = tree.tree_map(lambda p, q: p + q, t, t)
    np.testing.assert_array_equal(doubled["a"], 2 * t["a"])
    with pytest.raises(ValueError, match="tree structures differ"):
        tree.tree_map(lambda p, q: p, t, {"a": 1, "b": (1, 2), "c": 3})


def test_flatten_is_contiguous_float64_and_unflatten_gives_views():
    t = {"W": np.arange(6.0).reshape(2, 3), "b": np.array([7.0, 8.0])}
    buffer, spec = tree.flatten(t)
    assert buffer.dtype == np.float64 and buffer.flags.c_contiguous
    np.testing.assert_array_equal(buffer, [0, 1, 2, 3, 4, 5, 7, 8])
    back = tree.unflatten(buffer, spec)
    buffer[0] = 100.0
    assert back["W"][0, 0] == 100.0  # a view, no copy
    assert back["W"].shape == (2, 3)


def test_flatten_into_existing_buffer_and_json_spec():
    t = [np.ones((2, 2)), {"x": np.zeros(3, dtype=np.float32)}]
    out = np.full(7, -1.0)
    buffer, spec = tree.flatten(t, out=out)
    assert buffer is out and np.all(out == [1, 1, 1, 1, 0, 0, 0])
    spec2 = tree.spec_from_json(tree.spec_to_json(spec))
    assert spec2 == spec
    back = tree.unflatten(out, spec2)
    assert back[1]["x"].dtype == np.float32
    with pytest.raises(ValueError):
        tree.flatten(t, out=np.zeros(3))
