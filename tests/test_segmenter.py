"""The VAD segmenter on synthetic streams: real webrtcvad, speech-like tone bursts between silences."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
import webrtcvad

from ser_stream import segmenter as segmenter_module
from ser_stream.audio import to_int16
from ser_stream.segmenter import FLOOR_WARMUP_MS, FLOOR_WINDOW_MS, SILENT_DBFS, Segmenter, SegmenterConfig, Utterance
from testkit.noisy import babble_pool, overlapping, voice_stream
from tests.conftest import speech_like
from train.rooms import babble, mix_at_snr, pink_noise

#: How far an utterance's bounds may land from the true burst bounds (pre-roll, tail, frame rounding).
TOLERANCE_S = 0.3


def noise(seconds: float, rate: int, level: float, seed: int = 0) -> np.ndarray:
    """White noise of standard deviation `level` (full scale 1.0), as int16."""
    return to_int16(level * np.random.default_rng(seed).standard_normal(int(seconds * rate)))


def stream(rate: int, *pieces: tuple[str, float], floor: float = 0.0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Concatenate ("speech" | "silence", seconds) pieces; return the int16 stream and the speech bounds.

    Silence is digital zeros unless `floor` gives it a noise level, like a real microphone's.
    """
    parts, bursts, position = [], [], 0
    for index, (kind, seconds) in enumerate(pieces):
        if kind == "speech":
            part = to_int16(speech_like(seconds, rate, seed=index))
            bursts.append((position, position + part.size))
        else:
            part = noise(seconds, rate, level=floor, seed=index)
        parts.append(part)
        position += part.size
    return np.concatenate(parts), bursts


def segment(samples: np.ndarray, config: SegmenterConfig | None = None) -> tuple[list[Utterance], Segmenter]:
    segmenter = Segmenter(config or SegmenterConfig())
    return segmenter.feed(samples) + segmenter.flush(), segmenter


def assert_hugs(utterances: list[Utterance], bursts: list[tuple[int, int]], rate: int) -> None:
    """One utterance per burst, bounds within TOLERANCE_S of the burst's."""
    assert len(utterances) == len(bursts)
    for utterance, (start, end) in zip(utterances, bursts, strict=True):
        assert abs(utterance.start - start) <= TOLERANCE_S * rate
        assert abs(utterance.end - end) <= TOLERANCE_S * rate
        assert utterance.start <= start and utterance.end >= end  # pre-roll and tail keep the soft edges


def assert_exact_audio(utterances: list[Utterance], samples: np.ndarray) -> None:
    for utterance in utterances:
        assert utterance.samples.dtype == np.int16
        np.testing.assert_array_equal(utterance.samples, samples[utterance.start : utterance.end])
        assert utterance.start < utterance.end <= utterance.closed_at


def as_tuples(utterances: list[Utterance]) -> list[tuple]:
    return [(u.start, u.end, u.closed_at, u.cut, u.samples.tobytes()) for u in utterances]


