"""Source -> callable: compile generated code so that tracebacks, `inspect` and `pdb` see it.

Generated source is written to a file in the disk cache's folder,
``<cache>/source/<name>-<hash>.py``, and compiled with that path as its file
name, so every traceback shows the generated line: the interpreter's own
printer of uncaught exceptions reads source lines from the file on disk (it
does not consult `linecache` before Python 3.13), `traceback`, `inspect` and
`pdb` read them from `linecache`, where the source is registered too. With
the disk cache off or its folder not writable, the file name is a label like
``<adcompiler-3: loss_grad>`` registered in `linecache` only (tracebacks
printed by `traceback`, pytest, IPython and `pdb` still show the lines).
"""

from __future__ import annotations

import hashlib
import itertools
import linecache
import os
import sys
import tempfile

import numpy as np

from adcompiler import runtime
from adcompiler.codegen.emit import Emitted

_counter = itertools.count(1)


def load_into(emitted: Emitted, namespace: dict) -> None:
    """Compile `emitted` into `namespace` (the shared namespace of generated helpers)."""
    filename = register_source(emitted.source, emitted.name)
    namespace.update({h: runtime.HELPERS[h] for h in runtime.HELPERS})
    namespace.update(runtime.EXTERNAL)  # functions with custom rules (adcompiler.custom)
    namespace.update(emitted.constants)
    exec(compile(emitted.source, filename, "exec"), namespace)  # noqa: S102 - our own source


def load(
    emitted: Emitted,
    defaults: tuple | None = None,
    kwdefaults: dict | None = None,
    code=None,
    filename: str | None = None,
    extra: dict | None = None,
):
    """Compile `emitted` (or run its already compiled `code`, made with `filename`) and
    return the function it defines."""
    filename = register_source(emitted.source, emitted.name, filename)
    namespace = {"np": np, "__name__": "adcompiler.generated"}
    namespace.update({h: runtime.HELPERS[h] for h in emitted.helpers})
    for h in list(emitted.helpers):
        for dep in runtime.DEPENDS.get(h, ()):
            namespace[dep] = runtime.HELPERS[dep]
    namespace.update(runtime.EXTERNAL)  # functions with custom rules (adcompiler.custom)
    calls = sys.modules.get("adcompiler.calls")  # functions generated for recursive helpers
    if calls is not None:  # (none exist before it is imported: no import on the fast path)
        namespace.update(calls.GENERATED)
    namespace.update(emitted.constants)
    namespace.update(extra or {})
    if code is None:
        code = compile(emitted.source, filename, "exec")
    exec(code, namespace)  # noqa: S102 - our own source
    fn = namespace[emitted.name]
    fn.__defaults__ = defaults
    fn.__kwdefaults__ = kwdefaults
    return fn


def register_source(source: str, name: str, filename: str | None = None) -> str:
    """Make `source` readable under the file name it is compiled with, and return that name:
    `filename` if given (the disk cache's, fixed in its stored code), else a file in the
    cache's folder named after `name` and the source's hash, else a ``<adcompiler-N>`` label."""
    if filename is None:
        filename = source_file(source, name) or f"<adcompiler-{next(_counter)}: {name}>"
    elif not filename.startswith("<"):
        write_source_file(filename, source)
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    return filename


def source_file(source: str, name: str) -> str | None:
    """The path of a file holding `source`, written now if it is not there yet; None when
    the disk cache is off, its folder is not safe (see `diskcache.checked_directory`) or it
    cannot be written."""
    from adcompiler import diskcache

    # Only into a folder the disk cache trusts: nothing is written where others can write.
    if not diskcache.enabled() or diskcache.checked_directory(create=True) is None:
        return None
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    path = os.path.join(diskcache.source_directory(), f"{name}-{digest}.py")
    return path if write_source_file(path, source) else None


def write_source_file(path: str, source: str) -> bool:
    """Write `source` to `path` unless it already holds it (whole or not at all: a
    temporary file renamed into place); False if it cannot be written."""
    try:
        with open(path, encoding="utf-8") as file:
            if file.read() == source:
                return True
    except (OSError, UnicodeDecodeError):
        pass
    folder = os.path.dirname(path)
    try:
        for level in (os.path.dirname(folder), folder):  # the cache's folder is owner-only
            os.makedirs(level, mode=0o700, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".py")
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(source)
        os.replace(temporary, path)
    except OSError:  # a read-only home, a full disk: the linecache entry is enough
        return False
    return True
