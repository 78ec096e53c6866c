"""Reading audio files into the mono float32 signal the features expect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soxr

from .errors import AudioError


def to_model_rate(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Downmix (frames, channels) or mono audio and resample it to ``target_rate`` with soxr."""
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if rate != target_rate:
        samples = soxr.resample(samples, rate, target_rate).astype(np.float32, copy=False)
    return samples


def load_audio(path: str | Path, target_rate: int = 16000) -> np.ndarray:
    """Any file libsndfile reads (wav, flac, ogg; any rate, channels, int or float) as mono float32.

    Raises AudioError with a one-line reason for missing, empty, non-audio or corrupt files.
    """
    import soundfile  # only for files: the daemon on a microphone never needs it

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: is an empty file")
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        reason = str(error).split(":")[-1].strip() or "unreadable"
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return to_model_rate(samples, rate, target_rate)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] as 16-bit PCM (what webrtcvad takes), clipped."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def from_int16(samples: np.ndarray) -> np.ndarray:
    """16-bit PCM as float32 in [-1, 1)."""
    return samples.astype(np.float32) / 32768.0