# -- the synthetic signals mean what the tests assume -------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 48000])
def test_webrtcvad_calls_the_synthetic_speech_speech_and_the_noise_floor_not(rate: int) -> None:
    vad, frame = webrtcvad.Vad(3), rate * 30 // 1000

    def voiced_fraction(samples: np.ndarray) -> float:
        frames = samples[: samples.size // frame * frame].reshape(-1, frame)
        return float(np.mean([vad.is_speech(f.tobytes(), rate) for f in frames]))

    assert voiced_fraction(to_int16(speech_like(2.0, rate))) > 0.95
    assert voiced_fraction(noise(2.0, rate, level=0.01)) < 0.1


# -- detection and bounds ------------------------------------------------------------------------

PIECES = (("silence", 1.0), ("speech", 1.5), ("silence", 0.8), ("speech", 0.7), ("silence", 1.2), ("speech", 2.3))


def test_one_utterance_per_burst_hugging_its_bounds() -> None:
    samples, bursts = stream(16000, *PIECES, ("silence", 1.0))
    segmenter = Segmenter()
    utterances = segmenter.feed(samples)
    assert_hugs(utterances, bursts, 16000)
    assert_exact_audio(utterances, samples)
    assert not any(u.cut for u in utterances)
    # The onset is found to the frame: start is the burst start minus the pre-roll.
    pre_roll = SegmenterConfig().pre_roll_ms * 16
    for utterance, (start, _) in zip(utterances, bursts, strict=True):
        assert abs(utterance.start - (start - pre_roll)) <= 480
    assert segmenter.flush() == []
    assert (segmenter.emitted, segmenter.dropped_short) == (3, 0)


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
@pytest.mark.parametrize("rate", [8000, 16000, 32000, 48000])
def test_every_rate_and_frame_size(rate: int, frame_ms: int) -> None:
    samples, bursts = stream(rate, *PIECES, ("silence", 1.0), floor=0.001)
    utterances, _ = segment(samples, SegmenterConfig(sample_rate=rate, frame_ms=frame_ms))
    assert_hugs(utterances, bursts, rate)
    assert_exact_audio(utterances, samples)


def test_silence_gives_nothing() -> None:
    utterances, segmenter = segment(np.zeros(5 * 16000, np.int16))
    assert utterances == []
    assert (segmenter.emitted, segmenter.dropped_short) == (0, 0)


def test_a_faint_noise_floor_gives_nothing() -> None:
    utterances, segmenter = segment(noise(5.0, 16000, level=0.001))
    assert utterances == []
    # webrtcvad labels the first ~90 ms of a fresh noise floor voiced while its noise estimate
    # adapts; that can trigger, and the minimum length then drops it.
    assert segmenter.dropped_short <= 1


def test_low_level_noise_gives_nothing_at_aggressiveness_3() -> None:
    utterances, segmenter = segment(noise(10.0, 16000, level=0.01), SegmenterConfig(aggressiveness=3))
    assert utterances == []
    assert segmenter.dropped_short == 0


def test_speech_at_the_very_start_and_the_very_end_of_the_stream() -> None:
    samples, bursts = stream(16000, ("speech", 1.2), ("silence", 1.0), ("speech", 1.0123))
    segmenter = Segmenter()
    first = segmenter.feed(samples)
    assert len(first) == 1 and first[0].start == 0  # the pre-roll clamps at the stream start
    assert segmenter.in_speech  # the second burst is still open when the audio stops
    last = segmenter.flush()
    assert len(last) == 1
    # flush emits it, including the partial frame still buffered: the speech runs to the last sample.
    assert last[0].end == last[0].closed_at == samples.size
    assert not last[0].cut
    assert_hugs(first + last, bursts, 16000)
    assert_exact_audio(first + last, samples)


def test_utterances_never_overlap_when_the_pre_roll_reaches_back() -> None:
    config = SegmenterConfig(pre_roll_ms=500)
    samples, bursts = stream(16000, ("silence", 1.0), ("speech", 1.0), ("silence", 0.5), ("speech", 1.0))
    utterances, _ = segment(samples, config)
    assert len(utterances) == 2
    assert utterances[0].end > bursts[1][0] - 8000  # the next onset minus 500 ms lands inside the first
    assert utterances[1].start == utterances[0].end  # so its pre-roll is clamped there
    assert_exact_audio(utterances, samples)


# -- length limits -------------------------------------------------------------------------------


def test_a_monologue_longer_than_max_is_cut_into_contiguous_windows() -> None:
    config = SegmenterConfig(max_utterance_ms=1000)
    # 3.3 s of speech + pre-roll + tail: three full windows, then the hangover ends the fourth.
    samples, [(start, end)] = stream(16000, ("silence", 1.0), ("speech", 3.3), ("silence", 1.0))
    utterances, segmenter = segment(samples, config)
    assert [u.cut for u in utterances] == [True, True, True, False]
    assert all(u.end - u.start == 16000 for u in utterances[:-1])
    assert all(a.end == b.start for a, b in pairwise(utterances))  # no gap, no overlap
    assert utterances[0].start <= start and utterances[-1].end >= end
    assert_hugs([replace(utterances[0], end=utterances[-1].end)], [(start, end)], 16000)
    assert_exact_audio(utterances, samples)
    assert segmenter.emitted == 4


def test_a_window_cut_off_during_the_hangover_leaves_no_empty_utterance() -> None:
    # 1.55 s of speech plus 200 ms pre-roll reach max 2 s while the trailing silence is being timed.
    config = SegmenterConfig(max_utterance_ms=2000)
    samples, bursts = stream(16000, ("silence", 1.0), ("speech", 1.55), ("silence", 1.0))
    utterances, segmenter = segment(samples, config)
    assert [u.cut for u in utterances] == [True]
    assert_hugs(utterances, bursts, 16000)
    assert (segmenter.emitted, segmenter.dropped_short) == (1, 0)


def test_windows_shorter_than_the_pre_roll_still_tile_the_speech() -> None:
    # At the onset the pre-roll alone already exceeds max: several windows are due at once.
    config = SegmenterConfig(max_utterance_ms=300, pre_roll_ms=500, min_utterance_ms=0)
    samples, [(start, end)] = stream(16000, ("silence", 1.0), ("speech", 1.0), ("silence", 1.0))
    utterances, _ = segment(samples, config)
    assert all(u.end - u.start == 4800 and u.cut for u in utterances)
    assert all(a.end == b.start for a, b in pairwise(utterances))
    assert utterances[0].start <= start - 8000 + 480 and utterances[-1].end >= end
    assert_exact_audio(utterances, samples)


def test_utterances_shorter_than_min_are_dropped_and_counted() -> None:
    # min is measured on end - start, which includes the pre-roll and the tail.
    config = SegmenterConfig(min_utterance_ms=1000)
    blip, gap = ("speech", 0.2), ("silence", 0.8)
    samples, bursts = stream(16000, gap, blip, gap, blip, gap, ("speech", 1.5), gap, blip, gap)
    utterances, segmenter = segment(samples, config)
    assert_hugs(utterances, [bursts[2]], 16000)
    assert (segmenter.emitted, segmenter.dropped_short) == (1, 3)


# -- streaming -----------------------------------------------------------------------------------


def test_feeding_random_chunks_gives_the_same_utterances_as_feeding_the_whole_stream() -> None:
    # A short max makes cuts happen and a small tape, so compaction runs many times.
    config = SegmenterConfig(max_utterance_ms=1000, frame_ms=20)
    samples, _ = stream(16000, *PIECES, ("silence", 0.4), ("speech", 0.9))
    whole, _ = segment(samples, config)
    assert any(u.cut for u in whole)
    rng = np.random.default_rng(7)
    for high in (7, 500, 5000, 60000):
        segmenter, chunked, offset = Segmenter(config), [], 0
        while offset < samples.size:
            size = int(rng.integers(0, high))  # empty chunks included
            chunked += segmenter.feed(samples[offset : offset + size])
            offset += size
            assert segmenter.position == min(offset, samples.size)
        chunked += segmenter.flush()
        assert as_tuples(chunked) == as_tuples(whole)


def test_flush_starts_a_new_stream_and_keeps_the_counters() -> None:
    samples, _ = stream(16000, ("silence", 0.5), ("speech", 1.0), ("silence", 1.0))
    segmenter = Segmenter()
    first = segmenter.feed(samples) + segmenter.flush()
    assert (segmenter.position, segmenter.in_speech) == (0, False)
    second = segmenter.feed(samples) + segmenter.flush()
    assert as_tuples(second) == as_tuples(first) and len(first) == 1
    assert segmenter.emitted == 2


def test_in_speech_and_position_follow_the_stream() -> None:
    samples, [(start, _)] = stream(16000, ("silence", 1.0), ("speech", 1.0), ("silence", 1.0))
    segmenter = Segmenter()
    segmenter.feed(samples[: start + 4800])
    assert segmenter.in_speech and segmenter.position == start + 4800
    segmenter.feed(samples[start + 4800 :])
    assert not segmenter.in_speech and segmenter.position == samples.size


def test_utterance_times_in_seconds() -> None:
    utterance = Utterance(np.zeros(8000, np.int16), 16000, 24000, 16000, closed_at=30000, cut=False)
    assert (utterance.start_s, utterance.end_s, utterance.duration_s) == (1.0, 1.5, 0.5)
    assert not Segmenter().feed(np.zeros(0, np.int16))


def test_emitted_samples_are_read_only_copies() -> None:
    samples, _ = stream(16000, ("speech", 1.0), ("silence", 1.0))
    [utterance], _ = segment(samples)
    assert not utterance.samples.flags.writeable
    assert not np.shares_memory(utterance.samples, samples)


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sample_rate", 44100),
        ("sample_rate", 16000.0),
        ("frame_ms", 25),
        ("aggressiveness", 4),
        ("aggressiveness", -1),
        ("aggressiveness", True),
        ("pre_roll_ms", -10),
        ("hangover_ms", 0),
        ("min_utterance_ms", -1),
        ("max_utterance_ms", 200),  # below min_utterance_ms (500)
        ("max_utterance_ms", 10.5),
        ("trigger_ratio", 0.0),
        ("trigger_ratio", 1.5),
        ("trigger_ratio", float("nan")),
        ("trigger_ratio", "0.6"),
        ("gate_db", -1),
        ("gate_db", "35"),
        ("gate_db", float("nan")),
        ("noise_gate_db", -1),
        ("noise_gate_db", 121),
        ("noise_gate_db", "9"),
    ],
)
def test_bad_config_values_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        SegmenterConfig(**{field: value})


