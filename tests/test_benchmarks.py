"""The benchmark harness: hand-written gradients are right, and one command runs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import methods, profile_lines, report, workloads

ROOT = Path(__file__).resolve().parent.parent


def directional_fd(workload, inputs, name, direction, step=1e-6):
    """Central finite difference of the primal along ``direction`` in argument ``name``."""

    def at(scale):
        moved = dict(inputs)
        moved[name] = inputs[name] + scale * direction
        if np.ndim(inputs[name]) == 0:
            moved[name] = float(moved[name])
        return workload.primal(**moved)

    return (at(step) - at(-step)) / (2 * step)


@pytest.mark.parametrize("name", list(workloads.WORKLOADS))
def test_hand_written_gradient_matches_finite_differences(name):
    workload = workloads.get(name)
    inputs = workload.make_inputs("small", seed=3)
    value, grads = workload.value_and_grad(**inputs)
    assert value == pytest.approx(workload.primal(**inputs), rel=1e-12)
    assert len(grads) == len(workload.WRT)
    rng = np.random.default_rng(0)
    for wrt, grad in zip(workload.WRT, grads, strict=True):
        assert np.shape(grad) == np.shape(inputs[wrt])
        for _ in range(2):
            direction = rng.standard_normal(np.shape(inputs[wrt]))
            expected = directional_fd(workload, inputs, wrt, direction)
            assert np.sum(grad * direction) == pytest.approx(expected, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("name", list(workloads.WORKLOADS))
def test_inputs_are_seeded_and_sized(name):
    workload = workloads.get(name)
    first, again = workload.make_inputs("large", seed=1), workload.make_inputs("large", seed=1)
    assert list(first) == list(methods.argument_names(workload))
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert set(workload.SIZES) == set(workloads.SIZE_NAMES)


def test_compare_flags_a_wrong_gradient():
    reference = (1.0, (np.array([1.0, 2.0]),))
    assert methods.compare((1.0, (np.array([1.0, 2.0]),)), reference) == 0.0
    assert methods.compare((1.0, (np.array([1.0, 2.5]),)), reference) == pytest.approx(0.25)
    assert methods.compare((1.0, (np.array([1.0]),)), reference) == float("inf")
    assert methods.compare((2.0, (np.array([1.0, 2.0]),)), reference, ("w",)) == (1.0, "value")
    worst = methods.compare((1.0, (np.array([1.0, 3.0]),)), reference, ("w",))
    assert worst == (0.5, "gradient for w")


def test_report_lists_failures_as_notes_not_numbers():
    stats = {"median_s": 1e-3, "iqr_s": 1e-4}
    timing = {"wall": stats, "cpu": stats}
    records = [
        {"workload": "mlp", "size": "small", "method": "hand", "status": "ok", "timing": timing},
        {"workload": "mlp", "size": "small", "method": "adcompiler", "status": "unsupported: X"},
    ]
    text = report.full_report(records)
    assert "unsupported [" in text
    assert "unsupported: X" in text
    assert "| adcompiler within 1.1x of hand-written | not measured |" in text


def test_quick_run_of_one_workload(tmp_path):
    out = tmp_path / "results.json"
    command = [
        sys.executable, "-m", "benchmarks.run", "--quick", "--workloads", "logistic",
        "--sizes", "small", "--methods", "primal,hand,adcompiler", "--out", str(out),
        "--no-plot", "--keep-openblas-coretype",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Ratio to hand-written" in done.stdout
    records = {(r["method"], r["mode"]): r for r in json.loads(out.read_text())["records"]}
    assert records["primal", "time"]["status"] == "ok"
    assert records["hand", "time"]["status"] == "ok"
    assert records["hand", "time"]["timing"]["cpu"]["median_s"] > 0
    assert records["hand", "time"]["threads"]
    for key in (("adcompiler", "time"), ("adcompiler", "compile")):
        assert not records[key]["status"].startswith("crashed"), records[key]["status"]


def test_line_profiler_times_each_statement_and_keeps_results():
    source = """
def f(a, b):
    \"\"\"Doc.\"\"\"
    c = a * b
    for _ in range(2):
        c = c + 1.0
    return c, (a, b)
"""
    profiled, statements, totals = profile_lines.instrument(source, {}, "f")
    assert profiled(2.0, 3.0) == (8.0, (2.0, 3.0))
    assert statements == ["c = a * b", "for _ in range(2):", "  c = c + 1.0", "return (c, (a, b))"]
    assert all(total > 0 for total in totals)


def _makes_arrays(a, b):
    c = a * b  # one
    c += 1.0  # in place: none
    np.tanh(c, out=c)  # into c: none
    d = c[:, :2]  # a view: none
    e = d.T @ np.exp(b)  # two: exp, the product
    np.multiply(e, 2.0, out=e)  # none
    return e.sum(axis=0)  # one


def test_temporaries_counts_every_new_array_and_no_view():
    from benchmarks.temporaries import count

    a, b = np.ones((4, 3)), np.ones((4, 3))
    recorder = count(_makes_arrays, [a, b])
    assert recorder.count == 4, recorder.sites
    assert recorder.nbytes == (12 + 12 + 6 + 3) * 8  # a * b, exp(b), (2, 3), (3,)
    assert recorder.sites["e = d.T @ np.exp(b)  # two: exp, the product"] == 2


def _fancy(a, idx):
    return a[:, idx]  # advanced indexing: a new array (NumPy may return a view of it)


def test_temporaries_counts_a_fancy_index_but_not_a_slice():
    from benchmarks.temporaries import count

    a = np.ones((3, 4))
    assert count(_fancy, [a, np.array([0, 2])]).count == 1
    assert count(_fancy, [a, slice(1, 3)]).count == 0


def test_temporaries_command_prints_the_table():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.temporaries", "--workload", "logistic",
         "--size", "small"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent,
    ).stdout  # fmt: skip
    assert "| logistic | 64x10 |" in out, out
