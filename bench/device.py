"""Start-up and idle cost of the daemon on a microphone: a PulseAudio virtual microphone.

- start-up: process start to ready (the "started" status, printed first by ``--print``: the
  model is loaded and the input open), against ``python -c pass`` measured in the same run; and
  the import time of each heavy module in a fresh interpreter, with which of them the daemon loads.
- idle: CPU % of one core (process user+system time / wall time) and peak RSS while the
  microphone hears digital silence.

Needs pulseaudio, pulseaudio-utils and libasound2-plugins (scripts/setup --dev installs them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import CLI, line, median, python_start_s, section, verdict
from testkit.live import REPO, free_endpoint
from testkit.pulse import VirtualMic, running_mic

TARGET_READY_S = 1.5
TARGET_IDLE_CPU = 2.0
TARGET_IDLE_RSS_MB = 150.0
#: Modules whose import is heavy enough to matter at start-up, in the order a reader expects them.
HEAVY = (
    "numpy",
    "scipy.fft",
    "scipy.signal",
    "numba",
    "librosa.core",
    "sklearn.neural_network",
    "joblib",
    "soundfile",
    "soxr",
    "sounddevice",
    "zmq",
    "webrtcvad",
)
#: What `ser-stream run` does before it opens the input, in-process: imports, bundle, warm-up.
LOADS = """
import sys, time
started = time.perf_counter()
import ser_stream.cli, ser_stream.service, ser_stream.pipeline, ser_stream.capture
from ser_stream.model import Classifier, default_model_path, load_bundle
imported = time.perf_counter()
classifier = Classifier(load_bundle(default_model_path()))
loaded = time.perf_counter()
classifier.warm_up()
warm = time.perf_counter()
heavy = [name for name in sys.argv[1:] if name in sys.modules]
print(imported - started, loaded - imported, warm - loaded, *heavy)
"""


def start_daemon(mic: VirtualMic) -> tuple[subprocess.Popen, float]:
    """A daemon on the virtual microphone and the seconds from its start to its "started" line."""
    started = time.perf_counter()
    daemon = subprocess.Popen(
        [CLI, "run", "--device", mic.device, "--publish", free_endpoint(), "--print"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=mic.env,
    )
    first = json.loads(daemon.stdout.readline())
    ready = time.perf_counter() - started
    if first.get("state") != "started":
        raise SystemExit(f"bench: the daemon's first event is not 'started': {first}")
    return daemon, ready


def stop_daemon(daemon: subprocess.Popen) -> None:
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=10)


def import_s(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return float(result.stdout)


def proc_figures(pid: int) -> tuple[float, int]:
    """(user + system CPU seconds, peak RSS bytes) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text()
    peak = next(int(row.split()[1]) for row in status.splitlines() if row.startswith("VmHWM:")) * 1024
    return cpu, peak


def startup(mic: VirtualMic, runs: int = 5) -> None:
    floor, ready = [], []
    for _ in range(runs):
        floor.append(python_start_s())
        daemon, seconds = start_daemon(mic)
        ready.append(seconds)
        stop_daemon(daemon)
    phases = [
        subprocess.run(
            [sys.executable, "-c", LOADS, *HEAVY], capture_output=True, text=True, check=True, cwd=REPO
        ).stdout.split()
        for _ in range(3)
    ]
    loaded = set(phases[0][3:])
    section(f"start-up: `ser-stream run` on the virtual microphone, x{runs}")
    line("python -c pass (reference)", f"{1000 * median(floor):.0f} ms (median)")
    line(
        "process start -> 'started' (ready)",
        f"{1000 * median(ready):.0f} ms median, {1000 * max(ready):.0f} ms max, "
        f"{median(ready) / median(floor):.1f}x the reference  "
        f"[target <= {TARGET_READY_S} s: {verdict(median(ready), TARGET_READY_S)}]",
    )
    for index, phase in enumerate(("imports", "load model bundle", "classifier warm-up")):
        line(f"  in-process: {phase}", f"{1000 * median([float(p[index]) for p in phases]):.0f} ms (median of 3)")
    section("start-up: import time of each heavy module, fresh interpreter (median of 3)")
    for module in HEAVY:
        ms = 1000 * median([import_s(module) for _ in range(3)])
        line(module, f"{ms:6.0f} ms  {'imported by run before the input opens' if module in loaded else '-'}")


def idle(mic: VirtualMic, seconds: float) -> None:
    daemon, _ = start_daemon(mic)
    try:
        time.sleep(2.0)  # past start-up work (first blocks)
        cpu_before, _ = proc_figures(daemon.pid)
        started = time.monotonic()
        time.sleep(seconds)
        cpu_after, peak = proc_figures(daemon.pid)
        wall = time.monotonic() - started
    finally:
        stop_daemon(daemon)
    cpu = 100 * (cpu_after - cpu_before) / wall
    rss = peak / 2**20
    section(f"idle: {seconds:.0f} s of silence on the virtual microphone")
    line("CPU, % of one core", f"{cpu:.2f}  [target <= {TARGET_IDLE_CPU:.0f}: {verdict(cpu, TARGET_IDLE_CPU)}]")
    line("peak RSS", f"{rss:.0f} MB  [target <= {TARGET_IDLE_RSS_MB:.0f}: {verdict(rss, TARGET_IDLE_RSS_MB)}]")
    line("exit code after SIGTERM", f"{daemon.returncode}")


def run(idle_s: float = 60.0) -> None:
    with running_mic() as mic:
        startup(mic)
        idle(mic, idle_s)


if __name__ == "__main__":
    run()
