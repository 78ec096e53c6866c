"""Pitch and voice-quality statistics: right on signals whose pitch is known, sensible on RAVDESS voices."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from ser_stream.features import FeatureParams, extract_features
from ser_stream.voice import VOICE_STATISTICS, GrowingVoice, PitchTrack, voice_statistics
from testkit.live import clip_path
from tests.conftest import speech_like

RATE = 16000
STAT = {name: i for i, name in enumerate(VOICE_STATISTICS)}


def harmonic(f0_hz: np.ndarray, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A voiced sound with five harmonics following the pitch contour ``f0_hz`` (one value per sample)."""
    phase = 2 * np.pi * np.cumsum(f0_hz) / RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    return (0.3 * tone + noise * np.random.default_rng(seed).standard_normal(f0_hz.size)).astype(np.float32)


def semitones(hz: float) -> float:
    return 12 * np.log2(hz / 27.5)


@pytest.mark.parametrize("f0", [80.0, 150.0, 220.0, 400.0])
def test_a_steady_tone_has_its_pitch_and_no_jitter(f0):
    stats = voice_statistics(harmonic(np.full(RATE, f0)), RATE)
    assert stats[STAT["pitch_mean_st"]] == pytest.approx(semitones(f0), abs=0.1)
    assert stats[STAT["pitch_std_st"]] < 0.1 and stats[STAT["pitch_range_st"]] < 0.1
    assert stats[STAT["jitter_mean"]] < 0.002
    assert stats[STAT["voiced_share"]] > 0.95 and stats[STAT["hnr_mean_db"]] > 20
    assert stats[STAT["voiced_segments_per_s"]] == pytest.approx(1.0, abs=0.05)


def test_a_rising_glide_rises_and_a_falling_one_falls():
    glide = np.geomspace(120.0, 240.0, RATE)  # one octave in a second: 12 semitones per second
    rising, falling = voice_statistics(harmonic(glide), RATE), voice_statistics(harmonic(glide[::-1]), RATE)
    assert rising[STAT["pitch_rise_st_per_s"]] == pytest.approx(12, rel=0.1)
    assert falling[STAT["pitch_fall_st_per_s"]] == pytest.approx(-12, rel=0.1)
    assert rising[STAT["pitch_range_st"]] == pytest.approx(0.6 * 12, rel=0.1)  # 20th to 80th percentile


def test_noise_lowers_the_harmonics_to_noise_ratio():
    tone = np.full(RATE, 180.0)
    clean, noisy = voice_statistics(harmonic(tone), RATE), voice_statistics(harmonic(tone, noise=0.1), RATE)
    assert noisy[STAT["hnr_mean_db"]] < clean[STAT["hnr_mean_db"]] - 5
    assert noisy[STAT["pitch_p50_st"]] == pytest.approx(semitones(180.0), abs=0.1)


def test_silence_and_noise_have_no_voice():
    assert not voice_statistics(np.zeros(RATE, dtype=np.float32), RATE).any()
    assert not voice_statistics(np.zeros(10, dtype=np.float32), RATE).any()  # shorter than one window
    noise = np.random.default_rng(1).standard_normal(RATE).astype(np.float32)
    assert PitchTrack.of(noise, RATE).voiced.mean() < 0.1


def test_voiced_stretches_are_counted():
    pitch = np.full(2 * RATE, 200.0)
    sound = harmonic(pitch)
    sound[RATE // 2 : RATE] = 0  # voiced 0.5 s, a pause of 0.5 s, voiced 1 s
    stats = voice_statistics(sound, RATE)
    assert stats[STAT["voiced_segments_per_s"]] == pytest.approx(2 / 2.0, abs=0.1)
    assert stats[STAT["voiced_segment_mean_s"]] == pytest.approx(0.75, abs=0.05)


def test_ravdess_women_speak_higher_than_men(ravdess):
    """Odd-numbered RAVDESS actors are men, even-numbered women: the same sentence, neutral."""
    pitch = {}
    for actor in (1, 2, 3, 4):
        samples, _ = soundfile.read(clip_path(ravdess, 1, actor), dtype="float32")
        stats = voice_statistics(samples, RATE)
        assert np.all(np.isfinite(stats)) and 0.3 < stats[STAT["voiced_share"]] <= 1
        pitch[actor] = stats[STAT["pitch_p50_st"]]
    assert max(pitch[1], pitch[3]) + 3 < min(pitch[2], pitch[4])  # an octave is 12 semitones


def test_the_voice_block_comes_last_and_only_when_asked():
    samples = speech_like(2.0)
    plain = FeatureParams(statistics=("mean", "std", "delta_std"), mel_scale="log")
    voiced = FeatureParams(statistics=("mean", "std", "delta_std"), mel_scale="log", voice=True)
    assert voiced.n_features == plain.n_features + len(VOICE_STATISTICS)
    both = extract_features(samples, RATE, voiced)
    np.testing.assert_array_equal(both[: plain.n_features], extract_features(samples, RATE, plain))
    np.testing.assert_array_equal(both[plain.n_features :], voice_statistics(samples, RATE))
    assert FeatureParams.from_dict(voiced.to_dict()) == voiced
    assert FeatureParams.from_dict({k: v for k, v in plain.to_dict().items() if k != "voice"}) == plain  # old manifests
    with pytest.raises(ValueError, match="voice"):
        FeatureParams(voice="yes")


def test_a_growing_utterance_has_the_statistics_of_what_was_heard_so_far(ravdess):
    clips = [soundfile.read(clip_path(ravdess, code, 3), dtype="float32")[0] for code in (1, 5, 6)]
    speech = np.concatenate(clips)
    growing = GrowingVoice(RATE)
    # Shorter than the filter, than one window's span, odd lengths, the same length twice, then on.
    for end in (5, 31, 600, 1337, 1337, 5000, 16001, 16002, 40000, 77777, speech.size):
        np.testing.assert_allclose(growing(speech[:end]), voice_statistics(speech[:end], RATE), rtol=1e-9, atol=1e-12)
