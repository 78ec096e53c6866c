"""What the benchmarks share: the installed CLI, RAVDESS clips, robust statistics, one output format.

These machines are shared and noisy, so every figure is a median (or a ratio to a reference
measured in the same run), never one timing.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from testkit.live import cli_executable, default_ravdess

CLI = cli_executable()
DEFAULT_DATA = default_ravdess()


def clips(data: Path, count: int) -> list[Path]:
    """``count`` RAVDESS clips spread evenly over every actor and emotion (deterministic)."""
    every = sorted(data.glob("Actor_*/*.flac")) or sorted(data.glob("Actor_*/*.wav"))
    if len(every) < count:
        raise SystemExit(f"bench: need {count} RAVDESS clips under {data}, found {len(every)}")
    step = len(every) / count
    return [every[int(i * step)] for i in range(count)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), without importing numpy here."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def python_start_s() -> float:
    """Wall time of ``python -c pass``: the floor under every process start, measured now."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def verdict(value: float, target: float, higher_is_better: bool = False) -> str:
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "MISSED"


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def line(label: str, text: str) -> None:
    print(f"  {label:<38} {text}", flush=True)
