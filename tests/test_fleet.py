"""A fleet: three daemons → one `ser-stream proxy` → one subscriber, all real processes and sockets."""

from __future__ import annotations

import signal
import subprocess

import pytest

from ser_stream.events import validator_for
from testkit.live import (
    STREAM_CLIPS,
    Subscriber,
    build_stream,
    cli_executable,
    free_endpoint,
    start_daemon,
    wait_until,
)
from tests.conftest import run_cli


def stopped(subscriber: Subscriber, device: str) -> bool:
    return any(event.get("device") == device and event["state"] == "stopping" for event in subscriber.of("status"))


@pytest.mark.slow
def test_three_daemons_through_one_proxy_reach_one_subscriber(ravdess, tmp_path):
    frontend, backend = free_endpoint(), free_endpoint()
    command = [cli_executable(), "proxy", "--frontend", frontend, "--backend", backend, "--device-id", "hub"]
    proxy = subprocess.Popen(
        [*command, "--heartbeat-s", "0.5"],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    subscriber = Subscriber(backend)
    streams = {}
    for index, device in enumerate(("kiosk-1", "kiosk-2", "kiosk-3")):
        streams[device] = tmp_path / f"{device}.wav"
        build_stream(ravdess, streams[device], STREAM_CLIPS[2 * index : 2 * index + 2], gap_s=1.0)
    daemons = []
    try:
        wait_until(lambda: subscriber.of("proxy"), 30, "a proxy event: the subscription is at the proxy")
        daemons += [
            start_daemon(
                *("--source", str(stream), "--no-realtime", "--wait-subscriber", "10"),
                *("--publish-connect", frontend, "--device-id", device),
                endpoint=free_endpoint(),  # --publish is ignored once --publish-connect is given
            )
            for device, stream in streams.items()
        ]
        for daemon in daemons:
            _, stderr = daemon.communicate(timeout=60)
            assert daemon.returncode == 0, stderr
        wait_until(lambda: all(stopped(subscriber, device) for device in streams), 10, "each device's last event")
        proxy.send_signal(signal.SIGTERM)
        _, proxy_log = proxy.communicate(timeout=10)
        wait_until(lambda: subscriber.stopped("proxy"), 10, "the proxy's last event")
    finally:
        for process in (proxy, *daemons):
            if process.poll() is None:
                process.kill()
        subscriber.close()
    assert proxy.returncode == 0, proxy_log
    for device in streams:
        events = [(topic, event) for topic, event in subscriber.messages if event.get("device") == device]
        seqs = [event["seq"] for _, event in events]
        assert seqs == list(range(1, len(seqs) + 1)), (device, seqs)  # every event of each device, no gap
        assert [topic for topic, _ in events].count("emotion") == 2, device
        assert events[0][1]["state"] == "started" and events[-1][1]["state"] == "stopping"
        for topic, event in events:
            validator_for(topic).validate(event)
    heartbeats = [event for topic, event in subscriber.messages if topic == "proxy"]
    assert heartbeats and all(event["device"] == "hub" for event in heartbeats)
    validator_for("proxy").validate(heartbeats[-1])
    assert heartbeats[-1]["state"] == "stopping"
    forwarded = sum(1 for topic, _ in subscriber.messages if topic != "proxy")
    assert heartbeats[-1]["counters"]["backend_messages_out"] >= forwarded


def test_proxy_endpoint_errors_are_one_line():
    with_port = free_endpoint()
    result = run_cli("proxy", "--frontend", "nonsense", "--backend", with_port)
    assert result.returncode == 4 and result.stderr.count("\n") == 1 and "invalid endpoint 'nonsense'" in result.stderr
    missing = run_cli("proxy", "--frontend", with_port)
    assert missing.returncode == 78 and missing.stderr.count("\n") == 1 and "backend is required" in missing.stderr
