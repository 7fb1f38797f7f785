"""Run every workload with every method, each in a fresh process, and report.

    python -m benchmarks.run            # the full table (about 20-30 minutes)
    python -m benchmarks.run --quick    # a smoke run: few repetitions

Every child process gets the same fixed environment: BLAS and OpenMP threads
set to 1 (and JAX/XLA and PyTorch told to use one thread), glibc's allocator
told to keep freed memory (fixed mmap and trim thresholds, so no call pays for
pages handed back to the OS by the one before), JAX on the CPU in float64.
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which some machines here set to work
around old OpenBLAS builds, are removed together in the children only (unless
``--keep-openblas-coretype``); the kernel OpenBLAS then picks is reported.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import measure, report
from benchmarks.methods import METHODS
from benchmarks.workloads import SIZE_NAMES, WORKLOADS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}
RESULTS_BEGIN = "<!-- benchmark results: begin (written by python -m benchmarks.run) -->"
RESULTS_END = "<!-- benchmark results: end -->"


def child_environment(keep_coretype):
    env = dict(os.environ)
    for name in measure.THREAD_VARIABLES:
        env[name] = "1"
    env.update(ALLOCATOR)
    env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_ENABLE_X64"] = "1"
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    removed = {}
    if not keep_coretype:
        for name in measure.OPENBLAS_CPU_VARIABLES:
            if name in env:
                removed[name] = env.pop(name)
    return env, removed


def run_worker(env, workload, size, method, mode, quick, timeout):
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "result.json"
        command = [
            sys.executable, "-m", "benchmarks.worker",
            "--workload", workload, "--size", size, "--method", method,
            "--mode", mode, "--result", str(result),
        ] + (["--quick"] if quick else [])  # fmt: skip
        try:
            done = subprocess.run(
                command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return _failure(workload, size, method, mode, f"crashed: timed out after {timeout} s")
        if done.returncode != 0 or not result.exists():
            lines = (done.stderr or done.stdout).strip().splitlines() or [""]
            status = f"crashed: exit code {done.returncode}: {lines[-1]}"
            return _failure(workload, size, method, mode, status) | {"stderr": done.stderr[-4000:]}
        return json.loads(result.read_text())


def _failure(workload, size, method, mode, status):
    return {"workload": workload, "size": size, "method": method, "mode": mode, "status": status}


def collect(options, env):
    records = []
    for workload in options.workloads:
        for size in options.sizes:
            for method in options.methods:
                record = run_worker(env, workload, size, method, "time", options.quick,
                                    options.timeout)  # fmt: skip
                records.append(record)
                _progress(record)
            if "adcompiler" in options.methods:
                record = run_worker(env, workload, size, "adcompiler", "compile",
                                    options.quick, options.timeout)  # fmt: skip
                records.append(record)
                _progress(record)
    return records


def _progress(record):
    timing = record.get("timing", {})
    seconds = report.format_seconds(timing.get("median_s")) if timing else ""
    print(
        f"  {record['workload']:<12} {record['size']:<6} {record['method']:<11}"
        f" {record.get('mode', 'time'):<8} {record['status'][:70]} {seconds}",
        file=sys.stderr,
        flush=True,
    )


def configuration(options, env, removed):
    sample = {}
    for record in options.records:
        if record.get("threads"):
            sample = record
            break
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "quick": options.quick,
        "machine": measure.machine_report(),
        "child_environment": {
            name: env.get(name)
            for name in (*measure.THREAD_VARIABLES, *ALLOCATOR, "XLA_FLAGS", "JAX_PLATFORMS")
        },
        "removed_from_child_environment": removed,
        "numpy_threadpools_in_child": sample.get("threads"),
        "versions": _versions(),
    }


def _versions():
    from importlib import metadata

    versions = {}
    for package in ("numpy", "scipy", "autograd", "jax", "jaxlib", "torch", "adcompiler"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def render_configuration(config):
    pools = config.get("numpy_threadpools_in_child") or []
    blas = ", ".join(
        f"{p['internal_api']} {p.get('version')} kernel {p.get('architecture')}"
        f" threads={p['num_threads']}"
        for p in pools
    )
    versions = ", ".join(f"{k} {v}" for k, v in config["versions"].items() if v)
    machine = config["machine"]
    removed = ", ".join(f"{k}={v}" for k, v in config["removed_from_child_environment"].items())
    env = ", ".join(f"{k}={v}" for k, v in config["child_environment"].items())
    return "\n".join(
        [
            f"- date: {config['date']}; command: `{config['command']}`",
            f"- machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['platform']}",
            f"- Python {machine['python']}; {versions}",
            f"- BLAS in the worker processes (threadpoolctl): {blas or 'unknown'}",
            f"- worker environment: {env}",
            f"- removed from the worker environment: {removed or 'nothing (none was set)'}",
        ]
    )


def update_docs(path, text):
    document = path.read_text()
    begin, end = document.find(RESULTS_BEGIN), document.find(RESULTS_END)
    if begin < 0 or end < begin:
        print(f"{path} has no results markers; not updated", file=sys.stderr)
        return
    path.write_text(
        document[: begin + len(RESULTS_BEGIN)] + "\n\n" + text + "\n\n" + document[end:]
    )


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke run")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--sizes", default=",".join(SIZE_NAMES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", type=Path, default=DOCS / "benchmark_results.json")
    parser.add_argument("--plot", type=Path, default=DOCS / "benchmark_ratios.png")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--update-docs", type=Path, nargs="?", const=DOCS / "benchmarks.md",
                        help="rewrite the results section of docs/benchmarks.md")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per process")
    parser.add_argument("--keep-openblas-coretype", action="store_true")
    options = parser.parse_args(argv)
    for name in ("workloads", "sizes", "methods"):
        setattr(options, name, [item for item in getattr(options, name).split(",") if item])
    unknown = (
        [w for w in options.workloads if w not in WORKLOADS]
        + [s for s in options.sizes if s not in SIZE_NAMES]
        + [m for m in options.methods if m not in METHODS]
    )
    if unknown:
        parser.error(f"unknown workload, size or method: {', '.join(unknown)}")
    return options


def main(argv=None):
    options = parse(argv)
    env, removed = child_environment(options.keep_openblas_coretype)
    print(f"running {len(options.workloads) * len(options.sizes)} rows x "
          f"{len(options.methods)} methods, one process each", file=sys.stderr)  # fmt: skip
    options.records = collect(options, env)
    config = configuration(options, env, removed)
    text = render_configuration(config) + "\n\n" + report.full_report(options.records)
    print(text)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(
        json.dumps({"config": config, "records": options.records}, indent=1, default=repr)
    )
    if not options.no_plot:
        report.plot_ratios(options.records, options.plot)
        text += f"\n\n![time relative to hand-written]({options.plot.name})"
    if options.update_docs:
        update_docs(options.update_docs, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
