"""Audio sources: files tile into exact blocks at the right pace; the microphone path really captures.

The microphone tests run PortAudio against a PulseAudio virtual microphone (tests/pulse.py)
and check that a RAVDESS clip played into it comes out of MicSource intact.
"""

from __future__ import annotations

import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import sounddevice
import soundfile
from scipy.signal import correlate

from ser_stream import capture
from ser_stream.audio import load_audio, to_int16
from ser_stream.capture import (
    AudioBlock,
    FileSource,
    LossDetector,
    MicSource,
    list_input_devices,
    resolve_device,
)
from ser_stream.counters import Counters
from ser_stream.errors import AudioError, DeviceError, DeviceLostError, UserError
from testkit.live import clip_path
from tests.conftest import speech_like
from tests.test_audio import bad_files

RATE = 16000
BLOCK = 480  # 30 ms at 16 kHz


def read_all(source: FileSource) -> list[AudioBlock]:
    blocks = []
    while (block := source.read(5.0)) is not None:
        blocks.append(block)
    return blocks


def write_clip(path, seconds: float, rate: int = RATE):
    soundfile.write(path, speech_like(seconds, rate), rate, subtype="PCM_16")
    return path


# -- FileSource ---------------------------------------------------------------------------------


def test_file_blocks_tile_the_file_exactly(tmp_path):
    path = write_clip(tmp_path / "clip.wav", 1.01)
    source = FileSource(path, sample_rate=RATE, block_ms=30)
    assert (source.name, source.sample_rate, source.finished) == (str(path), RATE, False)
    source.start()
    blocks = read_all(source)

    expected = to_int16(load_audio(path, RATE))
    assert expected.size == 16160
    assert all(block.samples.dtype == np.int16 and block.samples.ndim == 1 for block in blocks)
    assert [block.samples.size for block in blocks] == [BLOCK] * 33 + [320]
    assert [block.start for block in blocks] == [BLOCK * i for i in range(34)]
    np.testing.assert_array_equal(np.concatenate([block.samples for block in blocks]), expected)
    assert source.finished
    assert source.read(0.1) is None
    assert source.counters() == Counters(frames_captured=16160)  # frames lost, overflows, queue drops, depth: 0
    source.stop()


def test_finished_turns_true_with_the_last_block(tmp_path):
    source = FileSource(write_clip(tmp_path / "clip.wav", 0.06), block_ms=30)
    source.start()
    assert source.read(1.0).start == 0 and not source.finished
    assert source.read(1.0).start == BLOCK and source.finished


def reads(detector, seconds, block_s=0.03, drift=0.0, latency_jitter_s=0.01, seed=0):
    """Feed ``detector`` the reads of a live input: each block's audio arrives block_s after the last
    (on a card clock ``drift`` fast), seen a random bit late.  Returns the lost frames it reports."""
    rng = np.random.default_rng(seed)
    lost, delivered, clock = [], 0, 0.0
    for _ in range(round(seconds / block_s)):
        clock += block_s / (1 + drift)
        delivered += round(block_s * RATE)
        found = detector.lost_frames(clock + rng.uniform(0, latency_jitter_s), delivered)
        delivered += found
        lost.append(found)
    return lost, clock, delivered


def test_the_loss_detector_finds_a_gap_once_and_nothing_in_drift_or_jitter():
    quiet, _, _ = reads(LossDetector(RATE, 0.0), 3600, drift=200e-6)  # an hour, a card 200 ppm fast
    assert sum(quiet) == 0
    quiet, _, _ = reads(LossDetector(RATE, 0.0), 3600, drift=-200e-6, seed=1)  # and one 200 ppm slow
    assert sum(quiet) == 0
    detector = LossDetector(RATE, 0.0)
    _, clock, delivered = reads(detector, 10)
    after_gap = clock + 2.0 + 0.03  # two seconds of audio never arrived
    found = detector.lost_frames(after_gap, delivered + 480)
    assert abs(found - 2 * RATE) <= 0.02 * RATE
    assert detector.lost_frames(after_gap + 0.03, delivered + 480 + found + 480) == 0  # reported once


