"""Running under systemd: the notify protocol on a real AF_UNIX datagram socket, the watchdog,
journald logging, and reloading config and model on SIGHUP."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from ser_stream.capture import AudioBlock, FileSource
from ser_stream.model import Classifier, load_bundle, manifest_path, sha256_of
from ser_stream.notify import Notifier
from ser_stream.pipeline import Daemon
from ser_stream.proxy import Proxy
from ser_stream.publisher import Publisher
from ser_stream.settings import RunSettings, from_keys
from testkit.live import STREAM_CLIPS, Subscriber, build_stream, cli_executable, clip_path, free_endpoint, wait_until
from tests.conftest import SHIPPED_MODEL

_names = itertools.count()


class NotifySocket:
    """What systemd listens on: an abstract-namespace AF_UNIX datagram socket, read in a thread."""

    def __init__(self) -> None:
        self.address = f"@ser-stream-test-{os.getpid()}-{next(_names)}"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + self.address[1:])
        self.socket.settimeout(0.05)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                datagram = self.socket.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in datagram.decode().splitlines())
            self.messages.append((time.monotonic(), fields))

    def env(self, watchdog_usec: int | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.address}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def wait_for(self, key: str, after: int = 0, timeout: float = 60) -> int:
        """Index of the first message from ``after`` on that sets ``key``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, (_, fields) in enumerate(self.messages[after:], after):
                if key in fields:
                    return index
            time.sleep(0.02)
        raise AssertionError(f"no {key} after message {after} within {timeout} s: {self.messages[after:]}")

    def pings(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        return [t for t, fields in self.messages if "WATCHDOG" in fields and start <= t <= end]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@pytest.fixture
def notify_socket():
    listener = NotifySocket()
    yield listener
    listener.close()


def test_notify_is_a_no_op_outside_systemd():
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    assert not notifier.ready("x") and not notifier.watchdog()


def test_watchdog_interval_is_half_of_watchdog_sec_and_only_for_our_pid():
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval_s == 15.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_interval_s == 15.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval_s is None


def test_notify_to_a_vanished_manager_does_not_raise(tmp_path):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled and not notifier.ready("x")


@pytest.mark.slow
def test_ready_status_watchdog_and_stopping_from_the_real_daemon(ravdess, tmp_path, notify_socket):
    stream = tmp_path / "stream.wav"
    build_stream(ravdess, stream, STREAM_CLIPS[:1], gap_s=1.0)
    watchdog_s = 0.2
    env = {**os.environ, **notify_socket.env(watchdog_usec=int(2 * watchdog_s * 1e6))}
    started = time.monotonic()
    result = subprocess.run(
        [cli_executable(), "run", "--source", str(stream), "--publish", free_endpoint(), "--heartbeat-s", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    ended = time.monotonic()
    assert result.returncode == 0, result.stderr
    notify_socket.wait_for("STOPPING", timeout=10)  # the last datagram, read by the socket's thread
    messages = [fields for _, fields in notify_socket.messages]
    assert messages[0]["READY"] == "1" and messages[0]["STATUS"].startswith(f"listening: {stream} at 16000 Hz")
    assert messages[-1]["STOPPING"] == "1" and messages[-1]["STATUS"].startswith("stopping (end of input)")
    heartbeats = [fields["STATUS"] for fields in messages if fields.get("STATUS", "").startswith("running: ")]
    assert len(heartbeats) >= 3 and "1 utterances, 0 dropped" in heartbeats[-1]
    ready_at = notify_socket.messages[0][0]
    pings = notify_socket.pings(ready_at)
    gaps = np.diff(pings)
    assert 0.75 * watchdog_s <= statistics.median(gaps) <= 1.5 * watchdog_s, gaps
    assert len(pings) >= 0.6 * (ended - started - 1.0) / watchdog_s  # pinging throughout, start-up aside


class _WedgingClassifier(Classifier):
    """Hangs in the first real classification, as a stuck model or a deadlock would."""

    def __init__(self, bundle) -> None:
        super().__init__(bundle)
        self.armed = False
        self.wedged = threading.Event()
        self.release = threading.Event()

    def warm_up(self) -> None:
        super().warm_up()
        self.armed = True

    def features(self, samples, sample_rate):  # the worker's first step with each utterance
        if self.armed:
            self.wedged.set()
            self.release.wait()
        return super().features(samples, sample_rate)


class _WedgingSource(FileSource):
    """Stops returning from read() after the first second, as a hung audio driver would."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.wedged = threading.Event()
        self.release = threading.Event()

    def read(self, timeout: float) -> AudioBlock | None:
        if self._position >= self.sample_rate:
            self.wedged.set()
            self.release.wait()
        return super().read(timeout)


def _run_in_thread(daemon: Daemon) -> threading.Thread:
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("stage", ["worker", "audio loop"])
def test_a_wedged_stage_stops_the_watchdog_pings_and_the_heartbeats(ravdess, tmp_path, notify_socket, stage):
    stream = tmp_path / "stream.wav"
    build_stream(ravdess, stream, STREAM_CLIPS[:1], gap_s=1.0)
    watchdog_s = 0.1
    bundle = load_bundle(SHIPPED_MODEL)
    if stage == "worker":
        classifier, source = _WedgingClassifier(bundle), FileSource(stream, realtime=True)
        wedge = classifier
    else:
        classifier, source = Classifier(bundle), _WedgingSource(stream, realtime=True)
        wedge = source
    notifier = Notifier(notify_socket.env(watchdog_usec=int(2 * watchdog_s * 1e6)))
    endpoint = free_endpoint()
    subscriber = Subscriber(endpoint)
    with Publisher(endpoint) as publisher:
        daemon = Daemon(source, classifier, publisher, from_keys(RunSettings, {"heartbeat_s": 0.2}), notifier=notifier)
        thread = _run_in_thread(daemon)
        try:
            assert wedge.wedged.wait(30)
            wedged_at, wedged_wall = time.monotonic(), datetime.now(timezone.utc)
            time.sleep(1.2)  # the window in which no ping may come: the silence is what is tested
            before = notify_socket.pings(end=wedged_at)
            assert len(before) >= 3  # it was pinging until then
            assert notify_socket.pings(start=wedged_at + 2 * watchdog_s) == []  # and then it stopped
            # Nor does it tell subscribers all is well: no `running` heartbeat (with frozen counters).
            beats = [t for t, fields in notify_socket.messages if fields.get("STATUS", "").startswith("running")]
            assert len([t for t in beats if t < wedged_at]) >= 2
            assert [t for t in beats if t > wedged_at + 0.3] == []
            running = [s for s in subscriber.of("status") if s["state"] == "running"]
            late = wedged_wall + timedelta(seconds=0.3)
            assert running and [s for s in running if datetime.fromisoformat(s["timestamp"]) > late] == []
        finally:
            wedge.release.set()
            daemon.request_stop()
            thread.join(30)
            subscriber.close()
    assert not thread.is_alive()


@pytest.mark.slow
def test_ready_status_watchdog_and_stopping_from_the_real_proxy(notify_socket):
    frontend, backend = free_endpoint(), free_endpoint()
    watchdog_s = 0.2
    env = {**os.environ, **notify_socket.env(watchdog_usec=int(2 * watchdog_s * 1e6))}
    subscriber = Subscriber(backend)
    proxy = subprocess.Popen(
        [cli_executable(), "proxy", "--frontend", frontend, "--backend", backend, "--heartbeat-s", "0.5"],
        env=env,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        notify_socket.wait_for("READY", timeout=30)
        with Publisher(frontend, connect=True) as device:  # one device's five events
            wait_until(lambda: _probe_arrives(device, subscriber), 30, "the subscription to reach the device")
            for number in range(5):
                device.publish("status", {"number": number})
            wait_until(lambda: len(_numbered(subscriber)) == 5, 30, "the five events through the proxy")
            wait_until(lambda: len(_proxy_heartbeats(notify_socket)) >= 3, 30, "three proxy heartbeats")
        proxy.send_signal(signal.SIGTERM)
        _, stderr = proxy.communicate(timeout=10)
    finally:
        if proxy.poll() is None:
            proxy.kill()
        subscriber.close()
    assert proxy.returncode == 0, stderr
    notify_socket.wait_for("STOPPING", timeout=10)
    messages = [fields for _, fields in notify_socket.messages]
    assert messages[0]["READY"] == "1" and messages[0]["STATUS"].startswith("forwarding: 0 messages in from devices")
    assert messages[-1]["STOPPING"] == "1" and messages[-1]["STATUS"].startswith("stopping: ")
    assert len(_proxy_heartbeats(notify_socket)) >= 3
    counted_in = int(messages[-1]["STATUS"].split()[1])
    assert counted_in >= 5 and len(_numbered(subscriber)) == 5
    gaps = np.diff(notify_socket.pings(notify_socket.messages[0][0]))
    assert 0.75 * watchdog_s <= statistics.median(gaps) <= 1.5 * watchdog_s, gaps


def _probe_arrives(device: Publisher, subscriber: Subscriber) -> bool:
    """Publish a probe; True once one got through, which a device's first events may not (slow joiner)."""
    device.publish("status", {"probe": True})
    return any("probe" in event for event in subscriber.of("status"))


def _numbered(subscriber: Subscriber) -> list[dict]:
    return [event for event in subscriber.of("status") if "number" in event]


def _proxy_heartbeats(notify_socket: NotifySocket) -> list[str]:
    statuses = [fields.get("STATUS", "") for _, fields in notify_socket.messages]
    return [status for status in statuses if status.startswith("forwarding: ")]


class _WedgingProxy(Proxy):
    """Its forwarder answers the first few statistics requests, then hangs, as a deadlock would."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.wedged = threading.Event()
        self.release = threading.Event()

    def _forward(self) -> None:
        answered = 0
        while True:
            request = self._control.recv()
            if request == b"TERMINATE":
                return
            if answered == 5:
                self.wedged.set()
                self.release.wait()
            self._control.send_multipart([struct.pack("=Q", 0)] * 8)
            answered += 1


def test_a_wedged_forwarder_stops_the_proxy_watchdog_pings(notify_socket):
    watchdog_s = 0.1
    notifier = Notifier(notify_socket.env(watchdog_usec=int(2 * watchdog_s * 1e6)))
    proxy = _WedgingProxy(free_endpoint(), free_endpoint(), "hub", heartbeat_s=0.5, notifier=notifier)
    thread = threading.Thread(target=proxy.run, daemon=True)
    thread.start()
    try:
        assert proxy.wedged.wait(30)
        wedged_at = time.monotonic()
        time.sleep(1.0)  # the window in which no ping may come: the silence is what is tested
        assert len(notify_socket.pings(end=wedged_at)) >= 3  # it was pinging until then
        assert notify_socket.pings(start=wedged_at + 2 * watchdog_s) == []  # and then it stopped
    finally:
        proxy.request_stop()
        proxy.release.set()
        thread.join(30)
    assert not thread.is_alive()


def test_logs_carry_journal_priorities_when_stderr_is_the_journal_stream(ravdess):
    """JOURNAL_STREAM names stderr's device:inode; a pipe we made ourselves stands in for journald."""
    clip = str(clip_path(ravdess, 2, 1))
    read_end, write_end = os.pipe()
    status = os.fstat(write_end)
    env = {**os.environ, "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
    with os.fdopen(read_end) as journal:
        good = subprocess.Popen(
            [cli_executable(), "run", "--publish", free_endpoint(), "--source", clip, "--no-realtime"],
            env=env,
            stderr=write_end,
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        assert good.wait(60) == 0
        bad = subprocess.Popen(
            [cli_executable(), "run", "--publish", "nonsense", "--source", clip],
            env=env,
            stderr=write_end,
            stdin=subprocess.DEVNULL,
        )
        assert bad.wait(60) == 4
        os.close(write_end)
        lines = journal.read().splitlines()
    assert lines[0].startswith("<6>model ser-mlp")
    assert lines[-1].startswith("<3>invalid endpoint 'nonsense'")
    assert all(line[:3] in ("<6>", "<4>", "<3>") for line in lines)


def test_logs_are_plain_when_journal_stream_names_another_stream(ravdess):
    clip = str(clip_path(ravdess, 2, 1))
    env = {**os.environ, "JOURNAL_STREAM": "1:1"}
    result = subprocess.run(
        [cli_executable(), "run", "--publish", free_endpoint(), "--source", clip, "--no-realtime"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0 and result.stderr.startswith("ser-stream: model ser-mlp")


def test_what_c_libraries_write_to_stderr_goes_through_the_log():
    """PortAudio and ALSA write to fd 2 directly; while relayed, their lines become log lines."""
    program = """if True:
        import os, sys
        from ser_stream.logs import setup_logging
        from ser_stream.native_log import native_stderr_logged
        setup_logging("debug")
        with native_stderr_logged():
            os.write(2, b"ALSA lib pcm_pulse.c:758:(pulse_prepare) PulseAudio: Unable to create stream\\n\\n")
            os.write(2, b"Expression 'ret' failed in 'src/hostapi/alsa/pa_linux_alsa.c', line: 1812\\n")
            os.write(2, b"something else\\n")
            print("python's own line", file=sys.stderr)
        os.write(2, b"after the relay\\n")
    """
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert sorted(lines[:-1]) == sorted(
        [
            "ser-stream: sound library: ALSA lib pcm_pulse.c:758:(pulse_prepare) PulseAudio: Unable to create stream",
            "ser-stream: sound library: Expression 'ret' failed in 'src/hostapi/alsa/pa_linux_alsa.c', line: 1812",
            "ser-stream: warning: from a library: something else",
            "python's own line",
        ]
    )
    assert lines[-1] == "after the relay"


def _install_bundle(source: Path, models: Path) -> Path:
    models.mkdir(exist_ok=True)
    for path in (source, manifest_path(source)):
        shutil.copy(path, models / path.name)
    return models / source.name


def _replace_with_resaved_bundle(npz_path: Path) -> str:
    """The same weights and a spare extra array: a valid bundle with a different SHA-256."""
    manifest = json.loads(manifest_path(npz_path).read_text())
    with np.load(npz_path) as npz:
        arrays = {**npz, "extra.spare": np.zeros(1)}
    staging = npz_path.with_suffix(".new.npz")
    np.savez(staging, **arrays)
    manifest["extra_arrays"] = [*manifest.get("extra_arrays", []), "spare"]
    manifest["sha256"] = sha256_of(staging)
    manifest_path(npz_path).write_text(json.dumps(manifest))
    os.replace(staging, npz_path)
    return manifest["sha256"]


def _emotions_after(subscriber: Subscriber, count: int, timeout: float = 30) -> list[dict]:
    return wait_until(lambda: subscriber.of("emotion")[count:], timeout, f"an emotion event after the first {count}")


@pytest.mark.slow
def test_sighup_reloads_config_and_model_and_keeps_the_old_ones_when_the_new_are_bad(ravdess, tmp_path, notify_socket):
    stream = tmp_path / "stream.wav"
    build_stream(ravdess, stream, STREAM_CLIPS[:4], gap_s=1.0)
    model = _install_bundle(SHIPPED_MODEL, tmp_path / "models")
    old_sha = sha256_of(model)
    endpoint = free_endpoint()
    config = tmp_path / "config.toml"
    settings = (
        f'source = "{stream}"\npublish = "{endpoint}"\nmodel = "models/{model.name}"\n'
        "heartbeat_s = 1\nwait_subscriber = 10\n"
    )
    config.write_text(settings)
    subscriber = Subscriber(endpoint)
    daemon = subprocess.Popen(
        [cli_executable(), "run", "--config", str(config)],
        env={**os.environ, **notify_socket.env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        notify_socket.wait_for("READY")
        first = _emotions_after(subscriber, 0)
        assert first[0]["model"]["sha256"] == old_sha

        # A new model, and a changed endpoint, which only a restart may apply.
        new_sha = _replace_with_resaved_bundle(model)
        config.write_text(settings.replace(endpoint, free_endpoint()))
        seen = len(notify_socket.messages)
        daemon.send_signal(signal.SIGHUP)
        reloading = notify_socket.wait_for("RELOADING", after=seen)
        ready = notify_socket.wait_for("READY", after=reloading)
        assert notify_socket.messages[ready][1]["STATUS"].startswith(f"reloaded: model ser-mlp {new_sha[:12]}")
        count = len(subscriber.of("emotion"))
        assert _emotions_after(subscriber, count)[0]["model"]["sha256"] == new_sha

        # A tampered model, then a config with a typo: each is refused and the running ones stay.
        with open(model, "ab") as handle:
            handle.write(b"\0")
        for bad_config in (None, settings + "hangover = 300\n"):
            if bad_config:
                config.write_text(bad_config)
            seen = len(notify_socket.messages)
            daemon.send_signal(signal.SIGHUP)
            ready = notify_socket.wait_for("READY", after=notify_socket.wait_for("RELOADING", after=seen))
            assert notify_socket.messages[ready][1]["STATUS"].startswith("reload failed: ")
        count = len(subscriber.of("emotion"))
        assert _emotions_after(subscriber, count)[0]["model"]["sha256"] == new_sha

        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        subscriber.close()
    assert daemon.returncode == 0, stderr
    assert "publish changed; it takes effect at the next restart" in stderr
    failures = [line for line in stderr.splitlines() if "reload failed" in line]
    assert len(failures) == 2 and "does not match the manifest" in failures[0] and "unknown key" in failures[1]
    assert "Traceback" not in stderr
    statuses = subscriber.of("status")
    assert [s["state"] for s in statuses].count("started") == 1  # the input was never reopened
    captured = [s["counters"]["frames_captured"] for s in statuses]
    assert captured == sorted(captured)
    messages = [s.get("message", "") for s in statuses]
    assert any(m.startswith("reloaded: model ser-mlp") for m in messages)
    assert sum(m.startswith("reload failed: ") for m in messages) == 2
