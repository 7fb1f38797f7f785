"""Timing a generated gradient against a hand-written one, in one process.

Shared by benchmarks/mlp_vs_hand.py and benchmarks/rnn_vs_hand.py: medians of
interleaved rounds on the same inputs, after checking both give the same numbers.
"""

import time

import numpy as np


def median_time(fn, args, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def compare(generated, by_hand, args, repeat: int, rounds: int = 5) -> tuple[float, float]:
    """(generated, hand-written) median seconds per call; the results must agree."""
    v1, g1 = generated(*args)
    v2, g2 = by_hand(*args)
    assert np.isclose(v1, v2) and all(np.allclose(a, b) for a, b in zip(g1, g2))
    measured = [
        (
            median_time(generated, args, repeat // rounds),
            median_time(by_hand, args, repeat // rounds),
        )
        for _ in range(rounds)
    ]
    return (
        float(np.median([m[0] for m in measured])),
        float(np.median([m[1] for m in measured])),
    )