def test_config_accepts_the_edges_and_knows_its_frame_size() -> None:
    config = SegmenterConfig(sample_rate=8000, frame_ms=10, pre_roll_ms=0, min_utterance_ms=0, trigger_ratio=1)
    assert config.frame_samples == 80
    assert SegmenterConfig(sample_rate=48000).frame_samples == 1440


def test_a_tiny_trigger_ratio_still_needs_a_voiced_frame() -> None:
    utterances, _ = segment(np.zeros(16000, np.int16), SegmenterConfig(trigger_ratio=1e-12))
    assert utterances == []


@pytest.mark.parametrize("bad", [np.zeros(160, np.float32), np.zeros((160, 1), np.int16), b"\0" * 320])
def test_feed_rejects_anything_but_1d_int16(bad: object) -> None:
    with pytest.raises(ValueError, match="int16"):
        Segmenter().feed(bad)  # type: ignore[arg-type]


# -- the energy gate -------------------------------------------------------------------------------


def speech_at(seconds: float, rate: int, gain_db: float, seed: int) -> np.ndarray:
    return to_int16(speech_like(seconds, rate, seed=seed) * 10 ** (gain_db / 20))


def test_quiet_voiced_sound_around_speech_is_gated_out_of_the_bounds() -> None:
    """A murmur 28 dB below loud speech (webrtcvad alone calls it speech) stays outside the bounds."""
    rate, config = 16000, SegmenterConfig(gate_db=25)
    loud = speech_at(1.5, rate, 10, seed=1)  # about -7 dBFS
    before, after = speech_at(0.6, rate, -18, seed=2), speech_at(0.4, rate, -18, seed=3)  # about -35 dBFS
    zeros = np.zeros(rate, np.int16)
    samples = np.concatenate([zeros, before, loud, after, zeros])
    speech_start, speech_end = zeros.size + before.size, zeros.size + before.size + loud.size
    vad = webrtcvad.Vad(config.aggressiveness)
    frames = [before[i : i + 480].tobytes() for i in range(0, before.size - 479, 480)]
    assert sum(vad.is_speech(f, rate) for f in frames) > 0.8 * len(frames)

    gated, _ = segment(samples, config)
    assert len(gated) == 1
    assert abs(gated[0].start - speech_start) <= 0.3 * rate and abs(gated[0].end - speech_end) <= 0.3 * rate

    plain, _ = segment(samples, replace(config, gate_db=0))
    assert len(plain) == 1
    assert plain[0].start < speech_start - 0.4 * rate and plain[0].end > speech_end + 0.25 * rate


