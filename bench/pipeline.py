"""Pipeline: RAVDESS clips in one file, streamed through the whole daemon (`ser-stream run`).

- ``--no-realtime`` (as fast as possible), several runs: real-time factor (the daemon's uptime at
  its final status / the stream's duration) and `latency_ms` of every emotion event.
- ``--realtime`` (paced like a microphone), once: `latency_ms` without a backlog of utterances.

`latency_ms` is the daemon's own figure: from the capture (file: the read) of the audio that
closed the utterance to the event leaving the socket.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import soundfile

from bench.common import CLI, DEFAULT_DATA, line, median, percentile, section, verdict
from testkit.live import Subscriber, build_stream, free_endpoint

TARGET_P95_MS = 10.0
#: (emotion code, actor): calm, happy, fearful, disgust × 10 actors, for the fast stream.
FAST_CLIPS = [(code, actor) for actor in range(1, 21, 2) for code in (2, 3, 6, 7)]
#: The paced stream of the earlier daemon bench (about 30 s).
PACED_CLIPS = [(2, 1), (3, 1), (7, 2), (6, 3), (7, 4), (3, 5), (6, 7)]


def stream(path: Path, realtime: bool) -> tuple[list[float], dict]:
    """(latency_ms of each emotion event, the counters of the daemon's final status) for one run."""
    endpoint = free_endpoint()
    subscriber = Subscriber(endpoint)
    pace = "--realtime" if realtime else "--no-realtime"
    try:
        subprocess.run(
            [CLI, "run", "--source", str(path), pace, "--publish", endpoint, "--wait-subscriber", "10"],
            check=True,
            capture_output=True,
            timeout=soundfile.info(path).duration + 60,
        )
        time.sleep(0.3)
    finally:
        subscriber.close()
    stopping = [event for event in subscriber.of("status") if event["state"] == "stopping"]
    return [event["latency_ms"] for event in subscriber.of("emotion")], stopping[-1]["counters"]


def run(data: Path = DEFAULT_DATA, runs: int = 3) -> None:
    with tempfile.TemporaryDirectory() as folder:
        fast, paced = Path(folder) / "fast.wav", Path(folder) / "paced.wav"
        build_stream(data, fast, FAST_CLIPS, gap_s=0.5)
        build_stream(data, paced, PACED_CLIPS, gap_s=0.5)
        fast_s, paced_s = soundfile.info(fast).duration, soundfile.info(paced).duration
        latencies, factors, utterances, dropped = [], [], 0, 0
        for _ in range(runs):
            run_latencies, counters = stream(fast, realtime=False)
            latencies += run_latencies
            factors.append(counters["uptime_s"] / fast_s)
            utterances += counters["utterances"]
            dropped += counters["queue_drops"]
        paced_latencies, _ = stream(paced, realtime=True)
    section(f"pipeline: {len(FAST_CLIPS)} clips in a {fast_s:.1f} s file, `ser-stream run --no-realtime` x{runs}")
    line("real-time factor (median)", f"{median(factors):.4f}  ({1 / median(factors):.0f}x faster than real time)")
    line(
        "events per run",
        f"{len(latencies) / runs:.0f} of {utterances / runs:.0f} utterances ({dropped / runs:.0f} dropped: queue full)",
    )
    p95 = percentile(latencies, 95)
    line(
        "latency_ms p50 / p95 / max",
        f"{percentile(latencies, 50):.1f} / {p95:.1f} / {max(latencies):.1f}  "
        f"[target p95 <= {TARGET_P95_MS:.0f}: {verdict(p95, TARGET_P95_MS)}]",
    )
    section(f"pipeline: {len(PACED_CLIPS)} clips in a {paced_s:.1f} s file, `ser-stream run --realtime`")
    line("events", f"{len(paced_latencies)}")
    line(
        "latency_ms p50 / p95 / max",
        f"{percentile(paced_latencies, 50):.1f} / {percentile(paced_latencies, 95):.1f} / {max(paced_latencies):.1f}",
    )


if __name__ == "__main__":
    run()
