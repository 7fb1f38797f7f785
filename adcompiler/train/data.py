"""Data sets, splits and the order of mini-batches.

A data set is anything with ``len(ds)`` and ``ds.take(indices)`` returning a
tuple of arrays (one per field, rows ``indices`` in that order)::

    ds = ArrayDataset(x, y)                  # in memory
    ds = ShardedDataset("data/train")        # a folder of .npy shards, memory-mapped
    order = batch_order(len(ds), seed=0, epoch=3)   # a permutation, a pure function
    for rows in batch_slices(order, batch_size=64, drop_last=False):
        x_batch, y_batch = ds.take(rows)

The order of epoch ``e`` depends only on ``(seed, e)``, so a resumed run or
another worker process recomputes it rather than sharing RNG state.

On disk, a sharded data set is a folder with one file per field and shard,
``<field>.<shard:05d>.npy`` (``x.00000.npy``, ``y.00000.npy``, ``x.00001.npy``,
...), all shards of a field agreeing in dtype and trailing shape; the fields
are taken in the order given by ``fields=`` or else alphabetically.
:func:`write_shards` writes that layout, plus a manifest ``shards.json``
that lists the fields and the rows of every shard. Only a few shards are
mapped at a time, so the address space and resident memory stay bounded
however large the data set is.

A shard set is checked when it is opened, from the files' headers and sizes
(no data is read): every field's shards are numbered 0, 1, 2, ... without a
gap, every field has the same shards with the same number of rows (so row
``i`` of ``x`` is always paired with row ``i`` of ``y``), no file is shorter
than its header says, and, where there is a manifest, nothing it lists is
missing (a lost last shard). Each problem is a :class:`ShardError` naming the
file.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np


def batch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits ``n`` examples (a permutation of ``range(n)``)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_slices(order: np.ndarray, batch_size: int, drop_last: bool = False) -> list[np.ndarray]:
    """Cut an order into mini-batches; a last partial one is kept unless ``drop_last``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    count = len(order) // batch_size if drop_last else -(-len(order) // batch_size)
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(count)]


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many mini-batches one epoch over ``n`` examples has."""
    return n // batch_size if drop_last else -(-n // batch_size)


class ArrayDataset:
    """In-memory arrays that share their first axis."""

    def __init__(self, *arrays: np.ndarray):
        if not arrays:
            raise ValueError("ArrayDataset needs at least one array")
        self.arrays = tuple(np.asarray(a) for a in arrays)
        lengths = {len(a) for a in self.arrays}
        if len(lengths) != 1:
            raise ValueError(f"arrays differ in length: {[len(a) for a in self.arrays]}")

    def __len__(self) -> int:
        return len(self.arrays[0])

    def take(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(a[indices] for a in self.arrays)


_SHARD_NAME = re.compile(r"^(?P<field>.+)\.(?P<index>\d{5})\.npy$")
MANIFEST = "shards.json"


class ShardError(ValueError):
    """A folder of shards is inconsistent: a gap, a field with other shards than the rest,
    rows that do not pair up, a truncated file. The message names the file."""


class ShardedDataset:
    """A folder of ``.npy`` shards read through memory maps, a few shards mapped at a time.

    Args:
        folder: the folder (layout in the module docstring).
        fields: which fields, in which order ``take`` returns them (default: all, sorted).
        max_open: how many shards of each field stay mapped at once (the least
            recently used are unmapped).

    Raises:
        FileNotFoundError: no shards, or none for a requested field.
        ShardError: the shards do not form one consistent set (see the module docstring).
    """

    def __init__(
        self, folder: str | os.PathLike, fields: Sequence[str] | None = None, max_open: int = 4
    ):
        self.folder = os.fspath(folder)
        found: dict[str, dict[int, str]] = {}
        for name in os.listdir(self.folder):
            match = _SHARD_NAME.match(name)
            if match:
                found.setdefault(match["field"], {})[int(match["index"])] = name
        if not found:
            raise FileNotFoundError(f"no <field>.<00000>.npy shards in {self.folder}")
        self.fields = tuple(fields) if fields is not None else tuple(sorted(found))
        missing = [f for f in self.fields if f not in found]
        if missing:
            raise FileNotFoundError(f"no shards for field(s) {missing} in {self.folder}")
        count = self._check_numbering({f: found[f] for f in self.fields})
        self._files = [
            [os.path.join(self.folder, found[f][i]) for i in range(count)] for f in self.fields
        ]
        self._lengths, self._rows = self._inspect()
        self._check_manifest()
        self._starts = np.concatenate([[0], np.cumsum(self._lengths)])
        self.max_open = max_open
        self._open: list[OrderedDict[int, np.ndarray]] = [OrderedDict() for _ in self.fields]

    def _path(self, field: str, shard: int) -> str:
        return os.path.join(self.folder, f"{field}.{shard:05d}.npy")

    def _check_numbering(self, found: dict[str, dict[int, str]]) -> int:
        """Every field's shards are 0..n-1, the same n for all; returns n."""
        for field, shards in found.items():
            gaps = sorted(set(range(max(shards) + 1)) - set(shards))
            if gaps:
                raise ShardError(
                    f"{self._path(field, gaps[0])} is missing: the shards of field {field!r} "
                    f"are numbered {_ranges(sorted(shards))}, with a gap"
                )
        counts = {field: len(shards) for field, shards in found.items()}
        most = max(counts.values())
        for field, count in counts.items():
            if count < most:
                longest = max(counts, key=counts.get)
                raise ShardError(
                    f"{self._path(field, count)} is missing: field {field!r} has {count} "
                    f"shard(s), field {longest!r} has {most}"
                )
        return most

    def _inspect(self) -> tuple[np.ndarray, list[tuple[tuple[int, ...], np.dtype]]]:
        """Shard lengths, and each field's row shape and dtype; checks that they agree.

        Reads only the ``.npy`` headers (nothing is mapped) and keeps where each
        shard's data starts, so that opening a shard later is one ``mmap``.
        """
        self._headers = [[_npy_header(f) for f in files] for files in self._files]
        lengths, rows = None, []
        for field, files, headers in zip(self.fields, self._files, self._headers, strict=True):
            field_lengths = [shape[0] if shape else 0 for shape, _, _, _ in headers]
            if lengths is None:
                lengths, first = field_lengths, files
            for shard, (rows_here, rows_first) in enumerate(zip(field_lengths, lengths)):
                if rows_here != rows_first:
                    raise ShardError(
                        f"{files[shard]} has {rows_here} rows but {first[shard]} has "
                        f"{rows_first}: the shard lengths of the fields must match row for row"
                    )
            shape, _, dtype, _ = headers[0]
            for path, (other, _, other_dtype, _) in zip(files, headers):
                if (other[1:], other_dtype) != (shape[1:], dtype):
                    raise ShardError(
                        f"{path} holds rows of shape {other[1:]} and dtype {other_dtype}, "
                        f"{files[0]} of shape {shape[1:]} and dtype {dtype}: the shards of "
                        f"field {field!r} differ in dtype or row shape"
                    )
            rows.append((shape[1:], dtype))
        return np.asarray(lengths, dtype=np.int64), rows

    def _check_manifest(self) -> None:
        """Where :func:`write_shards` left a manifest, nothing it lists may be missing."""
        path = os.path.join(self.folder, MANIFEST)
        if not os.path.exists(path):
            return
        try:
            with open(path) as file:
                manifest = json.load(file)
            listed, rows = list(manifest["fields"]), [int(r) for r in manifest["shard_rows"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ShardError(f"{path} is not a readable shard manifest ({error})") from None
        for field in self.fields:
            if field not in listed:
                continue
            have = len(self._lengths)
            if have < len(rows):
                raise ShardError(
                    f"{self._path(field, have)} is missing: {path} lists {len(rows)} shards "
                    f"of field {field!r}, the folder has {have}"
                )
            if have > len(rows) or list(self._lengths) != rows:
                raise ShardError(
                    f"the shards of field {field!r} in {self.folder} (rows "
                    f"{list(self._lengths)}) are not those {path} lists (rows {rows}); "
                    "write the folder again with write_shards"
                )

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _shard(self, field: int, shard: int) -> np.ndarray:
        cache = self._open[field]
        if shard in cache:
            cache.move_to_end(shard)
            return cache[shard]
        while len(cache) >= self.max_open:
            cache.popitem(last=False)  # dropping the last reference unmaps it
        shape, fortran_order, dtype, offset = self._headers[field][shard]
        if shape[0] == 0:
            array = np.empty(shape, dtype=dtype)  # an empty file region cannot be mapped
        else:
            array = np.memmap(self._files[field][shard], dtype=dtype, mode="r", offset=offset,
                              shape=shape, order="F" if fortran_order else "C")  # fmt: skip
        cache[shard] = array
        return array

    def take(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        indices = np.asarray(indices, dtype=np.int64)
        shard_of = np.searchsorted(self._starts, indices, side="right") - 1
        shards = np.unique(shard_of)
        out = []
        for field, (row_shape, dtype) in enumerate(self._rows):
            column = np.empty((len(indices),) + row_shape, dtype=dtype)
            for shard in shards:
                where = np.flatnonzero(shard_of == shard)
                column[where] = self._shard(field, int(shard))[indices[where] - self._starts[shard]]
            out.append(column)
        return tuple(out)

    def close(self) -> None:
        """Unmap every open shard."""
        for cache in self._open:
            cache.clear()


def _npy_header(path: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data offset)`` of a ``.npy`` file, without reading data.

    Raises :class:`ShardError` naming the file if it is not a ``.npy`` file, holds Python
    objects, or is shorter than its header says (truncated)."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(file)
            else:
                header = np.lib.format.read_array_header_2_0(file)
            offset = file.tell()
    except (ValueError, OSError, EOFError) as error:
        raise ShardError(f"{path} is not a readable .npy file ({error})") from None
    shape, fortran_order, dtype = header
    if dtype.hasobject:
        raise ShardError(f"{path} holds Python objects; shards must be plain arrays")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = os.path.getsize(path)
    if size < expected:
        raise ShardError(
            f"{path} is truncated: its header promises an array of shape {tuple(shape)} and "
            f"dtype {dtype} ({expected} bytes with the header), the file has {size} bytes"
        )
    return tuple(shape), fortran_order, dtype, offset


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 4]`` -> ``"0-2, 4"``."""
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)


def write_shards(folder: str | os.PathLike, arrays: dict[str, np.ndarray], shard_size: int) -> None:
    """Write ``{field: array}`` as ``<field>.<shard>.npy`` files of ``shard_size`` rows."""
    os.makedirs(folder, exist_ok=True)
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1:
        raise ValueError("all fields must have the same number of rows")
    (n,) = lengths
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    rows = []
    for shard, start in enumerate(range(0, n, shard_size)):
        for field, array in arrays.items():
            np.save(
                os.path.join(folder, f"{field}.{shard:05d}.npy"), array[start : start + shard_size]
            )
        rows.append(len(range(start, min(start + shard_size, n))))
    manifest = {"fields": list(arrays), "shard_rows": rows}
    with open(os.path.join(folder, MANIFEST), "w") as file:
        json.dump(manifest, file)


def as_dataset(data) -> ArrayDataset | ShardedDataset:
    """Accept a data set, a tuple/list of arrays, or a single array."""
    if hasattr(data, "take") and hasattr(data, "__len__"):
        return data
    if isinstance(data, np.ndarray):
        return ArrayDataset(data)
    if isinstance(data, tuple | list):
        return ArrayDataset(*data)
    raise TypeError(
        "training data must be a tuple of arrays or a data set with take(), "
        f"got {type(data).__name__}"
    )


def split(
    arrays: Sequence[np.ndarray], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> list[tuple[np.ndarray, ...]]:
    """Shuffle rows with ``seed`` and cut them into parts of the given fractions.

    ``split((x, y), (0.8, 0.1, 0.1), seed=0)`` returns ``[(x_train, y_train),
    (x_val, y_val), (x_test, y_test)]``. Fractions must sum to 1; rounding
    goes to the last part.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("arrays to split differ in length")
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {tuple(fractions)}")
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.round(np.cumsum((0.0,) + tuple(fractions)) * n).astype(int)
    bounds[-1] = n
    return [
        tuple(a[order[lo:hi]] for a in arrays)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def iterate_batches(
    dataset, batch_size: int, seed: int, epoch: int, drop_last: bool = False
) -> Iterator[tuple[np.ndarray, ...]]:
    """The mini-batches of one epoch, in that epoch's seeded order."""
    for rows in batch_slices(batch_order(len(dataset), seed, epoch), batch_size, drop_last):
        yield dataset.take(rows)
