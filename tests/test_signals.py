"""Signals as an operator (or a flapping supervisor) sends them: bursts of back-to-back SIGHUPs and
SIGTERMs at the real `run` and `proxy` processes.  Every run must end, promptly and with exit 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from testkit.live import Subscriber, build_stream, cli_executable, free_endpoint, start_daemon, wait_until
from tests.soak import build_long_stream

#: Runs per burst: the hang this guards against struck 1 to 3 runs in 3.
RUNS = 4
#: Between two signals of a burst.  The kernel merges a signal that is still pending, so a tight loop
#: delivers only a few; a millisecond apart, each one runs its handler, and handlers nest.
SPACING_S = 0.001
#: From the last signal to the process's end; a clean stop takes about a second.
DEADLINE_S = 15
BURSTS = {
    "200 SIGHUPs then SIGTERM": [signal.SIGHUP] * 200 + [signal.SIGTERM],
    "200 SIGTERMs": [signal.SIGTERM] * 200,
    "200 SIGINTs": [signal.SIGINT] * 200,
}


def send_burst(process: subprocess.Popen, burst: list[signal.Signals]) -> None:
    for signum in burst:
        os.kill(process.pid, signum)
        time.sleep(SPACING_S)  # pacing the burst, not waiting for anything


def ended_within_deadline(process: subprocess.Popen) -> tuple[int | None, str, str]:
    """(exit code, stdout, stderr); the exit code is None when the process had to be killed."""
    try:
        stdout, stderr = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        return None, stdout, stderr
    return process.returncode, stdout, stderr


@pytest.fixture(scope="module")
def long_stream(ravdess, tmp_path_factory):
    """Two minutes of RAVDESS speech: played in real time, it outlasts every run here."""
    path = tmp_path_factory.mktemp("signals") / "long.wav"
    build_long_stream(ravdess, path, minutes=2)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("burst", BURSTS, ids=list(BURSTS))
@pytest.mark.parametrize("source", ["file", "mic"])
def test_run_ends_promptly_under_a_burst_of_signals(request, source, burst):
    if source == "mic":  # the PulseAudio virtual microphone: PortAudio's threads and the stderr relay too
        args = ("--device", request.getfixturevalue("virtual_mic").device)
    else:
        args = ("--source", str(request.getfixturevalue("long_stream")), "--realtime")
    outcomes = []
    for _ in range(RUNS):
        daemon = start_daemon(*args, endpoint=free_endpoint())
        assert json.loads(daemon.stdout.readline())["state"] == "started"
        send_burst(daemon, BURSTS[burst])
        code, _, stderr = ended_within_deadline(daemon)
        outcomes.append(code)
        assert "Traceback" not in stderr, stderr
    assert outcomes == [0] * RUNS, outcomes  # None: hung, killed after DEADLINE_S


@pytest.mark.slow
@pytest.mark.parametrize("burst", [name for name in BURSTS if "SIGHUP" not in name])
def test_proxy_ends_promptly_under_a_burst_of_signals(burst):
    outcomes = []
    for _ in range(RUNS):
        frontend, backend = free_endpoint(), free_endpoint()
        subscriber = Subscriber(backend)
        proxy = subprocess.Popen(
            [cli_executable(), "proxy", "--frontend", frontend, "--backend", backend, "--heartbeat-s", "0.2"],
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            wait_until(lambda subscriber=subscriber: subscriber.of("proxy"), 30, "a first proxy heartbeat")
            send_burst(proxy, BURSTS[burst])
            code, _, stderr = ended_within_deadline(proxy)
        finally:
            subscriber.close()
        outcomes.append(code)
        assert "Traceback" not in stderr, stderr
    assert outcomes == [0] * RUNS, outcomes


def test_a_signal_during_the_wait_for_a_subscriber_ends_it_promptly(ravdess, tmp_path):
    """SIGTERM or SIGINT while `--wait-subscriber` waits: the wait ends at once (it used to run its
    course, here an hour, the longest the settings allow), exit 0, nothing streamed."""
    stream = tmp_path / "stream.wav"
    build_stream(ravdess, stream, [(2, 1)])
    for signum in (signal.SIGTERM, signal.SIGINT):
        endpoint = free_endpoint()
        daemon = subprocess.Popen(
            [
                cli_executable(),
                "run",
                "--source",
                str(stream),
                "--publish",
                endpoint,
                "--print",
                "--wait-subscriber",
                "3600",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        wait_until(lambda endpoint=endpoint: _accepts_connections(endpoint), 30, "the socket bound, the wait begun")
        daemon.send_signal(signum)
        code, stdout, stderr = ended_within_deadline(daemon)
        assert code == 0, (signum, stderr)
        assert stdout == "" and "nothing was streamed" in stderr


def _accepts_connections(endpoint: str) -> bool:
    """A bare TCP connection: the port is bound, and no subscription reaches the daemon."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True