def test_read_before_start_is_a_programming_error(tmp_path):
    with pytest.raises(RuntimeError):
        FileSource(write_clip(tmp_path / "clip.wav", 0.1)).read(0.1)


def test_fast_file_is_not_paced_and_stamps_read_time(tmp_path):
    source = FileSource(write_clip(tmp_path / "clip.wav", 1.0), realtime=False)
    source.start()
    began = time.monotonic()
    blocks = read_all(source)
    elapsed = time.monotonic() - began
    assert elapsed < 0.5
    assert all(began <= block.captured_at <= began + elapsed for block in blocks)


def test_realtime_file_is_paced_at_wall_clock_rate(tmp_path):
    source = FileSource(write_clip(tmp_path / "clip.wav", 1.0), realtime=True)
    began = time.monotonic()
    source.start()
    assert source.read(0.0) is None  # the first block is not due for 30 ms
    assert source.counters().frames_captured == 0
    blocks = read_all(source)
    elapsed = time.monotonic() - began
    assert elapsed >= 0.9
    assert [block.start for block in blocks][:2] == [0, BLOCK]
    assert sum(block.samples.size for block in blocks) == RATE
    stamps = [block.captured_at for block in blocks]
    assert stamps == sorted(stamps)
    assert stamps[-1] - began == pytest.approx(1.0, abs=0.05)  # the due time of the last sample


def test_stereo_44k_file_is_downmixed_and_resampled(tmp_path):
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, np.zeros_like(left)], axis=1), 44100, subtype="PCM_16")
    for rate in (16000, 48000):
        source = FileSource(path, sample_rate=rate)
        source.start()
        samples = np.concatenate([block.samples for block in read_all(source)])
        assert samples.size == rate
        assert np.abs(samples).max() == pytest.approx(0.25 * 32767, rel=0.05)  # mean of a 0.5 tone and silence


def test_bad_files_raise_audio_error_on_opening_or_where_the_bad_data_is(tmp_path):
    for path, reason in bad_files(tmp_path).values():
        with pytest.raises(AudioError) as caught:
            source = FileSource(path)
            source.start()
            read_all(source)
        assert str(path) in str(caught.value) and reason in str(caught.value) and "\n" not in str(caught.value)


def test_samples_before_bad_data_are_streamed_first(tmp_path):
    samples = np.full(3 * RATE, 0.1, dtype=np.float32)
    samples[2 * RATE + 5] = np.nan
    path = tmp_path / "nan-at-2s.wav"
    soundfile.write(path, samples, RATE, subtype="FLOAT")
    source = FileSource(path, block_ms=10)
    source.start()
    blocks = []
    with pytest.raises(AudioError, match=r"NaN or infinite samples \(first at 2.00 s\)"):
        while (block := source.read(0.0)) is not None:
            blocks.append(block)
    assert sum(block.samples.size for block in blocks) >= int(FileSource.CHUNK_S * RATE)


def test_an_hour_long_file_streams_in_bounded_memory(tmp_path):
    path = tmp_path / "hour.wav"
    minute = (0.1 * np.sin(2 * np.pi * 220 * np.arange(60 * 48000) / 48000)).astype(np.float32)
    with soundfile.SoundFile(path, "w", 48000, 1, subtype="PCM_16") as out:
        for _ in range(60):
            out.write(minute)
    tracemalloc.start()
    try:
        source = FileSource(path, sample_rate=16000)
        source.start()
        total = 0
        while (block := source.read(0.0)) is not None:
            total += block.samples.size
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        source.stop()
    assert total == pytest.approx(3600 * 16000, abs=16)
    assert peak < 5_000_000  # a few chunks in flight, not the 115 MB the hour holds at 16 kHz


# -- device resolution --------------------------------------------------------------------------

FAKE_DEVICES = [
    {"index": 0, "name": "HDA Intel PCH: ALC257 Analog (hw:0,0)", "is_default": False},
    {"index": 3, "name": "USB Audio Device: - (hw:1,0)", "is_default": False},
    {"index": 5, "name": "pulse", "is_default": False},
    {"index": 6, "name": "pulse monitor", "is_default": False},
    {"index": 7, "name": "default", "is_default": True},
]


