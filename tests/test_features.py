"""The one feature extractor equals the seed's three-call librosa recipe."""

from __future__ import annotations

import warnings

import librosa
import numpy as np
import pytest

from ser_stream.features import (
    SEED_PARAMS,
    FeatureExtractor,
    FeatureParams,
    band_blocks,
    chroma_filters,
    dct_matrix,
    delta,
    extract_features,
    hann_window,
    mel_filters,
)
from testkit.live import clip_path
from testkit.recipe import seed_recipe
from tests.conftest import speech_like

#: The shipped recipe's statistics over time (its voice block is held to known pitches in test_voice.py).
SHIPPED_PARAMS = FeatureParams(statistics=("mean", "std", "delta_std"), mel_scale="log")


def assert_close_to_recipe(samples: np.ndarray) -> None:
    expected = seed_recipe(samples, 16000)
    actual = extract_features(samples, 16000)
    assert actual.shape == (180,)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("emotion,actor", [(2, 1), (3, 6), (6, 11), (7, 20), (1, 15)])
def test_equals_seed_recipe_on_ravdess(ravdess, emotion, actor):
    import soundfile

    samples, rate = soundfile.read(clip_path(ravdess, emotion, actor), dtype="float32")
    assert rate == 16000
    assert_close_to_recipe(samples)


@pytest.mark.filterwarnings("ignore:n_fft=2048 is too large")  # the seed's librosa defaults on 0.1 s
@pytest.mark.parametrize("seconds", [0.1, 0.5, 3.0])
def test_equals_seed_recipe_on_synthetic_speech(seconds):
    assert_close_to_recipe(speech_like(seconds))


def test_extra_statistics_keep_the_seed_block_first():
    samples = speech_like(2.0)
    params = FeatureParams(statistics=("mean", "std", "delta_std"))
    rich = extract_features(samples, 16000, params)
    assert rich.shape == (params.n_features,) == (180 + 180 + 40,)
    np.testing.assert_array_equal(rich[:180], extract_features(samples, 16000))
    assert np.all(rich[180:360] >= 0)  # standard deviations


def test_log_mel_scale_takes_log10_of_mel_statistics_only():
    samples = speech_like(2.0)
    power = extract_features(samples, 16000)
    logged = extract_features(samples, 16000, FeatureParams(mel_scale="log"))
    np.testing.assert_array_equal(logged[:52], power[:52])
    np.testing.assert_allclose(logged[52:], np.log10(power[52:] + 1e-10), rtol=1e-5)


def test_extractor_is_deterministic_and_shares_banks():
    samples = speech_like(1.0, seed=3)
    extractor = FeatureExtractor(SEED_PARAMS)
    np.testing.assert_array_equal(extractor(samples), extractor(samples))


def test_rejects_wrong_rate_bad_shapes_and_bad_params():
    with pytest.raises(ValueError, match="48000 Hz"):
        extract_features(speech_like(0.5), 48000, SEED_PARAMS)
    with pytest.raises(ValueError, match="mono"):
        extract_features(np.zeros((2, 1600), dtype=np.float32))
    with pytest.raises(ValueError, match="mono"):
        extract_features(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="statistics"):
        FeatureParams(statistics=("std",))
    with pytest.raises(ValueError, match="mel_scale"):
        FeatureParams(mel_scale="db")


def test_params_round_trip_through_dict():
    params = FeatureParams(statistics=("mean", "std"), mel_scale="log")
    assert FeatureParams.from_dict(params.to_dict()) == params


def librosa_features(samples: np.ndarray, params: FeatureParams) -> np.ndarray:
    """Every statistic of `params` from librosa's own per-frame MFCC, chroma, mel and delta."""
    mfcc = librosa.feature.mfcc(y=samples, sr=16000, n_mfcc=40)
    chroma = librosa.feature.chroma_stft(S=np.abs(librosa.stft(samples)), sr=16000)
    mel = librosa.feature.melspectrogram(y=samples, sr=16000)
    frames = np.concatenate([mfcc, chroma, mel])
    parts = []
    for statistic in params.statistics:
        if statistic == "delta_std":
            parts.append(librosa.feature.delta(mfcc, width=9).std(axis=1))
            continue
        values = frames.mean(axis=1) if statistic == "mean" else frames.std(axis=1)
        values[52:] = np.log10(values[52:] + 1e-10) if params.mel_scale == "log" else values[52:]
        parts.append(values)
    return np.concatenate(parts)


