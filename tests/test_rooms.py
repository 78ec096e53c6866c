"""The rooms of training augmentation and protocol (d): noises, SNRs and room responses mean what they say."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import speech_like
from train.rooms import (
    PROTOCOL_MICROPHONES,
    PROTOCOL_ROOMS,
    Microphone,
    Room,
    active_level,
    augment_room,
    babble,
    decay_time,
    mix_at_snr,
    pink_noise,
    reverberate,
    room_impulse_response,
    voice_level,
)

RATE = 16000


def test_pink_noise_loses_3_db_per_octave() -> None:
    noise = pink_noise(2**18, np.random.default_rng(0))
    assert noise.dtype == np.float32 and noise.size == 2**18
    assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(1, rel=1e-4)
    power = np.abs(np.fft.rfft(noise)) ** 2
    bands = [power[2**k : 2 ** (k + 1)].sum() for k in range(6, 16)]  # octaves; equal power each
    slope, _ = np.polyfit(np.arange(len(bands)), 10 * np.log10(bands), 1)
    assert slope == pytest.approx(0, abs=0.3)  # pink: the same power per octave (-3 dB/octave per Hz)
    np.testing.assert_array_equal(noise, pink_noise(2**18, np.random.default_rng(0)))


def test_mix_at_snr_sets_the_active_speech_level_above_the_noise() -> None:
    speech = np.concatenate([np.zeros(RATE), speech_like(2.0, RATE), np.zeros(RATE)])  # pauses do not count
    noise = pink_noise(speech.size + 100, np.random.default_rng(1))
    for snr_db in (20, 10, 0):
        mixed = mix_at_snr(speech, noise, snr_db)
        added = mixed.astype(np.float64) - speech
        assert 10 * np.log10(active_level(speech) / np.mean(added**2)) == pytest.approx(snr_db, abs=0.01)
    assert active_level(speech) == pytest.approx(np.mean(speech_like(2.0, RATE).astype(np.float64) ** 2), rel=0.05)
    with pytest.raises(ValueError, match="shorter"):
        mix_at_snr(speech, noise[:100], 10)
    with pytest.raises(ValueError, match="silent"):
        mix_at_snr(speech, np.zeros(speech.size), 10)


def test_babble_is_several_voices_at_once_from_the_clips_given() -> None:
    clips = [np.concatenate([np.zeros(4000), speech_like(1.0, RATE, seed=i), np.zeros(4000)]) for i in range(6)]
    crowd = babble(clips, 5 * RATE, np.random.default_rng(2))
    assert crowd.size == 5 * RATE and np.sqrt(np.mean(crowd.astype(np.float64) ** 2)) == pytest.approx(1, rel=1e-4)
    # The clips' pauses are trimmed, so the crowd never falls silent: no 25 ms frame below -20 dB.
    frames = crowd[: crowd.size // 400 * 400].reshape(-1, 400).astype(np.float64)
    assert 10 * np.log10(np.mean(frames**2, axis=1).min()) > -20
    with pytest.raises(ValueError, match="4 voices"):
        babble(clips[:3], RATE, np.random.default_rng(2))


@pytest.mark.parametrize("rt60_s", [0.3, 0.5, 0.9])
def test_a_room_response_decays_in_its_rt60(rt60_s: float) -> None:
    response = room_impulse_response(rt60_s, RATE, np.random.default_rng(3))
    assert decay_time(response, RATE) == pytest.approx(rt60_s, rel=0.1)
    assert np.sum(response.astype(np.float64) ** 2) == pytest.approx(1, rel=1e-5)
    direct, tail = response[0] ** 2, np.sum(response[1:].astype(np.float64) ** 2)
    assert 10 * np.log10(direct / tail) == pytest.approx(-3.0, abs=0.01)
    with pytest.raises(ValueError, match="rt60_s"):
        room_impulse_response(0, RATE, np.random.default_rng(3))


def test_reverberation_smears_speech_into_its_pauses_and_keeps_the_length() -> None:
    speech = np.concatenate([speech_like(1.0, RATE), np.zeros(RATE)])
    wet = reverberate(speech, room_impulse_response(0.5, RATE, np.random.default_rng(4)))
    assert wet.size == speech.size and wet.dtype == np.float32
    after = wet[RATE + 1600 : RATE + 3200].astype(np.float64)  # 100-200 ms after the speech stops
    assert 10 * np.log10(np.mean(after**2) / active_level(speech)) > -30


def test_protocol_rooms_are_issue_15s_conditions() -> None:
    described = {(room.noise, room.snr_db, room.rt60_s) for room in PROTOCOL_ROOMS}
    expected = {(None, None, None), ("pink", 20, None), ("pink", 10, None), ("babble", 15, None)}
    assert described >= expected | {("babble", 10, None), (None, None, 0.5)}
    with pytest.raises(ValueError, match="snr_db"):
        Room("bad", noise="pink")
    with pytest.raises(ValueError, match="noise"):
        Room("bad", noise="white", snr_db=10)


def test_a_room_applies_reverberation_then_noise_at_its_snr() -> None:
    speech = np.concatenate([np.zeros(RATE), speech_like(2.0, RATE), np.zeros(RATE)])
    clips = [speech_like(1.0, RATE, seed=i) for i in range(4)]
    for room in PROTOCOL_ROOMS:
        heard = room.apply(speech, RATE, np.random.default_rng(5), clips)
        assert heard.size == speech.size and np.isfinite(heard).all()
        if room.noise is not None:
            pause = heard[: RATE // 2].astype(np.float64)
            assert 10 * np.log10(active_level(speech) / np.mean(pause**2)) == pytest.approx(room.snr_db, abs=1.5)
        if room.noise is None and room.rt60_s is None:
            np.testing.assert_array_equal(heard, speech)


def test_a_voice_s_soft_clip_is_heard_under_the_same_noise_as_its_loud_one() -> None:
    loud = speech_like(2.0, RATE, seed=1)
    soft = 0.1 * speech_like(2.0, RATE, seed=2)  # 20 dB softer, the same voice
    level = voice_level([loud, soft])
    assert level == pytest.approx(active_level(np.concatenate([loud, soft])))
    assert active_level(soft) < level < active_level(loud)
    room = Room("fan", noise="pink", snr_db=20)
    own_snr = {}
    for name, clip in (("loud", loud), ("soft", soft)):
        heard = room.apply(clip, RATE, np.random.default_rng(3), level=level)
        noise = heard.astype(np.float64) - clip
        assert 10 * np.log10(level / np.mean(noise**2)) == pytest.approx(20, abs=0.01)
        own_snr[name] = 10 * np.log10(active_level(clip) / np.mean(noise**2))
        default = room.apply(clip, RATE, np.random.default_rng(3)).astype(np.float64) - clip
        assert 10 * np.log10(active_level(clip) / np.mean(default**2)) == pytest.approx(20, abs=0.01)  # own level
    assert own_snr["loud"] - own_snr["soft"] == pytest.approx(20, abs=0.1)  # the noise does not follow the voice
    assert own_snr["loud"] == pytest.approx(20 + 10 * np.log10(active_level(loud) / level), abs=0.01)


def test_augment_room_draws_a_room_per_copy() -> None:
    speech = speech_like(2.0, RATE)
    clips = [speech_like(1.0, RATE, seed=i) for i in range(1, 5)]
    copies = [augment_room(speech, RATE, np.random.default_rng(seed), clips) for seed in range(8)]
    assert all(c.size == speech.size and np.isfinite(c).all() for c in copies)
    assert all(not np.allclose(c, speech) for c in copies)
    assert len({c.tobytes() for c in copies}) == len(copies)
    np.testing.assert_array_equal(copies[0], augment_room(speech, RATE, np.random.default_rng(0), clips))


def test_a_microphone_band_limits_what_it_hears_and_keeps_its_level() -> None:
    phone = Microphone(highpass_hz=300, lowpass_hz=3400)
    db = 20 * np.log10(phone.gain(np.array([50.0, 300.0, 1000.0, 3400.0, 7000.0])))
    assert db[1] == pytest.approx(-3.0, abs=0.1) and db[3] == pytest.approx(-3.0, abs=0.1)  # the corners
    assert db[2] == pytest.approx(0, abs=0.1) and db[0] < -30 and db[4] < -12  # 12 dB per octave beyond them

    noise = np.random.default_rng(0).standard_normal(2 * RATE).astype(np.float32)
    heard = phone.apply(noise, RATE)
    assert heard.dtype == np.float32 and heard.size == noise.size
    assert np.sqrt(np.mean(heard.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(np.mean(noise**2.0)), rel=1e-4)
    power, f = np.abs(np.fft.rfft(heard)) ** 2, np.fft.rfftfreq(heard.size, 1 / RATE)
    inside, outside = power[(f > 1000) & (f < 2000)].mean(), power[(f > 5000) & (f < 7000)].mean()
    assert 10 * np.log10(inside / outside) > 8  # 7.5 to 12.6 dB down from 5 to 7 kHz


def test_protocol_e_hears_a_quiet_room_through_microphones_that_each_cut_a_band() -> None:
    """Protocol (e)'s conditions are quiet rooms (no noise, no reverberation) through a microphone each,
    named apart from protocol (d)'s rooms; each takes away a part of the speech band that RAVDESS keeps."""
    names = [room.name for room in PROTOCOL_ROOMS + PROTOCOL_MICROPHONES]
    assert len(set(names)) == len(names)
    speech = speech_like(2.0, RATE)
    for room in PROTOCOL_MICROPHONES:
        assert room.mic is not None and room.noise is None and room.rt60_s is None
        heard = room.apply(speech, RATE, np.random.default_rng(0))
        np.testing.assert_array_equal(heard, room.mic.apply(speech, RATE))
        gains = room.mic.gain(np.array([100.0, 1000.0, 6000.0]))
        assert gains.min() < 10 ** (-6 / 20)  # at least 6 dB off somewhere between 100 Hz and 6 kHz
