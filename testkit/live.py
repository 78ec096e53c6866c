"""Real daemons for tests and benchmarks: RAVDESS streams, free endpoints, SUB sockets, `run` subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import librosa
import numpy as np
import soundfile
import zmq

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
RATE = 16000
#: (emotion code, actor) of the clips in the test stream: mixed voices and emotions, each with
#: unambiguous speech bounds (librosa.effects.trim at 30 and 40 dB agree within 0.15 s), so
#: "within 0.3 s of the speech" has a ground truth.
STREAM_CLIPS = [(2, 1), (3, 1), (7, 2), (6, 3), (7, 4), (3, 5), (6, 7), (2, 12)]


def default_ravdess() -> Path:
    """Where the RAVDESS clips are: ``$SER_STREAM_RAVDESS``, else the shared copy beside the checkout."""
    return Path(os.environ.get("SER_STREAM_RAVDESS", REPO.parent / "shared" / "data" / "ravdess16k"))


def clip_path(root: Path, emotion: int, actor: int, intensity: int = 1, statement: int = 1, rep: int = 1) -> Path:
    return (
        root / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-{intensity:02d}-{statement:02d}-{rep:02d}-{actor:02d}.flac"
    )


def cli_executable() -> str:
    """The installed `ser-stream` console script of the running interpreter's environment."""
    script = Path(sys.executable).parent / "ser-stream"
    return str(script) if script.exists() else "ser-stream"


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def build_stream(ravdess, path, clips=STREAM_CLIPS, gap_s=1.5):
    """Clips separated by digital silence; returns the speech bounds (s) of each clip in the stream."""
    parts, bounds, offset = [np.zeros(int(gap_s * RATE), np.float32)], [], int(gap_s * RATE)
    for code, actor in clips:
        samples, rate = soundfile.read(clip_path(ravdess, code, actor, intensity=2), dtype="float32")
        assert rate == RATE
        _, (speech_start, speech_end) = librosa.effects.trim(samples, top_db=30)
        bounds.append(((offset + speech_start) / RATE, (offset + speech_end) / RATE))
        parts += [samples, np.zeros(int(gap_s * RATE), np.float32)]
        offset += samples.size + int(gap_s * RATE)
    soundfile.write(path, np.concatenate(parts), RATE, subtype="PCM_16")
    return bounds


#: The clips of a monologue: four emotions of one actor, spoken one after another.
MONOLOGUE_CODES = (2, 3, 6, 7)
#: Actors whose four clips, trimmed and joined, the segmenter hears as one utterance of 5-7 s (the
#: quiet end of the last clip falls under the energy gate), after silence of 1.5 s and in any order.
MONOLOGUE_ACTORS = (11, 16, 17)


def build_monologues(ravdess, path, actors=(11, 17), gap_s=1.5):
    """Long utterances separated by digital silence: each actor's MONOLOGUE_CODES clips cut to their
    speech (librosa.effects.trim at 30 dB) and joined without pauses.  Returns each one's speech bounds (s)."""
    parts, bounds, offset = [np.zeros(int(gap_s * RATE), np.float32)], [], int(gap_s * RATE)
    for actor in actors:
        speech = []
        for code in MONOLOGUE_CODES:
            samples, rate = soundfile.read(clip_path(ravdess, code, actor, intensity=2), dtype="float32")
            assert rate == RATE
            _, (start, end) = librosa.effects.trim(samples, top_db=30)
            speech.append(samples[start:end])
        monologue = np.concatenate(speech)
        bounds.append((offset / RATE, (offset + monologue.size) / RATE))
        parts += [monologue, np.zeros(int(gap_s * RATE), np.float32)]
        offset += monologue.size + int(gap_s * RATE)
    soundfile.write(path, np.concatenate(parts), RATE, subtype="PCM_16")
    return bounds


class Subscriber:
    """A real SUB socket collecting [topic, json] messages in a background thread."""

    def __init__(self, endpoint: str):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.connect(endpoint)
        self.messages: list[tuple[str, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self):
        while not self._stop.is_set():
            if self.socket.poll(50):
                topic, payload = self.socket.recv_multipart()
                self.messages.append((topic.decode(), json.loads(payload)))

    def close(self):
        self._stop.set()
        self._thread.join()
        self.socket.close(linger=0)
        self.context.term()

    def of(self, topic):
        return [event for t, event in self.messages if t == topic]

    def stopped(self, topic: str = "status") -> bool:
        """Whether the last message on ``topic`` is a "stopping" one: a sender's last word, so (one
        PUB, one connection: in order) everything it sent before has arrived too."""
        events = self.of(topic)
        return bool(events) and events[-1].get("state") == "stopping"


def start_daemon(*args, endpoint):
    return subprocess.Popen(
        [cli_executable(), "run", "--publish", endpoint, "--print", "--heartbeat-s", "1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def wait_until(condition: Callable[[], T], timeout: float, what: str) -> T:
    """``condition()``'s first truthy value, polled until ``timeout`` s; an AssertionError naming
    ``what`` after that.  Tests wait for what they need this way, never for a fixed time: on a busy
    machine everything takes longer, and a deadline far above the usual wait costs nothing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)  # the polling period
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_audio(subscriber: Subscriber, timeout: float = 30) -> None:
    """Until a status heartbeat counts captured frames: a sound server takes a moment to start a
    capture stream, and what is played before that is never heard."""
    wait_until(lambda: any(s["counters"]["frames_captured"] for s in subscriber.of("status")), timeout, "audio flowing")


class Lines:
    """A running process's text pipe, read line by line in a background thread."""

    def __init__(self, pipe):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe):
        for line in pipe:
            self.lines.append(line)

    def having(self, text: str) -> str | None:
        return next((line for line in list(self.lines) if text in line), None)

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


class JsonPrinter:
    """A process printing one JSON object a line (`ser-stream subscribe`, `run --print`), read as it prints."""

    def __init__(self, command: list[str], **popen) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, **popen
        )
        self._out = Lines(self.process.stdout)

    def events(self) -> list[dict]:
        return [json.loads(line) for line in list(self._out.lines)]

    def stop(self, signum: int = signal.SIGTERM) -> list[dict]:
        """End it with ``signum``; everything it printed."""
        self.process.send_signal(signum)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()  # it failed the test; it does not outlive it
            raise
        self._out.text()
        return self.events()
