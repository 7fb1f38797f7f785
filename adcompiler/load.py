"""Source → callable: compile generated code so that tracebacks, `inspect` and `pdb` see it.

The source is registered in `linecache` under a name like
``<adcompiler: loss_grad>``, so a traceback through generated code shows the
generated line, `inspect.getsource` returns it, and `pdb` can step through it.
"""

from __future__ import annotations

import itertools
import linecache
import sys

import numpy as np

from adcompiler import runtime
from adcompiler.codegen.emit import Emitted

_counter = itertools.count(1)


def load_into(emitted: Emitted, namespace: dict) -> None:
    """Compile `emitted` into `namespace` (the shared namespace of generated helpers)."""
    filename = f"<adcompiler-{next(_counter)}: {emitted.name}>"
    lines = emitted.source.splitlines(keepends=True)
    linecache.cache[filename] = (len(emitted.source), None, lines, filename)
    namespace.update({h: runtime.HELPERS[h] for h in runtime.HELPERS})
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
    filename = filename or f"<adcompiler-{next(_counter)}: {emitted.name}>"
    lines = emitted.source.splitlines(keepends=True)
    linecache.cache[filename] = (len(emitted.source), None, lines, filename)
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