@pytest.mark.parametrize("emotion,actor", [(2, 4), (3, 9), (6, 13), (7, 18)])
def test_shipped_parameters_equal_librosa_on_ravdess(ravdess, emotion, actor):
    import soundfile

    samples, _ = soundfile.read(clip_path(ravdess, emotion, actor), dtype="float32")
    expected = librosa_features(samples, SHIPPED_PARAMS)
    actual = extract_features(samples, 16000, SHIPPED_PARAMS)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_tuning_estimate_is_librosas_to_the_bit(ravdess):
    """The chroma tuning is a histogram peak: equal inputs and arithmetic, or a different filter bank."""
    import soundfile

    extractor = FeatureExtractor(SEED_PARAMS)
    clips = sorted(ravdess.glob("Actor_*/*.flac"))[::23]
    signals = [soundfile.read(clip, dtype="float32")[0] for clip in clips]
    signals += [speech_like(0.1), speech_like(2.0, seed=5), np.zeros(4000, np.float32)]
    tunings = set()
    for samples in signals:
        magnitude = extractor.magnitude(samples)
        with warnings.catch_warnings():  # librosa warns on short or silent input
            warnings.simplefilter("ignore")
            reference = np.abs(librosa.stft(samples))
            expected = librosa.estimate_tuning(S=reference, sr=16000, bins_per_octave=12)
        np.testing.assert_array_equal(magnitude, reference)
        assert extractor.tuning(magnitude) == expected
        tunings.add(expected)
    assert len(tunings) > 5  # the clips exercise many histogram bins


def test_building_blocks_equal_librosa_and_scipy():
    import scipy.fft
    import scipy.signal

    np.testing.assert_array_equal(hann_window(2048), scipy.signal.get_window("hann", 2048))
    np.testing.assert_allclose(mel_filters(16000, 2048, 128), librosa.filters.mel(sr=16000, n_fft=2048), rtol=1e-6)
    np.testing.assert_allclose(mel_filters(22050, 1024, 40), librosa.filters.mel(sr=22050, n_fft=1024, n_mels=40))
    for tuning in (-0.5, -0.07, 0.0, 0.31):
        expected = librosa.filters.chroma(sr=16000, n_fft=2048, tuning=tuning)
        np.testing.assert_allclose(chroma_filters(16000, 2048, 12, tuning), expected, rtol=1e-6, atol=1e-9)
    mel = np.random.default_rng(1).normal(-40, 20, (128, 30)).astype(np.float32)
    expected = scipy.fft.dct(mel, axis=0, type=2, norm="ortho")[:40]
    np.testing.assert_allclose(dct_matrix(40, 128) @ mel, expected, rtol=1e-5, atol=1e-4)
    mfcc = np.random.default_rng(2).normal(0, 10, (40, 40)).astype(np.float32)
    for frames in (3, 4, 8, 9, 40):
        width = min(9, frames - (1 - frames % 2))
        expected = librosa.feature.delta(mfcc[:, :frames], width=width)
        np.testing.assert_allclose(delta(mfcc[:, :frames]), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(delta(mfcc[:, :2]), 0)


def test_band_blocks_leave_out_zeros_and_keep_the_product():
    basis = np.zeros((20, 50), dtype=np.float32)
    basis[3:7, 10:20] = 1.0
    basis[12, 40:45] = 2.0  # bands 16-19 are all zero: no block
    x = np.random.default_rng(3).random((50, 7)).astype(np.float32)
    product = np.zeros((20, 7), dtype=np.float32)
    blocks = band_blocks(basis, 8)
    for bands, bins, weights in blocks:
        product[bands] = weights @ x[bins]
    assert [(b.start, b.stop) for _, b, _ in blocks] == [(10, 20), (40, 45)]
    np.testing.assert_allclose(product, basis @ x, rtol=1e-6)
