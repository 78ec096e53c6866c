"""Faults made to happen for real: the daemon keeps running, loses nothing it had, and says what happened."""

from __future__ import annotations

import json
import signal
import time

import pytest

from ser_stream.events import validator_for
from tests import pulse
from tests.conftest import clip_path
from tests.live import Subscriber, free_endpoint, start_daemon

virtual_mic = pulse.virtual_mic


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def status_with(subscriber: Subscriber, state: str) -> dict | None:
    return next((event for event in subscriber.of("status") if event["state"] == state), None)


@pytest.mark.slow
def test_device_unplugged_mid_utterance_is_flushed_reported_and_reopened(virtual_mic, ravdess):
    endpoint = free_endpoint()
    subscriber = Subscriber(endpoint)
    daemon = start_daemon("--device", virtual_mic.device, endpoint=endpoint)
    try:
        assert json.loads(daemon.stdout.readline())["state"] == "started"
        wait_until(  # PulseAudio takes a moment to start the stream
            lambda: any(s["counters"]["frames_captured"] for s in subscriber.of("status")), 15, "audio flowing"
        )
        player = virtual_mic.start_playing(clip_path(ravdess, 3, 1, intensity=2))
        time.sleep(2.3)  # into the speech (about 1.0-3.0 s of the clip)
        virtual_mic.unplug()
        player.wait(30)
        lost = wait_until(lambda: status_with(subscriber, "device lost"), 15, "a 'device lost' status")
        time.sleep(1.0)  # a few reopen attempts fail meanwhile
        virtual_mic.plug_in()
        back = wait_until(lambda: status_with(subscriber, "device back"), 30, "a 'device back' status")
        virtual_mic.play(clip_path(ravdess, 6, 2, intensity=2))
        wait_until(lambda: len(subscriber.of("emotion")) >= 2, 15, "an event after the device came back")
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=10)
    finally:
        if daemon.poll() is None:
            virtual_mic.plug_in()
            daemon.kill()
        subscriber.close()
    assert daemon.returncode == 0, stderr
    flushed, after = subscriber.of("emotion")[:2]
    assert flushed["seq"] < lost["seq"] < back["seq"] < after["seq"]  # the cut utterance came first
    assert 0.5 <= flushed["duration_s"] < 2.5
    assert lost["message"].startswith(f'input device "{virtual_mic.device}"')
    assert back["message"].startswith(f"{virtual_mic.device} is back after ")
    assert after["start_s"] > flushed["end_s"] + 1.0  # stream time went on across the gap
    for topic in ("emotion", "status"):
        validator = validator_for(topic)
        for event in subscriber.of(topic):
            validator.validate(event)
    assert "Traceback" not in stderr and "reopening it" in stderr
