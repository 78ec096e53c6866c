"""Soak: a long stream of RAVDESS speech through `ser-stream run --no-realtime` with a subscriber
that keeps up, sampling the daemon's RSS as it goes.

    .venv/bin/python -m tests.soak --minutes 60 --plot soak-rss.png

prints the figures and draws RSS against time (the hour streams in seconds: RSS is sampled
every 50 ms). test_faults runs a short version.  ``--realtime`` paces the stream like a
microphone instead, so the run lasts as long as its audio: growth with wall time (heartbeats,
timers, the watchdog path) shows there, not in the fast run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from testkit.live import RATE, Subscriber, cli_executable, default_ravdess, free_endpoint, wait_until

#: RSS samples taken before the daemon is ready (imports, model) or in the first share of the
#: streaming are warm-up (first allocations).
WARM_UP_SHARE = 0.2


@dataclass
class SoakResult:
    realtime: bool
    audio_s: float
    clips: int
    wall_s: float
    ready_s: float  # when the daemon said it started streaming
    rss_mb: list[tuple[float, float]]  # (seconds since start, RSS in MB)
    utterances: int
    emotion_events: int
    queue_drops: int
    drops: int
    seq_gapless: bool
    returncode: int
    stderr: str

    @property
    def warm_up_s(self) -> float:
        return self.ready_s + WARM_UP_SHARE * (self.wall_s - self.ready_s)

    @property
    def growth_after_warm_up_mb(self) -> float:
        settled = [rss for t, rss in self.rss_mb if t >= self.warm_up_s]
        return max(settled) - settled[0] if settled else float("nan")

    def summary(self) -> str:
        return (
            f"{self.audio_s / 60:.1f} min of audio ({self.clips} clips) in {self.wall_s:.1f} s "
            f"({self.audio_s / self.wall_s:.0f}x real time); {self.utterances} utterances, "
            f"{self.emotion_events} emotion events, queue drops {self.queue_drops}, send drops {self.drops}, "
            f"seq gapless {self.seq_gapless}; RSS {self.rss_mb[0][1]:.0f} → {self.rss_mb[-1][1]:.0f} MB, "
            f"peak {max(r for _, r in self.rss_mb):.0f} MB, growth after warm-up {self.growth_after_warm_up_mb:.1f} MB "
            f"({len(self.rss_mb)} samples)"
        )


def build_long_stream(ravdess: Path, path: Path, minutes: float, seed: int = 0) -> tuple[float, int]:
    """Speech clips of every actor, in a shuffled cycle, with 1-3 s of silence between; written as it goes."""
    clips = sorted(ravdess.glob("Actor_*/*.flac"))
    rng = np.random.default_rng(seed)
    target, written, count = int(minutes * 60 * RATE), 0, 0
    with soundfile.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as out:
        while written < target:
            for index in rng.permutation(len(clips)):
                samples, _ = soundfile.read(clips[index], dtype="float32")
                gap = np.zeros(int(rng.uniform(1.0, 3.0) * RATE), np.float32)
                out.write(np.concatenate((gap, samples)))
                written += gap.size + samples.size
                count += 1
                if written >= target:
                    break
    return written / RATE, count


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return None


def soak(
    ravdess: Path, minutes: float, workdir: Path, sample_every_s: float = 0.5, realtime: bool = False
) -> SoakResult:
    stream = workdir / "soak.wav"
    audio_s, clips = build_long_stream(ravdess, stream, minutes)
    endpoint = free_endpoint()
    subscriber = Subscriber(endpoint)
    started = time.monotonic()
    pace = "--realtime" if realtime else "--no-realtime"
    command = [cli_executable(), "run", "--source", str(stream), pace, "--publish", endpoint]
    daemon = subprocess.Popen(
        [*command, "--wait-subscriber", "10", "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    rss, ready_s = [], None
    try:
        while daemon.poll() is None:
            if (sample := _rss_mb(daemon.pid)) is not None:
                rss.append((time.monotonic() - started, sample))
            if ready_s is None and subscriber.of("status"):
                ready_s = time.monotonic() - started
            time.sleep(sample_every_s)  # the sampling period of the RSS curve
        _, stderr = daemon.communicate()
        wall_s = time.monotonic() - started
        if daemon.returncode == 0:  # it said "stopping" last
            wait_until(subscriber.stopped, 10, "the daemon's last status")
    finally:
        if daemon.poll() is None:
            daemon.kill()
        subscriber.close()
    final = subscriber.of("status")[-1]["counters"] if subscriber.of("status") else {}
    seqs = [event["seq"] for _, event in subscriber.messages]
    return SoakResult(
        realtime=realtime,
        audio_s=audio_s,
        clips=clips,
        wall_s=wall_s,
        ready_s=wall_s if ready_s is None else ready_s,
        rss_mb=rss,
        utterances=final.get("utterances", -1),
        emotion_events=len(subscriber.of("emotion")),
        queue_drops=final.get("queue_drops", -1),
        drops=final.get("drops", -1),
        seq_gapless=seqs == list(range(1, len(seqs) + 1)),
        returncode=daemon.returncode,
        stderr=stderr,
    )


def plot(result: SoakResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, values = zip(*result.rss_mb, strict=True)
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.plot(times, values, marker=".")
    axes.axvline(result.ready_s, color="grey", linestyle="--", label="ready: streaming starts")
    axes.axvline(result.warm_up_s, color="grey", linestyle=":", label="end of warm-up")
    speed = result.audio_s / (result.wall_s - result.ready_s)
    axes.set_xlabel(f"seconds since start (the audio streams at {speed:.{0 if speed > 2 else 2}f}x real time)")
    axes.set_ylabel("RSS (MB)")
    axes.set_ylim(bottom=0)
    minutes = result.audio_s / 60
    pace = "--realtime" if result.realtime else "--no-realtime"
    axes.set_title(f"ser-stream run {pace}: {minutes:.0f} min of speech, {result.utterances} utterances")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="audio to stream (default: 60)")
    parser.add_argument("--plot", type=Path, help="draw RSS against time into this PNG")
    parser.add_argument("--every", type=float, help="RSS sampling period in seconds (default: 0.05, realtime 5)")
    parser.add_argument("--realtime", action="store_true", help="pace the stream like a microphone")
    parser.add_argument(
        "--data",
        type=Path,
        default=default_ravdess(),
        help="RAVDESS folder (default: $SER_STREAM_RAVDESS or ../shared/data/ravdess16k)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ser-stream-soak-") as workdir:
        every = args.every or (5.0 if args.realtime else 0.05)
        result = soak(args.data, args.minutes, Path(workdir), sample_every_s=every, realtime=args.realtime)
    print(result.summary())
    if args.plot:
        plot(result, args.plot)
        print(f"RSS plot: {args.plot}")
    ok = (
        result.returncode == 0
        and result.emotion_events == result.utterances
        and result.queue_drops == result.drops == 0
        and result.seq_gapless
        and result.growth_after_warm_up_mb < 10
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
