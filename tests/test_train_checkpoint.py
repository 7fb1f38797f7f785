import os
import zipfile

import numpy as np
import pytest

from adcompiler.train import checkpoint
from adcompiler.train.checkpoint import CheckpointError


def state():
    return {
        "params": {"W": np.arange(6.0).reshape(2, 3), "b": np.array([1.5, -2.5])},
        "opt_state": {"step": 7, "m": {"W": np.ones((2, 3)), "b": np.zeros(2)}},
        "order": np.arange(5, dtype=np.int64),
        "best": None,
        "layers": (np.float32(3.0), [np.array(1, dtype=np.int8)]),
    }


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "run.ckpt"
    original = state()
    original["params"]["W"][0, 0] = np.nextafter(0.0, 1.0)  # a subnormal survives bit for bit
    checkpoint.save(path, original, {"epoch": 3, "history": {"loss": [0.1, 1 / 3]}})
    loaded, meta = checkpoint.load(path)
    assert meta == {"epoch": 3, "history": {"loss": [0.1, 1 / 3]}}
    assert loaded["opt_state"]["step"] == 7 and isinstance(loaded["opt_state"]["step"], int)
    assert loaded["best"] is None
    assert isinstance(loaded["layers"], tuple) and isinstance(loaded["layers"][1], list)
    assert loaded["layers"][1][0].dtype == np.int8
    for key in ("W", "b"):
        assert loaded["params"][key].tobytes() == original["params"][key].tobytes()
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"], "no temporary file left"


def test_overwrite_is_atomic_rename(tmp_path):
    path = tmp_path / "run.ckpt"
    checkpoint.save(path, state(), {"n": 1})
    inode = os.stat(path).st_ino
    checkpoint.save(path, state(), {"n": 2})
    assert checkpoint.load(path)[1] == {"n": 2}
    assert os.stat(path).st_ino != inode  # a new file renamed over the old one


@pytest.mark.parametrize("keep", [10, 200, -30, -1])
def test_truncated_checkpoint_is_detected(tmp_path, keep):
    path = tmp_path / "run.ckpt"
    checkpoint.save(path, state(), {})
    data = path.read_bytes()
    path.write_bytes(data[:keep])  # the first bytes, or all but the last -keep
    with pytest.raises(CheckpointError, match="truncated, corrupted or not a checkpoint"):
        checkpoint.load(path)


def test_every_flipped_byte_in_an_array_is_detected(tmp_path):
    path = tmp_path / "run.ckpt"
    checkpoint.save(path, state(), {})
    data = bytearray(path.read_bytes())
    raw = np.arange(6.0).reshape(2, 3).tobytes()
    start = bytes(data).index(raw)
    for offset in range(0, len(raw), 7):
        corrupted = bytearray(data)
        corrupted[start + offset] ^= 0x01
        path.write_bytes(bytes(corrupted))
        with pytest.raises(CheckpointError):
            checkpoint.load(path)


def test_checksum_catches_a_consistently_rewritten_member(tmp_path):
    # A member replaced with valid zip CRCs still fails the checksum.
    path = tmp_path / "run.ckpt"
    checkpoint.save(path, state(), {})
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["arrays/0.npy"] = members["arrays/0.npy"].replace(
        np.arange(6.0).tobytes(), (np.arange(6.0) + 1).tobytes()
    )
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(CheckpointError, match="checksum does not match"):
        checkpoint.load(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nothing")
    not_zip = tmp_path / "notes.txt"
    not_zip.write_text("hello")
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    for path in (not_zip, empty):
        with pytest.raises(CheckpointError):
            checkpoint.load(path)


def test_object_arrays_are_refused_and_never_unpickled(tmp_path):
    with pytest.raises(ValueError):
        checkpoint.save(tmp_path / "bad.ckpt", {"x": np.array([{"a": 1}], dtype=object)})
    assert not (tmp_path / "bad.ckpt").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    checkpoint.save(path, state(), {"n": 1})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        checkpoint.save(path, state(), {"n": 2})
    monkeypatch.undo()
    assert checkpoint.load(path)[1] == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]
