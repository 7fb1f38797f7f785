"""Checkpoints: a tree of arrays plus JSON metadata, written atomically, read without pickle.

A checkpoint file is a zip archive (uncompressed) with three kinds of member::

    header.json        {"format": "adcompiler-checkpoint", "version": 1,
                        "structure": ..., "leaves": [{"array": 0}, {"json": 12}, ...],
                        "meta": {...}}
    arrays/0.npy       one .npy member per array leaf, written with allow_pickle=False
    checksum.sha256    SHA-256 of header.json followed by every arrays/*.npy, in order

:func:`save` writes to a temporary file in the same folder, fsyncs it,
renames it over the target and fsyncs the folder, so a crash leaves either
the old checkpoint or the new one, never a mix. :func:`load` checks the
zip's CRCs and the checksum and reads arrays with ``allow_pickle=False``;
anything wrong raises :class:`CheckpointError` naming the file and the
problem. Leaves that are Python scalars (``int``, ``float``, ``bool``,
``str``, ``None``), such as an optimizer's step counter, are kept in the
header and come back as the same Python type.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np

from adcompiler.train import tree as trees

FORMAT = "adcompiler-checkpoint"
VERSION = 1
_JSON_LEAF = (int, float, bool, str, type(None))


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted or not a checkpoint."""


def save(path: str | os.PathLike, state: trees.Tree, meta: dict | None = None) -> None:
    """Atomically write ``state`` (a tree of arrays and scalars) and JSON-able ``meta``."""
    path = os.fspath(path)
    members = _encode(state, meta or {})
    folder = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as file:
            with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as archive:
                for name, data in members:
                    archive.writestr(name, data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)


def check_writable(path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` now if :func:`save` could not write ``path`` (a folder,
    a missing or read-only folder), rather than after the first epoch of training."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CheckpointError(f"checkpoint {path}: the folder {folder} does not exist")
    probe = os.path.join(folder, f".{os.path.basename(path)}.probe-{os.getpid()}")
    try:
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as error:
        raise CheckpointError(
            f"checkpoint {path} cannot be written: {error.strerror or error}"
        ) from None


def _encode(state: trees.Tree, meta: dict) -> list[tuple[str, bytes]]:
    descriptors, arrays = [], []
    for leaf in trees.leaves(state):
        if isinstance(leaf, _JSON_LEAF) and not isinstance(leaf, np.generic):
            descriptors.append({"json": leaf})
        else:
            descriptors.append({"array": len(arrays)})
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(leaf), allow_pickle=False)
            arrays.append(buffer.getvalue())
    header = {
        "format": FORMAT,
        "version": VERSION,
        "structure": trees.structure_to_json(trees.structure(state)),
        "leaves": descriptors,
        "meta": meta,
    }
    header_bytes = json.dumps(header).encode()
    members = [("header.json", header_bytes)]
    members += [(f"arrays/{i}.npy", data) for i, data in enumerate(arrays)]
    digest = _digest(data for _, data in members)
    return members + [("checksum.sha256", digest.encode())]


def _digest(chunks) -> str:
    sha = hashlib.sha256()
    for chunk in chunks:
        sha.update(len(chunk).to_bytes(8, "little"))
        sha.update(chunk)
    return sha.hexdigest()


def _fsync_folder(folder: str) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load(path: str | os.PathLike) -> tuple[trees.Tree, dict]:
    """Read a checkpoint written by :func:`save`; returns ``(state, meta)``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            header_bytes = archive.read("header.json")
            header = json.loads(header_bytes)
            count = sum("array" in d for d in header["leaves"])
            arrays = [archive.read(f"arrays/{i}.npy") for i in range(count)]
            stored_digest = archive.read("checksum.sha256").decode()
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, ValueError, TypeError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated, corrupted or not a checkpoint ({error})"
        ) from error
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise CheckpointError(f"{path} is not a version-{VERSION} {FORMAT} file")
    if _digest([header_bytes, *arrays]) != stored_digest:
        raise CheckpointError(f"checkpoint {path} is corrupted: its checksum does not match")
    decoded = [np.lib.format.read_array(io.BytesIO(a), allow_pickle=False) for a in arrays]
    leaves = [d["json"] if "json" in d else decoded[d["array"]] for d in header["leaves"]]
    state = trees.build(trees.structure_from_json(header["structure"]), leaves)
    return state, header["meta"]
