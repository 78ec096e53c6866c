"""Daemon figures: latency over a stream of RAVDESS clips, and idle cost on a silent virtual microphone.

    .venv/bin/python bench/daemon.py [--data ../shared/data/ravdess16k] [--idle-s 60]

1. stream: a 30 s file of clips separated by silence through `ser-stream run --realtime`
   (paced like a microphone): event count and `latency_ms` p50/p95/max taken from the events.
2. idle: the daemon on a PulseAudio virtual microphone hearing digital silence for --idle-s
   seconds: CPU % of one core (process user+system time / wall time) and peak RSS.
Needs pulseaudio, pulseaudio-utils and libasound2-plugins (scripts/setup --dev installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.test_daemon import Subscriber, build_stream, free_endpoint  # noqa: E402

CLI = str(Path(sys.executable).parent / "ser-stream")


def stream_latency(data: Path, folder: Path) -> dict:
    clips = [(2, 1), (3, 1), (7, 2), (6, 3), (7, 4), (3, 5), (6, 7)]
    path = folder / "stream.wav"
    build_stream(data, path, clips, gap_s=0.5)
    seconds = soundfile.info(path).duration
    endpoint = free_endpoint()
    subscriber = Subscriber(endpoint)
    try:
        subprocess.run(
            [CLI, "run", "--source", str(path), "--realtime", "--publish", endpoint, "--wait-subscriber", "10"],
            check=True,
            capture_output=True,
            timeout=seconds + 60,
        )
        time.sleep(0.3)
    finally:
        subscriber.close()
    latencies = np.array([event["latency_ms"] for event in subscriber.of("emotion")])
    return {
        "stream_s": round(seconds, 1),
        "clips": len(clips),
        "events": int(latencies.size),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 1),
        "latency_ms_max": round(float(latencies.max()), 1),
    }


def proc_times(pid: int) -> tuple[float, int]:
    """(user + system CPU seconds, peak RSS bytes) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) * 1024
    return cpu, peak


def idle_cost(seconds: float) -> dict:
    from tests.pulse import RUN_DIR_PREFIX, VirtualMic

    mic = VirtualMic(Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-")))
    mic.start_server()
    try:
        daemon = subprocess.Popen(
            [CLI, "run", "--device", mic.device, "--publish", free_endpoint(), "--print"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **mic.env},
        )
        assert json.loads(daemon.stdout.readline())["state"] == "started"
        time.sleep(2.0)  # past start-up work (first blocks, imports in the worker)
        cpu_before, _ = proc_times(daemon.pid)
        started = time.monotonic()
        time.sleep(seconds)
        cpu_after, peak_rss = proc_times(daemon.pid)
        wall = time.monotonic() - started
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
    finally:
        mic.stop_server()
    return {
        "idle_s": seconds,
        "cpu_percent_of_one_core": round(100 * (cpu_after - cpu_before) / wall, 2),
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "exit_code": daemon.returncode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ravdess16k")
    parser.add_argument("--idle-s", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps({"stream": stream_latency(args.data, Path(folder))}))
    print(json.dumps({"idle": idle_cost(args.idle_s)}))


if __name__ == "__main__":
    main()
