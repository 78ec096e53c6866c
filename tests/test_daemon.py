"""`ser-stream run` end to end: a real subprocess, a real SUB socket, real RAVDESS clips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import datetime

import librosa
import numpy as np
import pytest
import soundfile

from ser_stream.events import validator_for
from testkit.live import (
    RATE,
    STREAM_CLIPS,
    JsonPrinter,
    Lines,
    Subscriber,
    build_stream,
    cli_executable,
    clip_path,
    free_endpoint,
    start_daemon,
    wait_for_audio,
    wait_until,
)
from tests.conftest import run_cli


@pytest.mark.slow
def test_one_event_per_clip_none_in_silence(ravdess, tmp_path):
    stream = tmp_path / "stream.wav"
    bounds = build_stream(ravdess, stream)
    endpoint = free_endpoint()
    subscriber = Subscriber(endpoint)
    try:
        daemon = start_daemon("--source", str(stream), "--no-realtime", "--wait-subscriber", "10", endpoint=endpoint)
        stdout, stderr = daemon.communicate(timeout=120)
        wait_until(subscriber.stopped, 10, "the final status")
    finally:
        subscriber.close()
    assert daemon.returncode == 0, stderr
    assert "Traceback" not in stderr

    emotions = subscriber.of("emotion")
    assert len(emotions) == len(bounds), [(e["start_s"], e["end_s"]) for e in emotions]
    for event, (speech_start, speech_end) in zip(emotions, bounds, strict=True):
        assert abs(event["start_s"] - speech_start) <= 0.3, (event["start_s"], speech_start)
        assert abs(event["end_s"] - speech_end) <= 0.3, (event["end_s"], speech_end)
        assert event["source"] == str(stream)
        assert event["latency_ms"] >= 0

    validators = {topic: validator_for(topic) for topic, _ in subscriber.messages}
    for topic, event in subscriber.messages:
        validators[topic].validate(event)
    seqs = [event["seq"] for _, event in subscriber.messages]
    assert seqs == sorted(set(seqs)) and seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    statuses = subscriber.of("status")
    assert statuses[-1]["state"] == "stopping"
    assert statuses[-1]["counters"]["events_published"] >= len(bounds)
    assert statuses[-1]["counters"]["utterances"] == len(bounds)

    printed = [json.loads(line) for line in stdout.splitlines()]
    assert [e for e in printed if e["schema"].startswith("ser-stream.emotion") and e["final"]] == emotions


@pytest.mark.slow
def test_sigterm_mid_utterance_still_publishes_it(ravdess, tmp_path):
    long_speech = tmp_path / "long.wav"
    clips = [soundfile.read(clip_path(ravdess, code, 4, intensity=2), dtype="float32")[0] for code in (2, 3, 6, 7)]
    soundfile.write(long_speech, np.concatenate(clips), RATE)
    _, (speech_start, _) = librosa.effects.trim(clips[0], top_db=30)
    endpoint = free_endpoint()
    subscriber = Subscriber(endpoint)
    try:
        daemon = start_daemon(
            *("--source", str(long_speech), "--realtime", "--max-utterance-ms", "30000", "--heartbeat-s", "0.2"),
            endpoint=endpoint,
        )
        started = daemon.stdout.readline()
        assert json.loads(started)["state"] == "started"
        printed = Lines(daemon.stdout)

        def heard() -> int:  # samples read by the daemon, as its latest heartbeat says
            statuses = [json.loads(line) for line in list(printed.lines) if '"ser-stream.status/1"' in line]
            return statuses[-1]["counters"]["frames_captured"] if statuses else 0

        wait_until(lambda: heard() >= speech_start + RATE, 30, "the daemon a second into the first clip's speech")
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(5)
        stdout, stderr = started + printed.text(), daemon.stderr.read()
    finally:
        if daemon.poll() is None:
            daemon.kill()
        subscriber.close()
    assert daemon.returncode == 0, stderr
    emotions = [json.loads(line) for line in stdout.splitlines() if '"final": true' in line]
    assert len(emotions) == 1
    assert 1.0 < emotions[0]["end_s"] < 4.0
    assert json.loads(stdout.splitlines()[-1])["state"] == "stopping"


@pytest.mark.slow
def test_microphone_capture_through_a_pulseaudio_virtual_mic(virtual_mic, ravdess, tmp_path):
    """The real capture path: PortAudio → capture thread → queue → daemon, fed by paplay."""
    clips = STREAM_CLIPS[:3]
    stream = tmp_path / "stream.wav"
    build_stream(ravdess, stream, clips, gap_s=1.0)  # silence between utterances, longer than the hangover
    endpoint = free_endpoint()
    subscriber = Subscriber(endpoint)
    try:
        daemon = start_daemon("--device", virtual_mic.device, endpoint=endpoint)
        started = json.loads(daemon.stdout.readline())
        assert started["state"] == "started" and started["source"] == virtual_mic.device
        wait_for_audio(subscriber)
        virtual_mic.play(stream)
        wait_until(lambda: len(subscriber.of("emotion")) >= len(clips), 30, "an event per clip")
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=5)
        wait_until(subscriber.stopped, 10, "the final status")
    finally:
        if daemon.poll() is None:
            daemon.kill()
        subscriber.close()
    assert daemon.returncode == 0, stderr
    emotions = subscriber.of("emotion")
    assert len(emotions) == len(clips), [(e["start_s"], e["end_s"], e["label"]) for e in emotions]
    validator = validator_for("emotion")
    for event in emotions:
        validator.validate(event)
        assert event["source"] == virtual_mic.device and 1.0 < event["duration_s"] < 5.0
    final = subscriber.of("status")[-1]
    assert final["state"] == "stopping"
    assert final["counters"]["frames_captured"] > 3 * 16000 and final["counters"]["overflows"] == 0


def test_usage_and_input_errors_are_one_line(tmp_path, ravdess):
    endpoint = free_endpoint()
    clip = clip_path(ravdess, 2, 1)
    cases = [
        (["--source", str(tmp_path / "missing.wav")], 2, "no such file"),
        (["--source", str(tmp_path), "--no-realtime"], 2, "directory"),
        (["--model", str(tmp_path / "nope.npz"), "--source", str(tmp_path)], 3, "no such file"),
        (["--publish", "nonsense", "--source", str(clip)], 4, "nonsense"),
        (["--vad-aggressiveness", "7", "--source", str(clip)], 2, "--vad-aggressiveness"),
        (["--hangover-ms", "0", "--source", str(clip)], 2, "--hangover-ms"),
        (["--max-utterance-ms", "100", "--source", str(clip)], 78, "max_utterance_ms"),
        ([], 5, "--source FILE"),  # no sound server reachable: no input device at all
    ]
    no_sound_server = {**os.environ, "PULSE_SERVER": "unix:/nonexistent/pulse"}
    for args, code, message in cases:
        result = subprocess.run(
            [cli_executable(), "run", "--publish", endpoint, *args],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env=no_sound_server,
        )
        assert result.returncode == code, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr


def test_devices_lists_the_virtual_mic(virtual_mic):
    result = subprocess.run(
        [cli_executable(), "devices"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    assert any(f"  {virtual_mic.device}  (" in row for row in rows)
    assert all(row[1:5].strip().isdigit() and "Hz" in row for row in rows)


def test_devices_without_any_input_device_is_one_line_and_exit_5(tmp_path):
    """ALSA with only an absent card, and no sound server: PortAudio finds no input device, as on a
    machine without one; the exit code is the README's for "no input device", as for `run`."""
    alsa = tmp_path / "asound.conf"
    alsa.write_text("pcm.absent { type hw card 99 }\n")
    env = {**os.environ, "ALSA_CONFIG_PATH": str(alsa), "PULSE_SERVER": "unix:/nonexistent/pulse"}
    result = subprocess.run(
        [cli_executable(), "devices"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=env
    )
    assert result.returncode == 5
    assert len(result.stderr.splitlines()) == 1 and "--source FILE" in result.stderr


@pytest.mark.slow
def test_subscribe_prints_the_daemons_events_as_json_lines(ravdess, tmp_path):
    stream = tmp_path / "stream.wav"
    build_stream(ravdess, stream, STREAM_CLIPS[:2])
    endpoint = free_endpoint()
    subscriber = JsonPrinter([cli_executable(), "subscribe", endpoint, "--topic", "emotion"])
    try:
        daemon = start_daemon("--source", str(stream), "--no-realtime", "--wait-subscriber", "20", endpoint=endpoint)
        daemon_out, _ = daemon.communicate(timeout=120)
        wait_until(lambda: len(subscriber.events()) >= 2, 10, "the two emotion events")
    finally:
        received = subscriber.stop(signal.SIGINT)
    printed = [json.loads(line) for line in daemon_out.splitlines() if '"final": true' in line]
    assert received[:2] == printed
    assert subscriber.process.returncode == 130 and "Traceback" not in subscriber.process.stderr.read()


def test_timestamps_of_a_file_read_faster_than_real_time_keep_the_order_events_are_sent_in(ravdess, tmp_path):
    """With --no-realtime, stream start + end_s lies in the future: the emotion events' timestamps
    came after the final `stopping` status's."""
    stream = tmp_path / "stream.wav"
    build_stream(ravdess, stream, STREAM_CLIPS[:3], gap_s=1.5)  # about 15 s of audio, read in well under that
    result = run_cli("run", "--source", str(stream), "--no-realtime", "--print", "--publish", free_endpoint())
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    stamps = [datetime.fromisoformat(event["timestamp"]) for event in events]
    assert [event.get("final") for event in events].count(True) == 3
    assert events[0]["state"] == "started" and events[-1]["state"] == "stopping"
    assert stamps == sorted(stamps)  # started ≤ each emotion ≤ stopping, in the order sent
