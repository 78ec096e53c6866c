"""Run the benchmarks: ``.venv/bin/python -m bench [BENCH ...]`` (default: all of BENCHES, below).

From the checkout, after ``scripts/setup --dev``; RAVDESS clips from ``--data`` or
``$SER_STREAM_RAVDESS`` (default ../shared/data/ravdess16k). Takes about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from bench import adapter, classify, device, features, interim, model, pipeline, segmentation
from bench.common import DEFAULT_DATA

BENCHES = ("features", "adapter", "pipeline", "classify", "device", "model", "segmentation", "interim")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("benches", nargs="*", metavar="BENCH", help=f"any of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="RAVDESS clips (default: %(default)s)")
    parser.add_argument("--idle-s", type=float, default=60.0, help="silence for the idle figure (default: 60)")
    args = parser.parse_args()
    unknown = sorted(set(args.benches) - set(BENCHES))
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)}")
    print(
        f"ser-stream bench: {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start",
        flush=True,
    )
    started = time.monotonic()
    runners = {
        "features": lambda: features.run(args.data),
        "adapter": lambda: adapter.run(args.data),
        "pipeline": lambda: pipeline.run(args.data),
        "classify": lambda: classify.run(args.data),
        "device": lambda: device.run(args.idle_s),
        "model": lambda: model.run(args.data),
        "segmentation": lambda: segmentation.run(args.data),
        "interim": lambda: interim.run(args.data, args.idle_s),
    }
    for name in BENCHES:
        if name in (args.benches or BENCHES):
            runners[name]()
    print(f"\nbench: done in {time.monotonic() - started:.0f} s, load average {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
