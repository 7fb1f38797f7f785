"""Timing, memory and machine facts for one benchmark process.

Times are taken over many calls: a warm-up, then ``samples`` samples of
``number`` calls each, where ``number`` is chosen so a sample lasts at least
``min_sample_s``; each sample is read on the wall clock (``perf_counter``) and on
the process's CPU clock (``process_time``, all threads). We keep the median of
the per-call times, the quartiles and the minimum of each.

Memory per call is the rise of the resident set during one call. Frameworks
allocate outside Python's allocator, so ``tracemalloc`` would miss most of
what PyTorch and XLA use; the kernel's count of resident pages sees every
allocation. To make that count see a call's temporaries, the process first
switches glibc to return memory eagerly (``mallopt``: no trim threshold, mmap
for blocks above 16 KiB), trims the heap, resets the kernel's high-water mark
(``/proc/self/clear_refs``) and then reads ``VmHWM - VmRSS`` around the call.
The timing runs before that switch, under the allocator setting the parent
process fixed in the environment.
"""

import ctypes
import gc
import os
import platform
import resource
import statistics
import time

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
ALLOCATOR_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
OPENBLAS_CPU_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MEMORY_MMAP_THRESHOLD = 16 * 1024

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def time_calls(run, *, samples=25, min_sample_s=0.005, warmup_s=0.2, budget_s=10.0):
    """Per-call seconds of ``run()``, on the wall clock and on the process's CPU clock.

    Returns ``{"wall": stats, "cpu": stats, ...}`` where stats holds the median,
    quartiles, IQR and minimum. The CPU clock counts only time when this process
    ran, so it is the steadier one on a machine shared with other work.
    """
    start = time.perf_counter()
    calls = 0
    while calls < 3 or time.perf_counter() - start < warmup_s:
        run()
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    number = max(1, int(min_sample_s / max(per_call, 1e-9)))
    samples = max(5, min(samples, int(budget_s / max(per_call * number, 1e-9))))
    wall, cpu = [], []
    for _ in range(samples):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(number):
            run()
        t1, c1 = time.perf_counter(), time.process_time()
        wall.append((t1 - t0) / number)
        cpu.append((c1 - c0) / number)
    return {
        "wall": _statistics(wall),
        "cpu": _statistics(cpu),
        "samples": samples,
        "number": number,
        "warmup_calls": calls,
    }


def _statistics(times):
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return {"median_s": median, "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1, "min_s": min(times)}


def _status_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def call_memory(run, repeats=3):
    """Peak resident-set rise, in bytes, of one ``run()`` (the largest of ``repeats``)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(_M_TRIM_THRESHOLD, 0)
    libc.mallopt(_M_MMAP_THRESHOLD, MEMORY_MMAP_THRESHOLD)
    rises = []
    resettable = True
    for _ in range(repeats):
        gc.collect()
        libc.malloc_trim(0)
        resettable = _reset_peak_rss() and resettable
        before = _status_kib("VmRSS")
        run()
        rises.append(max(0, _status_kib("VmHWM") - before) * 1024)
    return {
        "call_peak_bytes": max(rises),
        "method": "VmHWM - VmRSS around one call, glibc returning memory eagerly",
        "peak_reset": resettable,
    }


def process_peak_bytes():
    """The process's peak resident set so far (imports, inputs, compile, runs)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def thread_report():
    """What threadpoolctl sees: each native pool, its threads and (BLAS) kernel."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"library": "threadpoolctl not installed", "num_threads": None}]

    return [
        {
            key: pool.get(key)
            for key in ("user_api", "internal_api", "num_threads", "architecture", "version")
        }
        | {"library": os.path.basename(pool.get("filepath", ""))}
        for pool in threadpool_info()
    ]


def environment_report():
    """The settings the parent fixed, as this process sees them."""
    variables = THREAD_VARIABLES + ALLOCATOR_VARIABLES + OPENBLAS_CPU_VARIABLES
    return {name: os.environ.get(name) for name in variables}


def machine_report():
    """CPU model, core count, Python and NumPy versions."""
    import numpy

    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }
