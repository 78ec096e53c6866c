"""Speaking while it listens: speech start, interim results, the final result, and listening idle.

- In real time: monologues (four RAVDESS clips of one actor joined without pauses) with 1.5 s of
  silence between them, streamed by `ser-stream run --realtime` and played into the PulseAudio virtual
  microphone `ser-stream run` listens to, with a subscriber that notes when each message arrives.
  * segmenter decision -> `speech` start sent: the start's `latency_ms`, from the capture of the frame
    on which the segmenter opened the utterance (waiting for the rest of a coarse idle block included);
  * interim cadence: the time between two interim results of an utterance, as received, against
    interim_ms (the bulk, p5 to p95: on a busy machine a late wake-up makes the odd outlier);
  * end of speech -> final result (the file, whose stream time is wall time): its arrival against the
    wall-clock time of its `end_s` (its `timestamp`): the hangover, then the processing (`latency_ms`).
  The microphone twice: as shipped, and reading every block on its own while idle (IDLE_BLOCKS = 1,
  as before), for what the coarse idle blocks cost the start (the capture thread reads one block ahead).
- CPU per interim result, in this process: the daemon's own calls on the same stream (the main loop
  copies the open utterance, the worker converts it and classifies it with `Classifier.growing()`),
  thread CPU time, median of 5 per result; against a final result (`Classifier.classify`) measured
  alongside, and an interim result classified from scratch.
- Idle: the daemon on the virtual microphone hearing digital silence, CPU % of one core and wake-ups
  (context switches of all its threads) per second; as shipped, with IDLE_BLOCKS = 1, and PortAudio's
  reads alone (the floor under any daemon), alternated.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import soundfile
import zmq

from bench.common import DEFAULT_DATA, line, median, percentile, section, verdict
from bench.device import proc_figures
from ser_stream.audio import from_int16
from ser_stream.capture import FileSource
from ser_stream.model import Classifier, default_model_path, load_bundle, single_threaded_blas
from ser_stream.pipeline.daemon import Cadence
from ser_stream.segmenter import Segmenter, SegmenterConfig, SpeechStarted, Utterance
from testkit.live import MONOLOGUE_ACTORS, build_monologues, free_endpoint
from testkit.pulse import VirtualMic, running_mic

TARGET_START_P95_MS = 100.0
TARGET_CADENCE = 0.10  # of interim_ms
TARGET_INTERIM_CPU_MS = 3.0
TARGET_IDLE_CPU = 1.0
INTERIM_MS = 1000
ACTORS = (*MONOLOGUE_ACTORS, MONOLOGUE_ACTORS[0])
#: `ser-stream run` with ser_stream.capture.IDLE_BLOCKS set first (argv[1]): the reference reads
#: every block on its own, as the daemon did before.
RUN = (
    "import sys; import ser_stream.capture as capture; capture.IDLE_BLOCKS = int(sys.argv[1]); "
    "from ser_stream.cli import main; sys.exit(main(sys.argv[2:]))"
)
#: The floor under idle listening: PortAudio's blocking reads of the daemon's idle blocks, nothing else.
READS_ALONE = (
    "import sys, sounddevice; stream = sounddevice.InputStream(device=sys.argv[1], channels=1, samplerate=16000, "
    "dtype='int16', blocksize=480); stream.start(); print('reading', flush=True)\n"
    "while True: stream.read(960)"
)


class Collector:
    """A SUB socket on every topic, noting each message's arrival (wall clock), in a thread."""

    def __init__(self, endpoint: str) -> None:
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(endpoint)
        self.messages: list[tuple[float, str, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            if self._socket.poll(20):
                topic, payload = self._socket.recv_multipart()
                self.messages.append((time.time(), topic.decode(), json.loads(payload)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close(linger=0)
        self._context.term()


def run_command(idle_blocks: int, *args: str) -> list[str]:
    return [sys.executable, "-c", RUN, str(idle_blocks), "run", *args]


def listened(mic: VirtualMic, path: Path, idle_blocks: int) -> list[tuple[float, str, dict]]:
    """What a subscriber receives, and when, while the daemon hears ``path`` on the virtual microphone."""
    endpoint = free_endpoint()
    collector = Collector(endpoint)
    args = ("--device", mic.device, "--publish", endpoint, "--wait-subscriber", "10")
    daemon = subprocess.Popen(run_command(idle_blocks, *args), stderr=subprocess.DEVNULL, env=mic.env)
    try:
        deadline = time.monotonic() + 30
        while not any(topic == "status" for _, topic, _ in collector.messages):  # started: the input is open
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit("bench: the daemon did not start on the virtual microphone")
            time.sleep(0.05)
        mic.play(path, timeout=soundfile.info(path).duration + 30)
        time.sleep(1.0)  # the last utterance's hangover and final result
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
        collector.close()
    return collector.messages


def stream_figures(messages: list[tuple[float, str, dict]]) -> dict[str, list[float]]:
    starts = [event for _, topic, event in messages if topic == "speech" and event["state"] == "start"]
    interims: dict[int, list[float]] = {}
    for received, topic, event in messages:
        if topic == "interim":
            interims.setdefault(event["utterance"], []).append(received)
    finals = [(received, event) for received, topic, event in messages if topic == "emotion"]
    return {
        "start_ms": [event["latency_ms"] for event in starts],
        "interval_ms": [1000 * (b - a) for times in interims.values() for a, b in pairwise(times)],
        "interims": [float(len(times)) for times in interims.values()],
        "end_to_final_ms": [
            1000 * (received - datetime.fromisoformat(event["timestamp"]).timestamp()) for received, event in finals
        ],
        "final_latency_ms": [event["latency_ms"] for _, event in finals],
    }


def spread(values: list[float]) -> str:
    return f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f} / {max(values):.1f}"


def paced(path: Path) -> list[tuple[float, str, dict]]:
    """What a subscriber receives, and when, from `ser-stream run --realtime` on ``path``."""
    endpoint = free_endpoint()
    collector = Collector(endpoint)
    try:
        args = ("--source", str(path), "--realtime", "--publish", endpoint, "--wait-subscriber", "10")
        subprocess.run(run_command(2, *args), check=True, capture_output=True, timeout=300)
        time.sleep(0.3)
    finally:
        collector.close()
    return collector.messages


def cadence_text(intervals: list[float]) -> tuple[str, float]:
    """The intervals in words, and how far their bulk (p5 to p95) strays from interim_ms, as a fraction."""
    low, high = percentile(intervals, 5), percentile(intervals, 95)
    worst = max(abs(value - INTERIM_MS) for value in intervals) / INTERIM_MS
    text = (
        f"median {median(intervals):.0f}, p5-p95 {low:.0f}-{high:.0f}, worst {100 * worst:.1f}% off "
        f"({len(intervals)} intervals)"
    )
    return text, max(abs(low - INTERIM_MS), abs(high - INTERIM_MS)) / INTERIM_MS


def real_time(mic: VirtualMic, path: Path) -> None:
    seconds = soundfile.info(path).duration
    file, heard, before = stream_figures(paced(path)), *(stream_figures(listened(mic, path, b)) for b in (2, 1))
    section(
        f"interim: {len(ACTORS)} monologues in a {seconds:.0f} s stream, paced in real time: `run --realtime` "
        f"on the file, and played into the virtual microphone (interim_ms {INTERIM_MS})"
    )
    starts = file["start_ms"] + heard["start_ms"]
    line(
        "decision -> speech start sent, ms",
        f"p50 / p95 / max {spread(starts)} ({len(starts)} starts)  "
        f"[target p95 <= {TARGET_START_P95_MS:.0f}: {verdict(percentile(starts, 95), TARGET_START_P95_MS)}]",
    )
    line("  file", f"p50 / p95 / max {spread(file['start_ms'])}")
    line("  microphone", f"p50 / p95 / max {spread(heard['start_ms'])}")
    line("  microphone, every block read (before)", f"p50 / p95 / max {spread(before['start_ms'])}")
    intervals = file["interval_ms"] + heard["interval_ms"]
    text, strays = cadence_text(intervals)
    line(
        "interval between interim results, ms",
        f"{text}  [target p5-p95 within {100 * TARGET_CADENCE:.0f}%: {verdict(strays, TARGET_CADENCE)}]",
    )
    line("  file", cadence_text(file["interval_ms"])[0])
    line("  microphone", cadence_text(heard["interval_ms"])[0])
    # On the file, stream time is wall time from the first sample, so `timestamp` is when end_s was spoken.
    line("end of speech -> final result (file), ms", f"p50 / p95 / max {spread(file['end_to_final_ms'])}")
    line("  of which processing (latency_ms)", f"p50 / p95 / max {spread(file['final_latency_ms'])}")


def snapshots(path: Path) -> tuple[list[tuple[int, Utterance, bool]], list[float]]:
    """(utterance number, utterance, final) in the order the daemon hands them to its worker, and the
    CPU seconds of each of the main loop's copies of the open utterance."""
    source = FileSource(path, realtime=False)
    source.start()
    segmenter, cadence = Segmenter(SegmenterConfig()), Cadence(source.sample_rate)
    jobs, copies, number = [], [], 0
    while (block := source.read(1.0)) is not None:
        for event in segmenter.feed_events(block.samples):
            if isinstance(event, SpeechStarted):
                number += 1
                cadence.opened(event.start, INTERIM_MS)
            else:
                cadence.closed()
                if event.utterance is not None:
                    jobs.append((number, event.utterance, True))
        if cadence.due(segmenter.position):
            started = time.thread_time()
            so_far = segmenter.so_far()
            copies.append(time.thread_time() - started)
            if so_far is not None:
                jobs.append((number, so_far, False))
    return jobs, copies


def interim_cpu(path: Path, repeats: int = 5) -> None:
    single_threaded_blas()
    jobs, copies = snapshots(path)
    classifier = Classifier(load_bundle(default_model_path()))
    classifier.warm_up()
    costs: list[list[float]] = [[] for _ in jobs]
    scratch: list[list[float]] = [[] for _ in jobs]
    for _ in range(repeats):
        growing: dict[int, object] = {}
        for index, (number, utterance, final) in enumerate(jobs):
            started = time.thread_time()
            samples = from_int16(utterance.samples)
            if final:
                classifier.classify(samples, utterance.sample_rate)
            else:
                growing.setdefault(number, classifier.growing()).classify(samples, utterance.sample_rate)
            costs[index].append(time.thread_time() - started)
            if not final:  # what the same interim result costs classified from scratch
                started = time.thread_time()
                classifier.classify(from_int16(utterance.samples), utterance.sample_rate)
                scratch[index].append(time.thread_time() - started)
    per_job = [1000 * median(times) for times in costs]
    interim = [cost for cost, (_, _, final) in zip(per_job, jobs, strict=True) if not final]
    finals = [cost for cost, (_, _, final) in zip(per_job, jobs, strict=True) if final]
    from_scratch = [1000 * median(times) for times in scratch if times]
    copy_ms = 1000 * median(copies)
    mean_interim = sum(interim) / len(interim) + copy_ms
    durations = [utterance.duration_s for _, utterance, final in jobs if not final]
    section(f"interim: CPU per result, in process, thread time, median of {repeats} per result")
    line(
        "interim result (copy + classify)",
        f"mean {mean_interim:.2f} ms, p95 {percentile(interim, 95) + copy_ms:.2f}, max {max(interim) + copy_ms:.2f} "
        f"({len(interim)} results of {min(durations):.1f}-{max(durations):.1f} s)  "
        f"[target <= {TARGET_INTERIM_CPU_MS:.0f} ms: {verdict(mean_interim, TARGET_INTERIM_CPU_MS)}]",
    )
    line("  of which the main loop's copy", f"median {1000 * median(copies):.3f} ms")
    line("final result (reference)", f"mean {sum(finals) / len(finals):.2f} ms ({len(finals)} results)")
    line("interim / final", f"{mean_interim / (sum(finals) / len(finals)):.2f}")
    line("interim result from scratch", f"mean {sum(from_scratch) / len(from_scratch):.2f} ms (what growing saves)")


def switches(pid: int) -> int:
    """Context switches so far, summed over a live process's threads (each thread's are its own), from /proc."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except FileNotFoundError:  # a thread that just ended
            continue
        total += sum(int(row.split()[1]) for row in status.splitlines() if "ctxt_switches" in row)
    return total


def idle_once(mic: VirtualMic, command: list[str], seconds: float) -> tuple[float, float]:
    """(CPU % of one core, wake-ups per second) of a process reading the silent microphone, once it has
    printed its first line."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=mic.env)
    try:
        if not process.stdout.readline():
            raise SystemExit(f"bench: {command[-1]} did not start on the virtual microphone")
        time.sleep(2.0)  # past start-up work
        (cpu_before, _), switches_before = proc_figures(process.pid), switches(process.pid)
        started = time.monotonic()
        time.sleep(seconds)
        (cpu_after, _), switches_after = proc_figures(process.pid), switches(process.pid)
        wall = time.monotonic() - started
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    return 100 * (cpu_after - cpu_before) / wall, (switches_after - switches_before) / wall


def idle(mic: VirtualMic, seconds: float) -> None:
    commands = {
        "as shipped (2 blocks per read)": run_command(
            2, "--device", mic.device, "--publish", free_endpoint(), "--print"
        ),
        "every block read (before)": run_command(1, "--device", mic.device, "--publish", free_endpoint(), "--print"),
        "PortAudio reads alone (the floor)": [sys.executable, "-c", READS_ALONE, mic.device],
    }
    figures: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for _ in range(2):
        for label, command in commands.items():
            figures[label].append(idle_once(mic, command, seconds / 2))
    section(f"interim: idle, digital silence on the virtual microphone, {seconds / 2:.0f} s x2 each, alternated")
    for label in commands:
        cpu = median([c for c, _ in figures[label]])
        wakeups = median([w for _, w in figures[label]])
        target = f"  [target <= {TARGET_IDLE_CPU:.0f}%: {verdict(cpu, TARGET_IDLE_CPU)}]" if "shipped" in label else ""
        line(label, f"CPU {cpu:.2f}% of one core, {wakeups:.0f} wake-ups/s{target}")


def run(data: Path = DEFAULT_DATA, idle_s: float = 60.0) -> None:
    with tempfile.TemporaryDirectory() as folder, running_mic() as mic:
        path = Path(folder) / "monologues.wav"
        build_monologues(data, path, actors=ACTORS)
        real_time(mic, path)
        interim_cpu(path)
        idle(mic, idle_s)


if __name__ == "__main__":
    run()
