"""The one feature extractor equals the seed's three-call librosa recipe."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from ser_stream.features import SEED_PARAMS, FeatureExtractor, FeatureParams, extract_features
from tests.conftest import clip_path, speech_like


def seed_recipe(samples: np.ndarray, rate: int) -> np.ndarray:
    """DataFlair's extract_feature(mfcc=True, chroma=True, mel=True), verbatim in spirit."""
    stft = np.abs(librosa.stft(samples))
    mfccs = np.mean(librosa.feature.mfcc(y=samples, sr=rate, n_mfcc=40).T, axis=0)
    chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=rate).T, axis=0)
    mel = np.mean(librosa.feature.melspectrogram(y=samples, sr=rate).T, axis=0)
    return np.hstack([mfccs, chroma, mel])


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
