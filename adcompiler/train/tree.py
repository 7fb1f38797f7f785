"""Parameter structures ("trees") of NumPy arrays.

A tree is an array (or a Python/NumPy scalar), or a ``dict``, ``list`` or
``tuple`` of trees. Optimizers, checkpoints and the data-parallel engines
all work over trees, through the few functions here::

    params = {"W": np.ones((2, 3)), "b": np.zeros(3)}
    leaves(params)                  # [W, b]            (dict insertion order)
    tree_map(lambda p, g: p - g, params, grads)
    buffer, spec = flatten(params)  # one contiguous float64 vector, 9 entries
    unflatten(buffer, spec)         # {"W": view of buffer[:6], "b": view of buffer[6:]}

``spec`` is a :class:`FlatSpec` (structure, shapes, dtypes); it is hashable
and turns into JSON with :func:`spec_to_json`, so a checkpoint or another
process can rebuild the tree. ``flatten(tree, out=buffer)`` writes into an
existing buffer (e.g. shared memory) without allocating.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

Tree = Any

# A structure is a nested tuple description: "*" for a leaf, or
# ("dict", (key, ...), (sub, ...)), ("list", (sub, ...)), ("tuple", (sub, ...)).
Structure = Any
LEAF = "*"


def is_leaf(node: Tree) -> bool:
    """True for anything that is not a dict, list or tuple."""
    return not isinstance(node, dict | list | tuple)


def structure(tree: Tree) -> Structure:
    """The shape of a tree without its leaves (hashable, JSON-able)."""
    if isinstance(tree, dict):
        return ("dict", tuple(tree), tuple(structure(v) for v in tree.values()))
    if isinstance(tree, list | tuple):
        kind = "list" if isinstance(tree, list) else "tuple"
        return (kind, tuple(structure(v) for v in tree))
    return LEAF


def leaves(tree: Tree) -> list:
    """The leaves of ``tree`` in a fixed order (dicts in insertion order)."""
    return list(_iter_leaves(tree))


def _iter_leaves(tree: Tree) -> Iterator:
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _iter_leaves(value)
    elif isinstance(tree, list | tuple):
        for value in tree:
            yield from _iter_leaves(value)
    else:
        yield tree


def paths(tree: Tree, prefix: str = "") -> list[str]:
    """A readable path per leaf, e.g. ``["W1", "layers/0/b"]``, in leaf order."""
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in paths(v, f"{prefix}{k}/")]
    if isinstance(tree, list | tuple):
        return [p for i, v in enumerate(tree) for p in paths(v, f"{prefix}{i}/")]
    return [prefix.rstrip("/")]


def build(struct: Structure, leaf_values: list) -> Tree:
    """Inverse of (:func:`structure`, :func:`leaves`)."""
    iterator = iter(leaf_values)
    tree = _build(struct, iterator)
    if next(iterator, _END) is not _END:
        raise ValueError("more leaves than the structure has places for")
    return tree


_END = object()


def _build(struct: Structure, iterator: Iterator) -> Tree:
    if struct == LEAF:
        value = next(iterator, _END)
        if value is _END:
            raise ValueError("fewer leaves than the structure has places for")
        return value
    if struct[0] == "dict":
        return {k: _build(s, iterator) for k, s in zip(struct[1], struct[2], strict=True)}
    children = [_build(s, iterator) for s in struct[1]]
    return children if struct[0] == "list" else tuple(children)


def tree_map(fn: Callable, tree: Tree, *others: Tree) -> Tree:
    """Apply ``fn`` leafwise to ``tree`` and trees of the same structure."""
    if isinstance(tree, dict):
        for other in others:
            if not isinstance(other, dict) or other.keys() != tree.keys():
                _mismatch(tree, others)
        return {k: tree_map(fn, v, *(o[k] for o in others)) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        for other in others:
            if type(other) is not type(tree) or len(other) != len(tree):
                _mismatch(tree, others)
        mapped = [tree_map(fn, *column) for column in zip(tree, *others, strict=True)]
        return mapped if isinstance(tree, list) else tuple(mapped)
    for other in others:
        if not is_leaf(other):
            _mismatch(tree, others)
    return fn(tree, *others)


def _mismatch(tree: Tree, others: tuple) -> None:
    shown = " vs ".join(describe(structure(t)) for t in (tree, *others))
    raise ValueError(f"tree structures differ: {shown}")


def describe(struct: Structure) -> str:
    """A short human-readable rendering of a structure."""
    if struct == LEAF:
        return "array"
    if struct[0] == "dict":
        inner = ", ".join(f"{k}: {describe(s)}" for k, s in zip(struct[1], struct[2], strict=True))
        return "{" + inner + "}"
    inner = ", ".join(describe(s) for s in struct[1])
    return f"[{inner}]" if struct[0] == "list" else f"({inner})"


# ---------------------------------------------------------------- flat buffers


@dataclass(frozen=True)
class FlatSpec:
    """What :func:`unflatten` needs to rebuild a tree from a flat buffer."""

    structure: Structure
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(np.prod(s, dtype=np.int64)) for s in self.shapes)

    @property
    def size(self) -> int:
        return sum(self.sizes)


def flat_spec(tree: Tree) -> FlatSpec:
    """The :class:`FlatSpec` of ``tree``."""
    arrays = [np.asarray(leaf) for leaf in leaves(tree)]
    return FlatSpec(
        structure(tree), tuple(a.shape for a in arrays), tuple(a.dtype.str for a in arrays)
    )


def flatten(tree: Tree, out: np.ndarray | None = None) -> tuple[np.ndarray, FlatSpec]:
    """Copy the leaves of ``tree`` into one contiguous float64 vector.

    Args:
        tree: the structure of arrays.
        out: an existing float64 vector of the right size to write into.

    Returns:
        ``(buffer, spec)``.
    """
    spec = flat_spec(tree)
    if out is None:
        out = np.empty(spec.size, dtype=np.float64)
    elif out.shape != (spec.size,) or out.dtype != np.float64:
        raise ValueError(f"out must be a float64 vector of {spec.size} entries")
    start = 0
    for leaf, size in zip(leaves(tree), spec.sizes, strict=True):
        out[start : start + size] = np.ravel(leaf)
        start += size
    return out, spec


def unflatten(buffer: np.ndarray, spec: FlatSpec) -> Tree:
    """Rebuild a tree from a flat buffer.

    float64 leaves are views into ``buffer`` (no copy); other dtypes are
    converted copies.
    """
    if buffer.shape != (spec.size,):
        raise ValueError(f"buffer has shape {buffer.shape}, spec wants ({spec.size},)")
    out, start = [], 0
    for shape, dtype, size in zip(spec.shapes, spec.dtypes, spec.sizes, strict=True):
        piece = buffer[start : start + size].reshape(shape)
        out.append(piece if np.dtype(dtype) == np.float64 else piece.astype(dtype))
        start += size
    return build(spec.structure, out)


def spec_to_json(spec: FlatSpec) -> str:
    """Serialize a :class:`FlatSpec` to JSON."""
    return json.dumps(
        {
            "structure": structure_to_json(spec.structure),
            "shapes": [list(s) for s in spec.shapes],
            "dtypes": list(spec.dtypes),
        }
    )


def spec_from_json(text: str) -> FlatSpec:
    """Inverse of :func:`spec_to_json`."""
    data = json.loads(text)
    return FlatSpec(
        structure_from_json(data["structure"]),
        tuple(tuple(s) for s in data["shapes"]),
        tuple(data["dtypes"]),
    )


def structure_to_json(struct: Structure) -> Any:
    """A JSON-friendly form of a structure (dict keys must be strings)."""
    if struct == LEAF:
        return LEAF
    if struct[0] == "dict":
        for key in struct[1]:
            if not isinstance(key, str):
                raise TypeError(f"dict keys in a parameter tree must be strings, got {key!r}")
        return {
            "dict": [[k, structure_to_json(s)] for k, s in zip(struct[1], struct[2], strict=True)]
        }
    return {struct[0]: [structure_to_json(s) for s in struct[1]]}


def structure_from_json(data: Any) -> Structure:
    """Inverse of :func:`structure_to_json`."""
    if data == LEAF:
        return LEAF
    ((kind, items),) = data.items()
    if kind == "dict":
        return ("dict", tuple(k for k, _ in items), tuple(structure_from_json(s) for _, s in items))
    if kind not in ("list", "tuple"):
        raise ValueError(f"unknown tree node kind {kind!r}")
    return (kind, tuple(structure_from_json(s) for s in items))
