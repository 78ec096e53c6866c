"""Classify throughput: files per second of `ser-stream classify` on RAVDESS clips, start-up included.

Serial (``--jobs 1``) against the default (all cores); each figure is the median of several
runs, and both must print the same lines.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from bench.common import CLI, DEFAULT_DATA, clips, line, median, section


def timed(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([CLI, "classify", *args], capture_output=True, text=True, check=True)
    return time.perf_counter() - started, result.stdout


def run(data: Path = DEFAULT_DATA, count: int = 200, runs: int = 3) -> None:
    files = [str(path) for path in clips(data, count)]
    variants = {"--jobs 1": ["--jobs", "1"], "default (all cores)": []}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, str] = {}
    for _ in range(runs):
        for name, flags in variants.items():
            elapsed, outputs[name] = timed([*flags, *files])
            seconds[name].append(elapsed)
    section(f"classify: `ser-stream classify` on {count} files, {os.cpu_count()} cores, x{runs}")
    for name, values in seconds.items():
        line(name, f"{count / median(values):.1f} files/s  ({median(values):.2f} s per run, median)")
    serial, parallel = median(seconds["--jobs 1"]), median(seconds["default (all cores)"])
    line("speed-up of the default", f"{serial / parallel:.2f}x")
    line("same output lines", "yes" if len(set(outputs.values())) == 1 else "NO")


if __name__ == "__main__":
    run()
