"""Test-wide settings: the disk cache of generated code lives in a temporary folder, and
every specialized version is checked against the generic one on its first calls
(adcompiler/specialize/check.py)."""

import os
import tempfile

os.environ.setdefault("ADCOMPILER_CACHE_DIR", tempfile.mkdtemp(prefix="adcompiler-cache-"))
os.environ.setdefault("ADCOMPILER_CHECK", "1")
