"""Endpoints through the real CLI: IPv6 binds, a bad endpoint names its real cause, and `subscribe`
survives a rogue publisher, says when nothing arrives, and gives up after --timeout."""

from __future__ import annotations

import json
import socket
import subprocess
import threading

import pytest
import soundfile
import zmq

from testkit.live import Lines, cli_executable, clip_path, free_endpoint, wait_until
from tests.conftest import run_cli, speech_like


def ipv6_endpoint() -> str:
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError as error:
            pytest.skip(f"no IPv6 loopback here: {error}")
        return f"tcp://[::1]:{probe.getsockname()[1]}"


def start(*args: str) -> tuple[subprocess.Popen, Lines, Lines]:
    process = subprocess.Popen(
        [cli_executable(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    return process, Lines(process.stdout), Lines(process.stderr)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(10)


@pytest.mark.ravdess
def test_an_ipv6_endpoint_binds_and_its_subscriber_gets_the_events(ravdess):
    endpoint = ipv6_endpoint()
    daemon, _, daemon_log = start(
        "run",
        "--source",
        str(clip_path(ravdess, 3, 1)),
        "--no-realtime",
        "--publish",
        endpoint,
        "--wait-subscriber",
        "30",
    )
    subscriber, events, _ = start("subscribe", endpoint, "--timeout", "60")
    try:
        wait_until(lambda: events.having('"label"'), 60, "an emotion event over IPv6")
        assert daemon.wait(30) == 0, daemon_log.text()
    finally:
        stop(daemon)
        stop(subscriber)
    assert f"publishing on {endpoint} as " in daemon_log.text()


def test_a_bind_error_names_its_cause(tmp_path):
    source = tmp_path / "speech.wav"
    soundfile.write(source, speech_like(1.0), 16000)
    result = run_cli("run", "--source", str(source), "--publish", "tcp://no-such-host.invalid:5556", timeout=60)
    assert result.returncode == 4 and result.stderr.count("\n") == 1, result.stderr
    assert "'no-such-host.invalid' is neither an IP address nor a network interface of this machine" in result.stderr
    assert "no such device" not in result.stderr
    proxy = run_cli("proxy", "--frontend", "tcp://192.0.2.1:5557", "--backend", free_endpoint(), timeout=60)
    assert proxy.returncode == 4 and "192.0.2.1 is not an address of this machine" in proxy.stderr, proxy.stderr


def rogue_publisher(endpoint: str, frames: list[list[bytes]], stop: threading.Event) -> threading.Thread:
    """A foreign publisher on the port, sending ``frames`` again and again (late subscribers miss the first)."""

    def publish() -> None:
        context = zmq.Context()
        sock = context.socket(zmq.PUB)
        sock.bind(endpoint)
        while not stop.wait(0.05):
            for message in frames:
                sock.send_multipart(message)
        sock.close(linger=0)
        context.term()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    return thread


def test_subscribe_skips_a_deeply_nested_message_and_keeps_going():
    endpoint, halt = free_endpoint(), threading.Event()
    good = {"schema": "ser-stream.emotion/1", "label": "calm"}
    publisher = rogue_publisher(
        endpoint,
        [[b"emotion", b"[" * 100_000 + b"]" * 100_000], [b"emotion", b"\xff"], [b"emotion", json.dumps(good).encode()]],
        halt,
    )
    subscriber, events, log = start("subscribe", endpoint, "--topic", "emotion")
    try:
        wait_until(lambda: len(events.lines) >= 3, 30, "events after the rogue messages")
        assert subscriber.poll() is None  # still running
    finally:
        halt.set()
        publisher.join()
        stop(subscriber)
    assert all(json.loads(line) == good for line in events.text().splitlines())
    warnings = log.text().splitlines()
    assert warnings and all("warning: skipped a message that is not an event: " in line for line in warnings)
    assert any("nested too deeply" in line for line in warnings) and "Traceback" not in log.text()
    assert len(warnings) <= 2  # a flood of them is summarised, not one line each


@pytest.mark.parametrize("endpoint", [None, "tcp://no-such-host.invalid:5556"], ids=["nothing there", "no such host"])
def test_subscribe_says_it_is_waiting_and_gives_up_after_its_timeout(endpoint):
    endpoint = endpoint or free_endpoint()
    result = run_cli("subscribe", endpoint, "--timeout", "5", timeout=60)
    assert result.returncode == 75 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"ser-stream: waiting for events from {endpoint} (none after 3 s: is anything publishing there?)",
        f"ser-stream: no event from {endpoint} in 5 s",
    ]


def test_subscribe_timeout_is_bounded():
    result = run_cli("subscribe", "--timeout", "1e10")
    assert result.returncode == 2 and "--timeout: '1e10': must be a number of seconds above 0" in result.stderr
