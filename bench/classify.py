"""Classify throughput: files per second of `ser-stream classify` on RAVDESS clips, start-up included.

Serial (``--jobs 1``) against the default (all cores); each figure is the median of several
runs, and both must print the same lines.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

from bench.common import CLI, DEFAULT_DATA, clips, line, median, section


def timed(args: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the command and its workers, its output)."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([CLI, "classify", *args], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    return wall, cpu, result.stdout


def run(data: Path = DEFAULT_DATA, count: int = 200, runs: int = 3) -> None:
    files = [str(path) for path in clips(data, count)]
    variants = {"--jobs 1": ["--jobs", "1"], "default (all cores)": []}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, str] = {}
    load = os.getloadavg()[0]
    for _ in range(runs):
        for name, flags in variants.items():
            elapsed, used, outputs[name] = timed([*flags, *files])
            seconds[name].append(elapsed)
            cpu[name].append(used)
    section(f"classify: `ser-stream classify` on {count} files, {os.cpu_count()} cores (load {load:.1f}), x{runs}")
    for name, values in seconds.items():
        line(
            name,
            f"{count / median(values):.1f} files/s  ({median(values):.2f} s per run, "
            f"{median(cpu[name]):.2f} s CPU: {median(cpu[name]) / median(values):.1f} cores busy; medians)",
        )
    serial, parallel = median(seconds["--jobs 1"]), median(seconds["default (all cores)"])
    line("speed-up of the default", f"{serial / parallel:.2f}x")
    line("same output lines", "yes" if len(set(outputs.values())) == 1 else "NO")


if __name__ == "__main__":
    run()
