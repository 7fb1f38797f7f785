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
import statistics
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
CLOCK_WORDS = {
    "cpu": "CPU time of the worker process (all its threads)",
    "wall": "wall-clock time",
}


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
    """Every (workload, size, method) once per round; rounds spread out passing load."""
    records = []
    for round_number in range(options.rounds):
        for workload in options.workloads:
            for size in options.sizes:
                runs = [(method, "time") for method in options.methods]
                if "adcompiler" in options.methods:
                    runs.append(("adcompiler", "compile"))
                # adcompiler's disk cache: empty for the timing process (its first
                # generation is cold), then warm for the fresh-process measurement
                with tempfile.TemporaryDirectory(prefix="adcompiler-cache-") as cache:
                    cell_env = dict(env, ADCOMPILER_CACHE_DIR=cache)
                    for method, mode in runs:
                        record = run_worker(cell_env, workload, size, method, mode,
                                            options.quick, options.timeout)  # fmt: skip
                        record["round"] = round_number
                        records.append(record)
                        _progress(record)
    return records


def merge_rounds(records):
    """One record per (workload, size, method, mode): medians over the rounds."""
    groups = {}
    for record in records:
        key = (record["workload"], record["size"], record["method"], record.get("mode", "time"))
        groups.setdefault(key, []).append(record)
    return [_merge(group) for group in groups.values()]


def _merge(group):
    """Medians over the rounds that succeeded; failed rounds are kept as a note."""
    failed = [record for record in group if record["status"] != "ok"]
    ok = [record for record in group if record["status"] == "ok"]
    merged = dict(ok[0] if ok else failed[0])
    merged["rounds"] = len(ok) or len(group)
    if failed and ok:
        merged["failed_rounds"] = [record["status"] for record in failed]
    if not ok:
        return merged
    group = ok
    if "timing" in merged:
        merged["timing"] = {
            clock: _median_of(record["timing"][clock] for record in group)
            | {"round_medians_s": [record["timing"][clock]["median_s"] for record in group]}
            for clock in ("wall", "cpu")
        }
    if "memory" in merged:
        merged["memory"] = _median_of(record["memory"] for record in group)
    if "setup" in merged:
        merged["setup"] = _median_of(record["setup"] for record in group)
    numeric = [key for key, value in merged.items() if isinstance(value, int | float)]
    merged.update(_median_of(group, keys=[key for key in numeric if key != "round"]))
    return merged


_NOT_PER_ROUND = ("traceback", "threads", "environment")


def write_results(path, config, records, raw_records):
    """JSON with one record per line: small, and readable in a diff."""

    def lines(items):
        return ",\n".join(json.dumps(item, default=repr) for item in items)

    path.write_text(
        f'{{"config": {json.dumps(config, indent=1, default=repr)},\n'
        f'"records": [\n{lines(records)}\n],\n'
        f'"raw_records": [\n{lines(raw_records)}\n]}}\n'
    )


def _slim(records):
    """The per-round records without what the merged records already carry in full."""
    slim = []
    for record in records:
        record = {key: value for key, value in record.items() if key not in _NOT_PER_ROUND}
        if "setup" in record:
            record["setup"] = {k: v for k, v in record["setup"].items() if k != "generated_source"}
        slim.append(record)
    return slim


def _median_of(dicts, keys=None):
    """Per key, the median of the numeric values (the first value for anything else)."""
    dicts = list(dicts)
    out = {}
    for key in keys or dicts[0]:
        values = [d[key] for d in dicts if key in d]
        if not values:
            continue
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        out[key] = statistics.median(values) if numeric else values[0]
    return out


def _progress(record):
    timing = record.get("timing", {})
    seconds = ""
    if timing:
        wall, cpu = timing["wall"]["median_s"], timing["cpu"]["median_s"]
        seconds = f"wall {report.format_seconds(wall)} cpu {report.format_seconds(cpu)}"
    print(
        f"  {record['workload']:<12} {record['size']:<6} {record['method']:<11}"
        f" {record.get('mode', 'time'):<8} {record['status'][:70]} {seconds}",
        file=sys.stderr,
        flush=True,
    )


