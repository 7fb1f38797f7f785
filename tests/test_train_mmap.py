"""Train on a memory-mapped, sharded data set under an address-space limit that loading
the data set into memory would exceed."""

import subprocess
import sys

import numpy as np

try:
    from test_train_helpers import ROOT, subprocess_env
except ImportError:  # collected as part of a package
    from tests.test_train_helpers import ROOT, subprocess_env

ROWS, FEATURES, SHARD_ROWS = 196_608, 80, 16_384  # x: 120 MiB in 12 shards of 10 MiB
HEADROOM = 64 * 2**20  # the limit: the process's size before training plus 64 MiB

CHILD = """
import resource, sys
import numpy as np
import tqdm.auto  # noqa: F401  (imported before the limit, as fit would import it)
from adcompiler.train import SGD, ShardedDataset, fit
from adcompiler.train.losses import mean_squared_error

def loss(w, b, x, y):
    return mean_squared_error(x @ w + b, y)

def value_and_grad(w, b, x, y):
    residual = x @ w + b - y
    n = residual.size
    return np.mean(residual * residual), (2.0 * x.T @ residual / n, 2.0 * residual.sum() / n)

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

folder, headroom = sys.argv[1], int(sys.argv[2])
data = ShardedDataset(folder, fields=("x", "y"), max_open=2)
params = {"w": np.zeros(data.take(np.arange(1))[0].shape[1]), "b": np.zeros(())}
np.ones((300, 300)) @ np.ones((300, 300))  # OpenBLAS allocates its work buffer on first use
limit = status("VmSize") + headroom
rss_before = status("VmRSS")
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
result = fit(loss, params, data, epochs=1, batch_size=1024, optimizer=SGD(0.05),
             grad_fn=value_and_grad, quiet=True)
print("steps", result.steps)
print("loss", result.history["loss"][-1])
print("w", " ".join(repr(float(v)) for v in result.params["w"][:3]))
print("rss_growth", status("VmHWM") - rss_before)  # peak resident memory while training
try:
    whole = [np.load(f"{folder}/x.{i:05d}.npy") for i in range(len(data._files[0]))]
    print("full load: fits")
except MemoryError:
    print("full load: MemoryError")
whole = None
"""


def test_sharded_data_larger_than_the_memory_limit_trains(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data"
    folder.mkdir()
    true_w = np.linspace(-1.0, 1.0, FEATURES)
    for shard in range(ROWS // SHARD_ROWS):
        x = rng.standard_normal((SHARD_ROWS, FEATURES))
        np.save(folder / f"x.{shard:05d}.npy", x)
        np.save(folder / f"y.{shard:05d}.npy", x @ true_w + 0.25)
    data_bytes = ROWS * FEATURES * 8
    assert data_bytes > 1.8 * HEADROOM
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    completed = subprocess.run(
        [sys.executable, str(script), str(folder), str(HEADROOM)],
        env=subprocess_env(), cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    lines = dict(line.split(" ", 1) for line in completed.stdout.splitlines())
    assert lines["full"] == "load: MemoryError", "the limit must be too small for a full load"
    assert int(lines["steps"]) == ROWS // 1024
    assert float(lines["loss"]) < 1.0  # it learned (the variance of y is about 27)
    assert np.allclose([float(v) for v in lines["w"].split()], true_w[:3], atol=1e-3)
    assert int(lines["rss_growth"]) < HEADROOM < data_bytes / 1.8
