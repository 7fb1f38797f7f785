"""The effect of the optimisation passes on generated gradients, against hand-written ones.

    python benchmarks/passes_effect.py

Runs benchmarks/mlp_vs_hand.py and benchmarks/rnn_vs_hand.py in fresh processes with
the passes off (ADCOMPILER_OPTIMIZE=0: no CSE, no simplification, adjoints summed
into new arrays) and on, and prints the ratios side by side.
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


def ratio(script: str, args: list[str], optimize: str) -> str:
    env = {**os.environ, "ADCOMPILER_OPTIMIZE": optimize, "ADCOMPILER_DISK_CACHE": "0"}
    out = subprocess.run([sys.executable, os.path.join(HERE, script), *args], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    line = out.stdout.strip().splitlines()[-1]
    return line.split(":")[0], line.rsplit("ratio ", 1)[1]


def main():
    print(f"{'workload':<32} {'passes off':>10} {'passes on':>10}")
    for script, args in RUNS:
        name, off = ratio(script, args, "0")
        _, on = ratio(script, args, "1")
        print(f"{name:<32} {off:>10} {on:>10}")


if __name__ == "__main__":
    main()
