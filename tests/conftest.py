"""Test-wide settings: the disk cache of generated code lives in a temporary folder."""

import os
import tempfile

os.environ.setdefault("ADCOMPILER_CACHE_DIR", tempfile.mkdtemp(prefix="adcompiler-cache-"))
