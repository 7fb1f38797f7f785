"""A disk cache of generated source, so a fresh process skips compiling.

Key: a hash of the adcompiler version and files, the transform and its options, and
the source and bytecode of the function and of every user function it can reach
through its globals (helpers it calls, transitively). Entry: a small JSON file with
the generated source, the names it needs, and the globals and closure cells it was
generated with (adcompiler.depends: where each read is made and what it found,
checked again before the entry is used), beside the compiled code. Files are written
to a temporary file, fsync'd and renamed into place, so concurrent processes see a
whole entry or none.

Security: the cache holds code that is run, so it must not be a way in.

- The folder must be owned by this user and writable by no one else (as ssh demands
  of ~/.ssh); it is created 0700. Otherwise it is not used at all (an
  `UnsafeCacheWarning`, once): the cache only saves compile time.
- Every file read must be a regular file owned by this user, not group/other-writable.
- Each entry is bound to its key: it holds the sha256 of its code file and an HMAC of
  the key and the entry under a random secret (`secret`, 0600) made in the folder. A
  planted, replaced or swapped file does not verify and is compiled again, never run.

    ADCOMPILER_CACHE_DIR   where the entries go (default: $XDG_CACHE_HOME/adcompiler
                           or ~/.cache/adcompiler)
    ADCOMPILER_DISK_CACHE  "0" turns the disk cache off
"""

from __future__ import annotations

import hashlib
import hmac
import json
import marshal
import os
import secrets
import stat
import sys
import tempfile
import types
import warnings
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
    from adcompiler.version import __version__

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
    """The entry stored under `entry_key`, or None: missing, unreadable, or not bound to
    this key by this user's secret (a planted or replaced file is never used)."""
    folder = checked_directory()
    if folder is None:
        return None
    try:
        stored = json.loads(_read_own(folder / f"{entry_key}.json"))
        body, tag = stored["body"], stored["tag"]
        expected = _tag(folder, entry_key, _canonical(body))
        if expected is None or not hmac.compare_digest(expected, tag):
            return None
        return body
    except (OSError, ValueError, KeyError, TypeError):
        return None


def code_path(entry_key: str, folder: Path | None = None) -> Path:
    """Where the compiled code of an entry goes (bytecode is per Python version)."""
    return (folder or directory()) / f"{entry_key}.{sys.implementation.cache_tag}.code"


def source_directory() -> Path:
    """Where generated source files go, so that tracebacks can show their lines."""
    return directory() / "source"


def filename(entry_key: str, name: str) -> str:
    """The file name compiled code of an entry carries (the same in every process): the
    generated source file, which `adcompiler.load` (re)writes when it loads the code."""
    return str(source_directory() / f"{name}-{entry_key[:16]}.py")


def read_code(entry_key: str, record: dict):
    """The compiled code of an entry `read` returned, if its bytes are the ones the entry
    names (their sha256 is in the bound entry); else None (the source is compiled)."""
    folder = checked_directory()
    if folder is None or not isinstance(record.get("code"), str):
        return None
    try:
        data = _read_own(code_path(entry_key, folder))
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), record["code"]):
            return None
        return marshal.loads(data)
    except (OSError, ValueError, EOFError, TypeError):
        return None


def write(entry_key: str, record: dict) -> None:
    """Store `record` (its "source" defines the function "name") and the compiled code,
    bound to `entry_key`: the entry holds the code's sha256 and an HMAC of the key and
    the entry under a secret only this user can read."""
    folder = checked_directory(create=True)
    if folder is None:
        return
    code = marshal.dumps(compile(record["source"], filename(entry_key, record["name"]), "exec"))
    body = {**record, "code": hashlib.sha256(code).hexdigest()}
    tag = _tag(folder, entry_key, _canonical(body), create=True)
    if tag is None:
        return
    _write_bytes(code_path(entry_key, folder), code)
    _write_bytes(folder / f"{entry_key}.json", json.dumps({"body": body, "tag": tag}).encode())


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _tag(folder: Path, entry_key: str, data: bytes, create: bool = False) -> str | None:
    secret = _secret(folder, create)
    if secret is None:
        return None
    return hmac.new(secret, entry_key.encode() + b"\0" + data, hashlib.sha256).hexdigest()


_SECRETS: dict[str, bytes] = {}


def _secret(folder: Path, create: bool) -> bytes | None:
    """The key entries are bound with: random bytes in `folder/secret` (0600), made once."""
    if str(folder) in _SECRETS:
        return _SECRETS[str(folder)]
    path = folder / "secret"
    try:
        data = _read_own(path)
    except FileNotFoundError:
        if not create:
            return None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
            data = _read_own(path)
        except OSError:  # made by another process at the same time: read theirs
            try:
                data = _read_own(path)
            except OSError:
                return None
    except OSError:
        return None
    if len(data) != 32:
        return None
    _SECRETS[str(folder)] = data
    return data


def _read_own(path: Path) -> bytes:
    """The bytes of a regular file this user owns and only this user can write."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or _unsafe(info):
            raise PermissionError(f"{path} is not a private file of this user")
        return handle.read()


def _unsafe(info: os.stat_result) -> str | None:
    """Why a file or folder with this status must not be trusted, or None."""
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        return f"it is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"others can write into it (mode {stat.S_IMODE(info.st_mode):o})"
    return None


_CHECKED: dict[str, bool] = {}


class UnsafeCacheWarning(UserWarning):
    """The disk cache folder could be written by someone else: it is not used."""


def checked_directory(create: bool = False) -> Path | None:
    """The cache folder, if it is safe to load code from: a folder owned by this user
    that no one else can write into (as ssh demands of ~/.ssh). Made 0700 when missing
    (with `create`). An unsafe folder is not used at all, with one warning per process:
    the disk cache only saves compile time, so the program goes on without it."""
    folder = directory()
    known = _CHECKED.get(str(folder))
    if known is not None:
        return folder if known else None
    try:
        info = os.stat(folder)
    except FileNotFoundError:
        if not create:
            return None
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(folder, 0o700)
            info = os.stat(folder)
        except OSError:  # a read-only home: the cache is an optimisation only
            return None
    except OSError:
        return None
    reason = "it is not a folder" if not stat.S_ISDIR(info.st_mode) else _unsafe(info)
    _CHECKED[str(folder)] = reason is None
    if reason is not None:
        warnings.warn(
            f"adcompiler: not using the disk cache {folder}: {reason}; generated code is "
            f"not loaded from a folder others can write to (make it yours with mode 0700, "
            f"or set ADCOMPILER_CACHE_DIR to another folder)",
            UnsafeCacheWarning,
            stacklevel=2,
        )
        return None
    return folder


def _write_bytes(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: a temporary file (0600), fsync, rename."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError:  # a full disk: the cache is an optimisation only
        pass
