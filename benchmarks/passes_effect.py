"""The effect of the optimisation passes on generated gradients, against hand-written ones.

    python benchmarks/passes_effect.py

Runs benchmarks/mlp_vs_hand.py and benchmarks/rnn_vs_hand.py in fresh processes with
the passes off (ADCOMPILER_OPTIMIZE=0: no CSE, no simplification, adjoints summed
into new arrays, no specialization), with the passes on but no specialization on
argument shapes (ADCOMPILER_SPECIALIZE=0), and with everything on, and prints the
ratios side by side.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = [
    ("mlp_vs_hand.py", ["--batch", "32"]),
    ("mlp_vs_hand.py", ["--batch", "512", "--repeat", "300"]),
    ("rnn_vs_hand.py", []),
]


SETTINGS = [  # column title, ADCOMPILER_OPTIMIZE, ADCOMPILER_SPECIALIZE
    ("passes off", "0", "0"),
    ("passes on", "1", "0"),
    ("+ specialized", "1", "1"),
]


def ratio(script: str, args: list[str], optimize: str, specialize: str) -> str:
    env = {**os.environ, "ADCOMPILER_OPTIMIZE": optimize, "ADCOMPILER_SPECIALIZE": specialize,
           "ADCOMPILER_DISK_CACHE": "0"}  # fmt: skip
    out = subprocess.run([sys.executable, os.path.join(HERE, script), *args], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    line = out.stdout.strip().splitlines()[-1]
    return line.split(":")[0], line.rsplit("ratio ", 1)[1]


def main():
    print(f"{'workload':<32}" + "".join(f" {title:>14}" for title, _, _ in SETTINGS))
    for script, args in RUNS:
        ratios = [ratio(script, args, optimize, spec) for _, optimize, spec in SETTINGS]
        print(f"{ratios[0][0]:<32}" + "".join(f" {r:>14}" for _, r in ratios))


if __name__ == "__main__":
    main()
