"""Any readable audio file becomes mono float32 at the model rate; bad files get one clear reason."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import soxr

from ser_stream.audio import load_audio
from ser_stream.errors import AudioError
from tests.conftest import speech_like


def test_stereo_int16_44k_wav_is_downmixed_and_resampled(tmp_path):
    left, right = speech_like(1.0, 44100, seed=1), speech_like(1.0, 44100, seed=2)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    samples = load_audio(path, 16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert samples.size == 16000
    written = soundfile.read(path, dtype="float32")[0].mean(axis=1)
    np.testing.assert_allclose(samples, soxr.resample(written, 44100, 16000), atol=1e-6)


@pytest.mark.parametrize(
    "suffix,subtype,rate",
    [(".wav", "PCM_U8", 8000), (".wav", "FLOAT", 48000), (".flac", "PCM_24", 22050), (".ogg", "VORBIS", 32000)],
)
def test_formats_rates_and_sample_types(tmp_path, suffix, subtype, rate):
    path = tmp_path / f"clip{suffix}"
    soundfile.write(path, speech_like(0.5, rate), rate, subtype=subtype)
    samples = load_audio(path, 16000)
    assert abs(samples.size - 8000) <= 2
    assert 0.01 < float(np.sqrt(np.mean(samples**2))) < 1.0


def test_same_rate_is_untouched(tmp_path):
    original = speech_like(0.3)
    path = tmp_path / "float.wav"
    soundfile.write(path, original, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, 16000), original)


def bad_files(tmp_path, ravdess_clip=None):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio\n")
    good = tmp_path / "good.flac"
    soundfile.write(good, speech_like(2.0), 16000)
    data = good.read_bytes()
    (tmp_path / "truncated.flac").write_bytes(data[: len(data) // 3])
    nan = tmp_path / "nan.wav"
    soundfile.write(nan, np.full(1600, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    return {
        "missing": (tmp_path / "missing.wav", "no such file"),
        "directory": (tmp_path, "is a directory"),
        "empty": (tmp_path / "empty.wav", "empty file"),
        "not audio": (tmp_path / "text.wav", "not a readable audio file"),
        "truncated": (tmp_path / "truncated.flac", "unreadable at 0.0 s (flac decoder lost sync.)"),
        "nan": (nan, "NaN or infinite"),
    }


def test_bad_files_raise_audio_error_naming_file_and_reason(tmp_path):
    for path, reason in bad_files(tmp_path).values():
        with pytest.raises(AudioError) as caught:
            load_audio(path)
        message = str(caught.value)
        assert str(path) in message and reason in message and "\n" not in message
