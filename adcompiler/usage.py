"""What both command lines (`adcompiler grad/ir` and `adcompiler train`) check about their
inputs before any work starts: the user's Python file, output paths, numeric options.

A bad input is a `UsageError`, which the command lines print as one line
(``adcompiler: error: ...``) with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import traceback
from types import ModuleType

from adcompiler.errors import UnsupportedSyntaxError


class UsageError(Exception):
    """A bad command-line input: printed as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose errors are one line (``PROG: error: ...``, status 2);
    ``--help`` still shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An `argparse` type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An `argparse` type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """An `argparse` type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def check_output_path(path: str, option: str) -> None:
    """Refuse an output path that cannot be written (a folder, a missing or read-only folder)
    now, before compiling or training, rather than after the work is done."""
    if not path:
        raise UsageError(f"{option}: empty path")
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path}: the folder {folder} does not exist")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{option} {path}: the file is not writable")
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: cannot create a file in {folder} (permission denied)")


def import_file(path: str, module_name: str, what: str = "file") -> ModuleType:
    """Import the Python file `path` as module `module_name`. A file that is not there, is not
    a ``.py`` file, has a syntax error or raises while it is imported is a `UsageError` that
    names the file and line."""
    if not path.endswith(".py"):
        raise UsageError(f"{path}: expected a Python file ending in .py")
    if not os.path.isfile(path):
        raise UsageError(f"no such {what}: {path}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so that the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except UnsupportedSyntaxError:  # the file asked adcompiler for a gradient while imported
        del sys.modules[module_name]
        raise
    except SyntaxError as error:
        del sys.modules[module_name]
        where = f"{error.filename or path}:{error.lineno or '?'}:{error.offset or '?'}"
        raise UsageError(f"{where}: syntax error in the {what}: {error.msg}") from None
    except Exception as error:  # the user's module raised while it was imported
        del sys.modules[module_name]
        frames = traceback.extract_tb(error.__traceback__)
        own = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(path)]
        frame = (own or frames or [None])[-1]
        where = f"{frame.filename}:{frame.lineno}: " if frame is not None else f"{path}: "
        message = f"{type(error).__name__}: {error}".rstrip(": ")
        raise UsageError(f"{where}importing the {what} raised {message}") from None
    return module