@pytest.fixture
def fake_devices(monkeypatch):
    devices = [dict(device, default_samplerate=44100.0, max_input_channels=2) for device in FAKE_DEVICES]
    monkeypatch.setattr(capture, "list_input_devices", lambda: devices)
    return devices


def test_resolve_device_by_index_name_or_unique_substring(fake_devices):
    assert resolve_device(None) is None  # PortAudio's default
    assert resolve_device(3) == resolve_device("3") == 3
    assert resolve_device("pulse") == 5  # exact name beats the substring of "pulse monitor"
    assert resolve_device("usb audio") == 3
    assert resolve_device("MONITOR") == 6
    fake_devices[-1]["is_default"] = False
    assert resolve_device(None) == 0  # no default: the first input device


@pytest.mark.parametrize(
    "device,message",
    [
        (1, "no input device with index 1"),
        ("nowhere", 'no input device matches "nowhere"'),
        ("hw:", 'input device "hw:" is ambiguous: 0 "HDA Intel'),
    ],
)
def test_resolve_device_errors_are_one_line(fake_devices, device, message):
    with pytest.raises(UserError) as caught:
        resolve_device(device)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_no_input_devices_suggests_a_file_source(monkeypatch):
    monkeypatch.setattr(capture, "list_input_devices", list)
    for device in (None, "pulse", 0):
        with pytest.raises(UserError, match="--source FILE"):
            resolve_device(device)


# -- MicSource on the PulseAudio virtual microphone ---------------------------------------------


def read_seconds(source: MicSource, seconds: float, blocks: list[AudioBlock], patience: float = 15.0) -> None:
    """Append blocks to ``blocks`` until ``seconds`` more audio arrived (the machine may be slow)."""
    wanted = sum(block.samples.size for block in blocks) + seconds * source.sample_rate
    deadline = time.monotonic() + patience + seconds
    while sum(block.samples.size for block in blocks) < wanted:
        assert time.monotonic() < deadline, "the virtual microphone delivered no audio"
        if (block := source.read(0.5)) is not None:
            blocks.append(block)


