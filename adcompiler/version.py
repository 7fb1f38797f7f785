"""The version of adcompiler: one place, read by packaging (pyproject.toml), the disk cache
key and the header of emitted files, without importing the package's API."""

__version__ = "0.1.0"
