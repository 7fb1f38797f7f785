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


# -- what the generated code depends on is checked; the cache is not a way in --------

MODULE = """
import os
import numpy as np

CFG = {"k": float(os.environ["CFG_K"])}
F32 = np.float32(os.environ["F32"])


def make_scaled(c):
    def scaled(x):
        return np.sum(np.sin(x) * c) * CFG["k"] + np.sum(x * F32)

    return scaled
"""

USER = """
import json, os, sys
import numpy as np
sys.path.insert(0, {root!r})
sys.path.insert(0, {folder!r})
import adcompiler as ad
import semantics_model as m
f = m.make_scaled(float(os.environ["C"]))
g = ad.grad(f)
x = np.array([0.5, -1.0, 2.0])
print(json.dumps({{"from_disk": not hasattr(g, "__adcompiler_ir__"), "grad": g(x).tolist(),
                  "marker": os.path.exists(os.path.join({folder!r}, "pwned"))}}))
"""


def run_user(tmp_path, cache: Path, c: float, k: float, f32: str) -> dict:
    (tmp_path / "semantics_model.py").write_text(MODULE)
    script = USER.format(root=str(ROOT), folder=str(tmp_path))
    env = {**os.environ, "ADCOMPILER_CACHE_DIR": str(cache), "C": str(c), "CFG_K": str(k),
           "F32": f32}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return {**json.loads(out.stdout), "stderr": out.stderr}


def expected_grad(c, k, f32):
    import numpy as np

    x = np.array([0.5, -1.0, 2.0])
    return (c * k * np.cos(x) + np.float32(f32)).tolist()


def test_closure_cells_and_globals_are_part_of_what_is_cached(tmp_path):
    cache = tmp_path / "cache"
    runs = [(2.0, 3.0, "1.5"), (2.0, 3.0, "1.5"), (5.0, 3.0, "1.5"), (5.0, -1.0, "1.5"),
            (5.0, -1.0, "0.25"), (5.0, -1.0, "0.25")]  # fmt: skip
    results = [run_user(tmp_path, cache, *run) for run in runs]
    for run, got in zip(runs, results):
        assert got["grad"] == expected_grad(*run), (run, got)
    assert results[1]["from_disk"] and results[5]["from_disk"]  # unchanged: from disk
    assert not any(r["from_disk"] for r in results[2:5])  # a cell, a dict entry, a float32


def test_a_planted_entry_is_compiled_again_never_run(tmp_path):
    import marshal

    cache = tmp_path / "cache"
    run_user(tmp_path, cache, 2.0, 3.0, "1.5")
    (entry,) = cache.glob("*.json")
    (code,) = cache.glob("*.code")
    stored = json.loads(entry.read_text())
    evil = (
        "def scaled_grad(x):\n"
        f"    open({str(tmp_path / 'pwned')!r}, 'w').close()\n"
        "    return x\n"
    )
    body = {**stored["body"], "source": evil}
    import hashlib

    planted_code = marshal.dumps(compile(evil, "<planted>", "exec"))
    body["code"] = hashlib.sha256(planted_code).hexdigest()  # consistent, but not signed
    entry.write_text(json.dumps({"body": body, "tag": stored["tag"]}))
    code.write_bytes(planted_code)
    again = run_user(tmp_path, cache, 2.0, 3.0, "1.5")
    assert not again["from_disk"] and not again["marker"]
    assert again["grad"] == expected_grad(2.0, 3.0, "1.5")
    # the code file alone replaced (the entry untouched): the source is compiled instead
    code.write_bytes(planted_code)
    once_more = run_user(tmp_path, cache, 2.0, 3.0, "1.5")
    assert not once_more["marker"] and once_more["grad"] == expected_grad(2.0, 3.0, "1.5")


def test_an_entry_copied_under_another_key_is_not_used(tmp_path):
    cache = tmp_path / "cache"
    run_user(tmp_path, cache, 2.0, 3.0, "1.5")
    (entry,) = cache.glob("*.json")
    (code,) = cache.glob("*.code")
    key = entry.name[: -len(".json")]
    other = "0" * len(key)
    (cache / f"{other}.json").write_text(entry.read_text())
    (cache / code.name.replace(key, other)).write_bytes(code.read_bytes())
    from adcompiler import diskcache

    os.environ["ADCOMPILER_CACHE_DIR"], saved = str(cache), os.environ["ADCOMPILER_CACHE_DIR"]
    try:
        assert diskcache.read(key) is not None and diskcache.read(other) is None
    finally:
        os.environ["ADCOMPILER_CACHE_DIR"] = saved


def test_the_folder_is_made_private(tmp_path, monkeypatch):
    from adcompiler import diskcache

    folder = tmp_path / "deep" / "cache"
    monkeypatch.setenv("ADCOMPILER_CACHE_DIR", str(folder))
    old = os.umask(0)  # even with an open umask
    try:
        diskcache.write("k" * 64, {"name": "f", "source": "def f():\n    return 1\n"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert diskcache.read("k" * 64)["source"].startswith("def f")


def test_a_folder_others_can_write_is_refused(tmp_path, monkeypatch):
    import pytest

    import adcompiler as ad
    from adcompiler import diskcache
    from tests import corpus_models as m

    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)
    monkeypatch.setenv("ADCOMPILER_CACHE_DIR", str(folder))
    with pytest.warns(diskcache.UnsafeCacheWarning, match="others can write"):
        ad.api._build(m.with_default, "grad", None)
    assert list(folder.iterdir()) == []  # nothing written, nothing read


def test_a_folder_of_another_user_is_refused(tmp_path, monkeypatch):
    import pytest

    from adcompiler import diskcache

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root (CI runs as root)")
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 54321, 54321)
    monkeypatch.setenv("ADCOMPILER_CACHE_DIR", str(folder))
    with pytest.warns(diskcache.UnsafeCacheWarning, match="owned by uid 54321"):
        assert diskcache.checked_directory(create=True) is None


def test_a_file_of_another_user_in_the_folder_is_not_read(tmp_path, monkeypatch):
    import pytest

    from adcompiler import diskcache

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root (CI runs as root)")
    folder = tmp_path / "cache"
    monkeypatch.setenv("ADCOMPILER_CACHE_DIR", str(folder))
    diskcache.write("a" * 64, {"name": "f", "source": "def f():\n    return 1\n"})
    assert diskcache.read("a" * 64) is not None
    os.chown(folder / f"{'a' * 64}.json", 54321, 54321)
    assert diskcache.read("a" * 64) is None
