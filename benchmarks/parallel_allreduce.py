"""All-reduce time against message size, on the local (shared-memory) and MPI backends.

Usage::

    python benchmarks/parallel_allreduce.py --backend local --workers 2
    mpiexec -n 2 python benchmarks/parallel_allreduce.py --backend mpi

Each size is reduced ``--repeats`` times after a warm-up; the median time
per all-reduce (as seen by rank 0, between two barriers) is printed with
the bandwidth it implies (bytes of one worker's buffer / time). For MPI,
``wait=blocking`` is ``Allreduce``, ``wait=polite`` is ``Iallreduce`` with
the backend's test-then-sleep wait (what training uses when ranks
outnumber cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SIZES = [2**k for k in range(0, 24, 2)]  # float64 values: 1 … 4 Mi (8 B … 32 MiB)


def measure(allreduce, barrier, sizes, repeats) -> list[tuple[int, float]]:
    rows = []
    for size in sizes:
        buffer = np.ones(size)
        count = max(3, min(repeats, int(2e8 / (size * 8 + 1e4))))
        for _ in range(2):
            allreduce(buffer)
        times = []
        for _ in range(count):
            barrier()
            start = time.perf_counter()
            allreduce(buffer)
            times.append(time.perf_counter() - start)
        rows.append((size, float(np.median(times))))
    return rows


def local_worker(comm, sizes, repeats):
    return measure(comm.allreduce_sum, comm.barrier, sizes, repeats)


def run_local(workers: int, sizes, repeats) -> list:
    from adcompiler.train.parallel import local

    layout = {"slots": ((2, workers, max(sizes)), "float64")}
    return local.run(workers, layout, local_worker, (sizes, repeats))[0]


def run_mpi(sizes, repeats, polite: bool):
    from mpi4py import MPI

    from adcompiler.train.parallel import mpi

    os.environ["ADCOMPILER_MPI_WAIT"] = "polite" if polite else "blocking"
    mpi.configure_waits(MPI.COMM_WORLD)
    comm = mpi.MPIComm(MPI.COMM_WORLD)
    return measure(comm.allreduce_sum, comm.barrier, sizes, repeats)


def report(label: str, rows) -> None:
    print(f"# {label}")
    print(f"{'values':>9} {'bytes':>10} {'median us':>10} {'MB/s':>9}")
    for size, seconds in rows:
        print(f"{size:9d} {size * 8:10d} {seconds * 1e6:10.1f} {size * 8 / seconds / 1e6:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("local", "mpi"), default="local")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--max-values", type=int, default=max(SIZES))
    args = parser.parse_args()
    sizes = [s for s in SIZES if s <= args.max_values]
    if args.backend == "local":
        rows = run_local(args.workers, sizes, args.repeats)
        report(f"local backend, {args.workers} workers, {os.cpu_count()} cores", rows)
        return
    from mpi4py import MPI

    for polite in (False, True):
        rows = run_mpi(sizes, args.repeats, polite)
        if MPI.COMM_WORLD.Get_rank() == 0:
            wait = "polite" if polite else "blocking"
            report(f"mpi backend, {MPI.COMM_WORLD.Get_size()} ranks, wait={wait}", rows)


if __name__ == "__main__":
    main()