def block_rms(samples: np.ndarray, size: int = BLOCK) -> np.ndarray:
    frames = samples[: samples.size // size * size].astype(np.float64).reshape(-1, size)
    return np.sqrt((frames**2).mean(axis=1))


def test_virtual_mic_is_listed_and_resolvable(virtual_mic):
    devices = {device["name"]: device for device in list_input_devices()}
    assert virtual_mic.device in devices
    device = devices[virtual_mic.device]
    assert device["max_input_channels"] >= 1 and device["default_samplerate"] > 0
    assert resolve_device(virtual_mic.device) == device["index"]
    assert sum(device["is_default"] for device in devices.values()) <= 1


def test_mic_captures_what_is_played(virtual_mic, ravdess):
    clip = clip_path(ravdess, emotion=5, actor=1, intensity=2)
    source = MicSource(virtual_mic.device, sample_rate=RATE, block_ms=30)
    assert (source.name, source.sample_rate, source.finished) == (virtual_mic.device, RATE, False)
    blocks: list[AudioBlock] = []
    source.start()
    try:
        read_seconds(source, 0.5, blocks)  # silence before the clip
        lead = sum(block.samples.size for block in blocks)
        with ThreadPoolExecutor(1) as pool:
            playing = pool.submit(virtual_mic.play, clip)
            while not playing.done():
                if (block := source.read(0.5)) is not None:
                    blocks.append(block)
            playing.result()
        read_seconds(source, 0.5, blocks)
    finally:
        began = time.monotonic()
        source.stop()
        stop_took = time.monotonic() - began
    source.stop()  # harmless twice
    while (block := source.read(0.1)) is not None:  # blocks captured before stop() stay readable
        blocks.append(block)
    assert stop_took < 2.0

    counters = source.counters()
    assert counters.queue_drops == 0 and counters.queue_depth == 0 and counters.overflows >= 0
    assert counters.frames_captured == sum(block.samples.size for block in blocks)
    assert all(block.samples.dtype == np.int16 and block.samples.shape == (BLOCK,) for block in blocks)
    assert [block.start for block in blocks] == [BLOCK * i for i in range(len(blocks))]
    stamps = [block.captured_at for block in blocks]
    assert stamps == sorted(stamps) and stamps[-1] <= time.monotonic()

    recorded = np.concatenate([block.samples for block in blocks]).astype(np.float64)
    played = to_int16(load_audio(clip, RATE)).astype(np.float64)
    # the clip is in there, nearly unchanged (PulseAudio resamples 16 kHz → 44.1 kHz → 16 kHz)
    scores = correlate(recorded, played, mode="valid", method="fft")
    lag = int(np.argmax(scores))
    window = recorded[lag : lag + played.size]
    similarity = scores[lag] / (np.linalg.norm(window) * np.linalg.norm(played))
    assert similarity > 0.9, f"best match {similarity:.2f} at {lag / RATE:.2f} s"
    assert lag >= lead, "the clip cannot be heard before it was played"
    # and its loud part rises far above the silence floor for about as long as in the clip
    floor = block_rms(recorded[:lead]).max()
    loud_recorded = block_rms(recorded) > 0.1 * block_rms(recorded).max()
    loud_played = block_rms(played) > 0.1 * block_rms(played).max()
    assert block_rms(recorded).max() > 100 * max(floor, 1.0)
    assert abs(int(loud_recorded.sum()) - int(loud_played.sum())) <= max(3, 0.15 * loud_played.sum())


def test_mic_falls_back_to_48k_when_the_device_refuses_the_rate(virtual_mic, monkeypatch):
    real_check = sounddevice.check_input_settings

    def refuse_16k(*args, samplerate=None, **kwargs):
        if samplerate == 16000:
            raise sounddevice.PortAudioError("Invalid sample rate")
        return real_check(*args, samplerate=samplerate, **kwargs)

    monkeypatch.setattr(sounddevice, "check_input_settings", refuse_16k)
    source = MicSource(virtual_mic.device, sample_rate=16000, block_ms=30)
    assert source.sample_rate == 48000
    source.start()
    try:
        block = source.read(15.0)
    finally:
        source.stop()
    assert block is not None and block.samples.shape == (1440,)


def test_mic_rate_nobody_accepts_is_a_user_error(virtual_mic, monkeypatch):
    def refuse(*args, **kwargs):
        raise sounddevice.PortAudioError("Invalid sample rate")

    monkeypatch.setattr(sounddevice, "check_input_settings", refuse)
    with pytest.raises(UserError, match=r"16000 Hz.*48000 Hz") as caught:
        MicSource(virtual_mic.device)
    assert "\n" not in str(caught.value)


def test_unknown_mic_is_a_user_error(virtual_mic):
    with pytest.raises(UserError, match="no input device matches"):
        MicSource("no such microphone")


def test_lost_device_is_reported_and_can_be_reopened(virtual_mic):
    source = MicSource(virtual_mic.device, sample_rate=RATE)
    source.start()
    try:
        first = source.read(15.0)
        assert first is not None
        virtual_mic.stop_server()  # the sound server dies under the open stream
        try:
            with pytest.raises(DeviceLostError, match=r"stopped delivering audio|delivered no audio"):
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    source.read(0.5)
        finally:
            virtual_mic.start_server()
        frames = source.counters().frames_captured
        source.reopen()
        block = source.read(15.0)
        assert block is not None and block.start > frames  # offsets skip the time the device was away
        stream_time = (block.start - first.start) / RATE
        assert abs(stream_time - (block.captured_at - first.captured_at)) < 0.3, stream_time  # wall time
    finally:
        source.stop()


def test_an_unplugged_device_cannot_be_reopened_until_it_is_back(virtual_mic):
    source = MicSource(virtual_mic.device, sample_rate=RATE)
    source.start()
    try:
        assert source.read(15.0) is not None
        virtual_mic.unplug()
        try:
            with pytest.raises(DeviceLostError):
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    source.read(0.5)
            with pytest.raises(DeviceError) as refused:
                source.reopen()
            assert "\n" not in str(refused.value)
        finally:
            virtual_mic.plug_in()
        source.reopen()
        assert source.read(15.0) is not None
    finally:
        source.stop()
