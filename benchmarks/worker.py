"""One (workload, size, method) measurement, run by ``benchmarks.run`` in a fresh process.

    python -m benchmarks.worker --workload mlp --size small --method hand --result out.json

Mode ``time`` checks the method's value and gradient against the hand-written
ones, then times it and measures its memory. Mode ``compile`` (adcompiler only)
measures what generating the gradient costs in a process that has never done
it, which is where a disk cache would pay off.
"""

import argparse
import json
import os
import re
import sys
import time
import traceback
from pathlib import Path

TOLERANCE = 1e-6


def first_line(error):
    """``Type: message`` on one line; a summary line ending in ':' gets its first item."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if text.endswith(":") and len(lines) > 1:
        detail = lines[1].split(" error: ", 1)[-1]
        text = f"{text} {detail}"
    text = re.sub(r" at 0x[0-9a-f]+", "", text)
    return f"{type(error).__name__}: {text}".strip()


def _timing_options(quick):
    if quick:
        return {"samples": 5, "min_sample_s": 0.001, "warmup_s": 0.02, "budget_s": 1.0}
    return {"samples": 25, "min_sample_s": 0.005, "warmup_s": 0.3, "budget_s": 10.0}


def _generation_costs(workload, inputs, steady_min_s, repeats=5):
    """Asking again for the same gradient (the in-memory cache): lookup + call - a call.

    The smallest of ``repeats`` tries, against the fastest steady call, so that a
    stray slow call does not count as cache cost.
    """
    import adcompiler
    from benchmarks.methods import argument_names

    args = tuple(inputs[name] for name in argument_names(workload))
    costs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        gradient = adcompiler.value_and_grad(workload.primal, wrt=workload.WRT)
        gradient(*args)
        costs.append(time.perf_counter() - t0 - steady_min_s)
    return min(costs)


def measure_time(workload, size, method, quick):
    from benchmarks import measure, methods

    inputs = workload.make_inputs(size)
    reference = methods._numpy_result(workload.value_and_grad(**inputs))
    record = {"status": "ok"}
    try:
        prepared = methods.prepare(method, workload, inputs)
        first = prepared.setup.pop("first_result", None)
        result = prepared.to_numpy(first if first is not None else prepared.run())
    except methods.MethodUnavailable as error:
        return {"status": f"skipped: {error}"}
    except Exception as error:  # the compiler's diagnostics are data here, not crashes
        label = "unsupported" if method == "adcompiler" else "failed"
        return {"status": f"{label}: {first_line(error)}", "traceback": traceback.format_exc()}
    error, worst = methods.compare(result, reference, workload.WRT)
    record["max_rel_error"] = error
    if not error <= TOLERANCE:
        record["status"] = f"wrong: {worst} off by {error:.2e} (relative) from hand-written"
        return record
    record["setup"] = prepared.setup
    record["timing"] = measure.time_calls(prepared.run, **_timing_options(quick))
    if method == "adcompiler":
        wall = record["timing"]["wall"]
        setup = prepared.setup
        setup["generate_first_s"] = setup["build_s"] + setup["first_call_s"] - wall["median_s"]
        setup["generate_cached_s"] = _generation_costs(workload, inputs, wall["min_s"])
    record["memory"] = measure.call_memory(prepared.run)
    return record


def measure_compile(workload, size):
    """Import adcompiler and generate one gradient in this fresh process."""
    from benchmarks.methods import argument_names

    inputs = workload.make_inputs(size)
    args = tuple(inputs[name] for name in argument_names(workload))
    cache = os.environ.get("ADCOMPILER_CACHE_DIR")
    entries = sum(1 for _ in Path(cache).rglob("*") if _.is_file()) if cache else None
    t0 = time.perf_counter()
    try:
        import adcompiler
    except ImportError as error:
        return {"status": f"skipped: adcompiler not importable: {error}"}
    t1 = time.perf_counter()
    try:
        gradient = adcompiler.value_and_grad(workload.primal, wrt=workload.WRT)
        t2 = time.perf_counter()
        gradient(*args)
        t3 = time.perf_counter()
    except Exception as error:
        return {"status": f"unsupported: {first_line(error)}"}
    steady = []
    for _ in range(5):
        t = time.perf_counter()
        gradient(*args)
        steady.append(time.perf_counter() - t)
    return {
        "status": "ok",
        "import_s": t1 - t0,
        "build_s": t2 - t1,
        "first_call_s": t3 - t2,
        "steady_call_s": min(steady),
        "generate_fresh_process_s": t3 - t1 - min(steady),
        "disk_cache_files_before": entries,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True)
    parser.add_argument("--size", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--mode", choices=("time", "compile"), default="time")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--result", required=True, help="file to write the JSON record to")
    options = parser.parse_args(argv)

    from benchmarks import measure, workloads

    workload = workloads.get(options.workload)
    if options.mode == "compile":
        record = measure_compile(workload, options.size)
    else:
        record = measure_time(workload, options.size, options.method, options.quick)
    record.update(
        workload=options.workload,
        size=options.size,
        method=options.method,
        mode=options.mode,
        threads=measure.thread_report(),
        environment=measure.environment_report(),
        process_peak_bytes=measure.process_peak_bytes(),
    )
    with open(options.result, "w") as out:
        json.dump(record, out, indent=1, default=repr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
