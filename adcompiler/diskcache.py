"""A disk cache of generated source, so a fresh process skips compiling.

Key: a hash of the adcompiler version, the transform and its options, and the
source and bytecode of the function and of every user function it can reach
through its globals (helpers it calls, transitively). Entry: a small JSON file
with the generated source and the names it needs. Files are written to a
temporary file, fsync'd and renamed into place, so concurrent processes see a
whole entry or none. The directory is created owner-only (0700).

    ADCOMPILER_CACHE_DIR   where the entries go (default: $XDG_CACHE_HOME/adcompiler
                           or ~/.cache/adcompiler)
    ADCOMPILER_DISK_CACHE  "0" turns the disk cache off
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import sys
import tempfile
import types
from pathlib import Path


def enabled() -> bool:
    return os.environ.get("ADCOMPILER_DISK_CACHE", "1") != "0"


def directory() -> Path:
    base = os.environ.get("ADCOMPILER_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "adcompiler"


def key(f, *parts) -> str | None:
    """The cache key of `f` with these options, or None if `f` cannot be keyed."""
    from adcompiler import __version__

    digest = hashlib.sha256(__version__.encode())
    digest.update(_compiler_fingerprint().encode())
    for part in parts:
        digest.update(repr(part).encode())
    seen: set[int] = set()
    stack = [f]
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        code = getattr(fn, "__code__", None)
        if code is None:
            return None
        digest.update(fn.__qualname__.encode())
        digest.update(_source(fn).encode())
        digest.update(code.co_code)
        digest.update(repr(code.co_consts).encode("utf-8", "replace"))
        digest.update(repr(fn.__defaults__).encode("utf-8", "replace"))
        for name in _names(code):
            value = fn.__globals__.get(name)
            if isinstance(value, types.FunctionType) and not value.__module__.startswith(
                ("numpy", "scipy", "adcompiler.")
            ):
                stack.append(value)
            elif isinstance(value, (int, float, str, bool, tuple)):
                digest.update(f"{name}={value!r}".encode())
    return digest.hexdigest()


_FINGERPRINT: list[str] = []


def _compiler_fingerprint() -> str:
    """Sizes and modification times of adcompiler's own files: an edited compiler never
    reuses code an older one generated."""
    if not _FINGERPRINT:
        root = os.path.dirname(os.path.abspath(__file__))
        stats = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in ("train", "__pycache__"))
            for name in sorted(files):
                if name.endswith(".py"):
                    info = os.stat(os.path.join(folder, name))
                    stats.append(f"{folder[len(root) :]}/{name}:{info.st_size}:{info.st_mtime_ns}")
        _FINGERPRINT.append(hashlib.sha256("\n".join(stats).encode()).hexdigest())
    return _FINGERPRINT[0]


def _names(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _source(fn) -> str:
    import linecache

    code = fn.__code__
    lines = linecache.getlines(code.co_filename)
    return "".join(lines)  # the whole file: comments quoted in generated code are seen


def read(entry_key: str) -> dict | None:
    path = directory() / f"{entry_key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def code_path(entry_key: str) -> Path:
    """Where the compiled code of an entry goes (bytecode is per Python version)."""
    return directory() / f"{entry_key}.{sys.implementation.cache_tag}.code"


def source_directory() -> Path:
    """Where generated source files go, so that tracebacks can show their lines."""
    return directory() / "source"


def filename(entry_key: str, name: str) -> str:
    """The file name compiled code of an entry carries (the same in every process): the
    generated source file, which `adcompiler.load` (re)writes when it loads the code."""
    return str(source_directory() / f"{name}-{entry_key[:16]}.py")


def read_code(entry_key: str):
    try:
        return marshal.loads(code_path(entry_key).read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return None


def write_code(entry_key: str, source: str, name: str) -> None:
    """Save the compiled code too, so that a fresh process skips `compile()`."""
    code = compile(source, filename(entry_key, name), "exec")
    _write_bytes(code_path(entry_key), marshal.dumps(code))


def write(entry_key: str, record: dict) -> None:
    _write_bytes(directory() / f"{entry_key}.json", json.dumps(record).encode())


def _write_bytes(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: a temporary file, fsync, rename."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError:  # a read-only home, a full disk: the cache is an optimisation only
        pass