def test_the_gate_is_relative_so_quiet_talkers_are_still_heard() -> None:
    rate = 16000
    samples, bursts = stream(rate, ("silence", 1.0), ("speech", 1.5), ("silence", 1.0))
    quiet = (samples.astype(np.float32) * 10 ** (-15 / 20)).astype(np.int16)  # about -32 dBFS
    utterances, _ = segment(quiet)
    assert_hugs(utterances, bursts, rate)


# -- noise: the floor and the noise gate -----------------------------------------------------------


def in_noise(samples: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    return to_int16(mix_at_snr(samples.astype(np.float32) / 32768, noise, snr_db))


@pytest.mark.parametrize("snr_db", [20, 10])
def test_utterances_close_in_loud_steady_pink_noise(snr_db: float) -> None:
    """Speech at about -17 dBFS and pink noise 20 or 10 dB below it, from 3 s before the first word:
    webrtcvad takes noise this loud for speech (at 10 dB, without the noise gate, the first utterance
    runs to max_utterance_ms); with the gate each burst is one utterance, and the only other one is
    webrtcvad's start-up in the first second of the stream."""
    samples, bursts = stream(16000, ("silence", 3.0), *PIECES[1:], ("silence", 1.0))
    noisy = in_noise(samples, pink_noise(samples.size, np.random.default_rng(1)), snr_db)
    utterances, _ = segment(noisy)
    assert not any(u.cut for u in utterances)
    assert all(u.end < 1.5 * 16000 for u in utterances[: len(utterances) - len(bursts)])
    assert_hugs(utterances[-len(bursts) :], bursts, 16000)
    if snr_db == 10:
        plain, _ = segment(noisy, SegmenterConfig(noise_gate_db=0))
        assert plain[0].cut


def test_a_voice_under_steady_pink_noise_is_found_and_the_noise_alone_opens_nothing(monkeypatch) -> None:
    """A harmonic voice with a pitch glide at about -30 dBFS (RAVDESS's level), 3 dB under pink noise that
    runs from 8 s before it (the rescue waits for noise that has been steady for a while): missed without
    the speech band rescue, found as one utterance with it; the noise alone opens only webrtcvad's
    start-up utterance, in the first two seconds."""
    rate = 16000
    voice = speech_like(2.0, rate, seed=4) * np.float32(10 ** (-30 / 20) / 0.1)
    clean = np.concatenate([np.zeros(8 * rate, np.float32), voice, np.zeros(2 * rate, np.float32)])
    noise = pink_noise(clean.size, np.random.default_rng(4))
    noisy = mix_at_snr(clean, noise, -3)
    late = 2 * rate  # after webrtcvad's start-up in the noise
    utterances, _ = segment(to_int16(noisy))
    found = [u for u in utterances if u.end > late]
    assert len(found) == 1, [u.bounds_s for u in utterances]
    assert abs(found[0].start - 8 * rate) <= TOLERANCE_S * rate and 10 * rate <= found[0].end <= 10.5 * rate
    alone, _ = segment(to_int16(noisy - clean))
    assert not [u.bounds_s for u in alone if u.end > late]
    monkeypatch.setattr(segmenter_module, "BAND_GATE_DB", float("inf"))  # without the rescue
    plain, _ = segment(to_int16(noisy))
    assert not [u.bounds_s for u in plain if u.end > late]


def test_a_pause_in_steady_noise_holds_the_utterance_a_quiet_room_would_split(monkeypatch) -> None:
    """Two bursts of voice 650 ms apart: in a quiet room two utterances (the 500 ms hangover runs out in
    the pause); in pink noise 20 dB under the voice that has run for 8 s, one (``STEADY_HANGOVER_MS``),
    its end still hugging the second burst; with the steady hangover at 0, or the noise gate off (which
    turns off all the segmenter does about noise), two there too."""
    rate = 16000
    pause = np.zeros(int(0.65 * rate), np.float32)
    voice = np.concatenate([speech_like(1.0, rate, seed=1), pause, speech_like(1.0, rate, seed=2)])
    lead = np.zeros(8 * rate, np.float32)
    clean = np.concatenate([lead, voice, np.zeros(2 * rate, np.float32)])
    second_end = lead.size + voice.size
    quiet, _ = segment(to_int16(clean))
    assert len(quiet) == 2, [u.bounds_s for u in quiet]
    noisy = to_int16(mix_at_snr(clean, pink_noise(clean.size, np.random.default_rng(5)), 20))
    late = 2 * rate  # after webrtcvad's start-up in the noise
    held = [u for u in segment(noisy)[0] if u.end > late]
    assert len(held) == 1, [u.bounds_s for u in held]
    assert abs(held[0].start - lead.size) <= TOLERANCE_S * rate
    assert second_end <= held[0].end <= second_end + TOLERANCE_S * rate
    without_gate = [u for u in segment(noisy, SegmenterConfig(noise_gate_db=0))[0] if u.end > late]
    assert len(without_gate) == 2, [u.bounds_s for u in without_gate]
    monkeypatch.setattr(segmenter_module, "STEADY_HANGOVER_MS", 0)
    split = [u for u in segment(noisy)[0] if u.end > late]
    assert len(split) == 2, [u.bounds_s for u in split]


@pytest.mark.parametrize("frame_ms", [20, 30])
def test_steady_noise_that_swells_and_fades_opens_no_utterance(monkeypatch, frame_ms: int) -> None:
    """A minute of pink noise at about -35 dBFS whose level swings by 3 dB every 2 s (a fan changing speed):
    its speech band rises and falls over the floor like a soft voice's, but does not repeat at a pitch
    period, so the rescue opens at most two utterances after webrtcvad's start-up; when any rise opened
    one (a periodicity threshold of 0), more than ten.  (With 10 ms frames: 6 against 19.)"""
    rate = 16000
    t = np.arange(60 * rate) / rate
    swell = 10 ** (1.5 * np.sin(2 * np.pi * t / 2.0) / 20)
    noisy = to_int16(pink_noise(t.size, np.random.default_rng(1)) * swell * 10 ** (-35 / 20))
    config = SegmenterConfig(frame_ms=frame_ms)
    late = 3 * rate  # after webrtcvad's start-up in the noise
    utterances, _ = segment(noisy, config)
    assert len([u for u in utterances if u.start > late]) <= 2, [u.bounds_s for u in utterances]
    monkeypatch.setattr(segmenter_module, "RESCUE_PERIODICITY", 0.0)
    swelling, _ = segment(noisy, config)
    assert len([u for u in swelling if u.start > late]) > 10


def clips_in_babble(ravdess, snr_db: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Actor 4's clips with the babble of four other actors running through the whole stream."""
    clips = [(emotion, intensity, 1) for emotion in (2, 3, 6, 7) for intensity in (1, 2)]
    voice = voice_stream(ravdess, 4, clips, np.random.default_rng(4))
    noise = babble(babble_pool(ravdess, (10, 13, 16, 19)), voice.samples.size, np.random.default_rng(5))
    return to_int16(mix_at_snr(voice.samples, noise, snr_db)), voice.spans


@pytest.mark.parametrize("snr_db", [15, 10])
def test_utterances_close_in_babble(ravdess, snr_db: float) -> None:
    """webrtcvad calls babble speech: without the noise gate every utterance runs to max_utterance_ms
    and swallows several clips; with it, each clip is about one utterance (bench: 80-87% exactly one,
    1.2 utterances per clip at 15 and 10 dB, so at least 6 of these 8)."""
    samples, spans = clips_in_babble(ravdess, snr_db)
    utterances, _ = segment(samples)
    assert not any(u.cut for u in utterances)
    overlaps = [overlapping(u.start, u.end, spans) for u in utterances]
    found_once = [i for i in range(len(spans)) if sum(i in clips for clips in overlaps) == 1 and [i] in overlaps]
    assert len(found_once) >= 6, [(u.start / 16000, u.end / 16000) for u in utterances]
    assert len(utterances) <= len(spans) + 3

    plain, _ = segment(samples, SegmenterConfig(noise_gate_db=0))
    assert sum(u.cut for u in plain) >= 2  # the same stream, segmented as before the noise gate


def test_quiet_clips_are_found_in_loud_steady_pink_noise(ravdess) -> None:
    """Actor 4's clips 12 dB louder than RAVDESS (speech about -19 dBFS) in pink noise 10 dB below the
    speech: webrtcvad takes the noise for speech, and a gate of 9 dB over the floor is more than the
    quieter clips reach (bench: 34% found once, 4 of these 8); steady noise barely dips below its floor,
    so there the gate needs 6 dB (bench: 56%, 7 of these 8), while babble keeps 9
    (``test_utterances_close_in_babble``)."""
    clips = [(emotion, intensity, 1) for emotion in (2, 3, 6, 7) for intensity in (1, 2)]
    voice = voice_stream(ravdess, 4, clips, np.random.default_rng(4))
    loud = voice.samples * np.float32(10 ** (12 / 20))
    samples = in_noise(to_int16(loud), pink_noise(loud.size, np.random.default_rng(5)), 10)
    utterances, _ = segment(samples)
    assert not any(u.cut for u in utterances)
    overlaps = [overlapping(u.start, u.end, voice.spans) for u in utterances]
    found_once = [i for i in range(len(clips)) if sum(i in o for o in overlaps) == 1 and [i] in overlaps]
    assert len(found_once) >= 5, [(u.start / 16000, u.end / 16000) for u in utterances]


def test_long_babble_alone_is_never_a_max_window(ravdess) -> None:
    rng = np.random.default_rng(6)
    room_tone = to_int16(0.0003 * pink_noise(2 * 16000, rng))
    noise = to_int16(0.03 * babble(babble_pool(ravdess, (10, 13, 16, 19)), 40 * 16000, rng))
    samples = np.concatenate([room_tone, noise])
    utterances, _ = segment(samples)
    assert not any(u.cut for u in utterances)
    # Only the utterance open when the babble began outlasts the floor's rise to it (FLOOR_WINDOW_MS).
    assert sum(u.duration_s > 4 for u in utterances) <= 1, [u.duration_s for u in utterances]
    plain, _ = segment(samples, SegmenterConfig(noise_gate_db=0))
    assert all(u.cut for u in plain) and len(plain) >= 3


def test_the_noise_floor_follows_the_room() -> None:
    rate = 16000
    warmup, window = FLOOR_WARMUP_MS * rate // 1000, FLOOR_WINDOW_MS * rate // 1000
    level_dbfs = -40.0
    hum = to_int16(10 ** (level_dbfs / 20) * pink_noise(2 * window, np.random.default_rng(2)))
    segmenter = Segmenter()
    segmenter.feed(hum[: warmup - 480])
    assert segmenter.noise_floor_dbfs is None  # too little heard yet
    segmenter.feed(hum[warmup - 480 :])
    floor = segmenter.noise_floor_dbfs
    assert floor is not None and level_dbfs - 4 <= floor <= level_dbfs  # minimum statistics: a little below the mean
    # A reload keeps the room; a new stream starts without one.
    assert segmenter.reconfigured(SegmenterConfig(hangover_ms=700)).noise_floor_dbfs == floor
    segmenter.flush()
    assert segmenter.noise_floor_dbfs is None
    segmenter.feed(np.zeros(warmup, np.int16))
    assert segmenter.noise_floor_dbfs == SILENT_DBFS


def test_a_trim_written_before_the_noise_gate_still_loads() -> None:
    """A bundle manifest's `trim` from before `noise_gate_db` existed: the new field takes its default."""
    old_trim = {
        "sample_rate": 16000,
        "frame_ms": 30,
        "aggressiveness": 2,
        "pre_roll_ms": 150,
        "hangover_ms": 500,
        "min_utterance_ms": 500,
        "max_utterance_ms": 10000,
        "trigger_ratio": 0.6,
        "gate_db": 35.0,
    }
    assert SegmenterConfig(**old_trim) == SegmenterConfig()