def configuration(options, env, removed):
    pools = {}
    for record in options.records:
        for pool in record.get("threads") or []:
            pools.setdefault((pool["library"], pool["num_threads"]), pool)
    torch = next(
        (r["setup"]["torch"] for r in options.records if "torch" in r.get("setup", {})), None
    )
    return {
        "adcompiler_tree": _adcompiler_tree(),
        "torch": torch,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "quick": options.quick,
        "rounds": options.rounds,
        "clock": options.clock,
        "machine": measure.machine_report(),
        "child_environment": {
            name: env.get(name)
            for name in (*measure.THREAD_VARIABLES, *ALLOCATOR, "XLA_FLAGS", "JAX_PLATFORMS")
        },
        "removed_from_child_environment": removed,
        "threadpools_in_workers": list(pools.values()),
        "versions": _versions(),
    }


def _adcompiler_tree():
    """The commit the run measured, and whether adcompiler/ had uncommitted changes."""

    def git(*args):
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", "adcompiler")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes in adcompiler/" if changed else "")


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
    pools = config.get("threadpools_in_workers") or []
    blas = "; ".join(
        f"{p['library']} ({p['internal_api']} {p.get('version') or ''}"
        + (f", kernel {p['architecture']}" if p.get("architecture") else "")
        + f"): {p['num_threads']} thread(s)"
        for p in pools
    )
    versions = ", ".join(f"{k} {v}" for k, v in config["versions"].items() if v)
    machine = config["machine"]
    removed = ", ".join(f"{k}={v}" for k, v in config["removed_from_child_environment"].items())
    env = ", ".join(f"{k}={v}" for k, v in config["child_environment"].items())
    return "\n".join(
        [
            f"- date: {config['date']}; command: `{config['command']}`",
            f"- times: {CLOCK_WORDS[config['clock']]}; median over {config['rounds']} round(s)"
            " of each process's median",
            f"- machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['platform']}",
            f"- Python {machine['python']}; {versions}",
            f"- adcompiler measured at commit {config['adcompiler_tree']}",
            f"- native thread pools in the workers (threadpoolctl): {blas or 'unknown'}",
            f"- worker environment: {env}",
            f"- PyTorch: {_torch_words(config.get('torch'))}",
            f"- removed from the worker environment: {removed or 'nothing (none was set)'}",
        ]
    )


def _torch_words(torch):
    if not torch:
        return "not run"
    return (
        f"{torch['version']}, BLAS {torch['blas']} (linked into PyTorch, invisible to"
        f" threadpoolctl), torch.get_num_threads() = {torch['threads']}"
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
    parser.add_argument("--rounds", type=int, help="passes over everything (default 3, quick 1)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="clock for the tables (both are recorded)")  # fmt: skip
    parser.add_argument("--keep-openblas-coretype", action="store_true")
    parser.add_argument(
        "--from-json", type=Path, metavar="RESULTS", help="run nothing; report from a results file"
    )
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
    if options.rounds is None:
        options.rounds = 1 if options.quick else 3
    return options


def main(argv=None):
    options = parse(argv)
    report.CLOCK = options.clock
    if options.from_json:
        saved = json.loads(options.from_json.read_text())
        config, raw = saved["config"], saved["raw_records"]
        report.CLOCK = config.get("clock", options.clock)
        options.records = merge_rounds(raw)
    else:
        env, removed = child_environment(options.keep_openblas_coretype)
        rows = len(options.workloads) * len(options.sizes)
        shape = f"{rows} rows x {len(options.methods)} methods x {options.rounds} round(s)"
        print(f"running {shape}, one process each", file=sys.stderr)
        raw = collect(options, env)
        options.records = merge_rounds(raw)
        config = configuration(options, env, removed)
    text = render_configuration(config) + "\n\n" + report.full_report(options.records)
    print(text)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(options.out, config, options.records, _slim(raw))
    if not options.no_plot:
        report.plot_ratios(options.records, options.plot)
        text += f"\n\n![time relative to hand-written]({options.plot.name})"
    if options.update_docs:
        update_docs(options.update_docs, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
