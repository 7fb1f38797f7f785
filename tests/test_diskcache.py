"""The disk cache: a fresh process loads generated code instead of compiling it."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import time, json, sys
import numpy as np
sys.path.insert(0, {root!r})
from tests import corpus_models as m
import adcompiler as ad
from adcompiler import api
start = time.perf_counter()
g = ad.value_and_grad(m.mlp, wrt=("W1", "b1", "W2", "b2"))
seconds = time.perf_counter() - start
rng = np.random.default_rng(0)
args = [rng.normal(size=(4, 5)), rng.normal(size=5), rng.normal(size=(5, 3)),
        rng.normal(size=3), rng.normal(size=(6, 4)), np.eye(3)[[0, 1, 2, 0, 1, 2]]]
value, grads = g(*args)
print(json.dumps({{"seconds": seconds, "from_disk": not hasattr(g, "__adcompiler_ir__"),
                  "value": float(value), "grad": grads[0].ravel().tolist()}}))
"""


def run(cache: Path) -> dict:
    env = {**os.environ, "ADCOMPILER_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(ROOT))], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_fresh_process_loads_the_gradient_from_disk(tmp_path):
    cache = tmp_path / "cache"
    first = run(cache)
    second = run(cache)
    assert not first["from_disk"] and second["from_disk"]
    assert first["value"] == second["value"] and first["grad"] == second["grad"]
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    entries = list(cache.glob("*.json"))
    assert (
        len(entries) == 1
        and "def mlp_value_and_grad" in json.loads(entries[0].read_text())["body"]["source"]
    )


def test_a_corrupt_entry_is_ignored(tmp_path):
    cache = tmp_path / "cache"
    run(cache)
    for entry in cache.glob("*.json"):
        entry.write_text("{not json")
    again = run(cache)
    assert not again["from_disk"]


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    import adcompiler as ad
    from tests import corpus_models as m

    monkeypatch.setenv("ADCOMPILER_CACHE_DIR", str(tmp_path / "off"))
    monkeypatch.setenv("ADCOMPILER_DISK_CACHE", "0")
    ad.api._build(m.with_default, "grad", None)
    assert not (tmp_path / "off").exists()
