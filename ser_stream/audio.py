"""Reading audio files into the mono float32 signal the features expect."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import soundfile
import soxr

from .errors import AudioError
from .files import why_unreadable

log = logging.getLogger("ser_stream")


def to_model_rate(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Downmix (frames, channels) or mono audio and resample it to ``target_rate`` with soxr."""
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if rate != target_rate:
        samples = soxr.resample(samples, rate, target_rate).astype(np.float32, copy=False)
    return samples


def open_audio(path: str | Path) -> soundfile.SoundFile:
    """The file opened for reading; AudioError with a one-line reason if it is missing, not a
    regular file (a directory, a FIFO, a device such as /dev/zero), empty or not audio."""
    path = Path(path)
    if (reason := why_unreadable(path)) is not None:
        raise AudioError(f"{path}: {reason}")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: is an empty file")
    try:
        handle = soundfile.SoundFile(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"{path}: not a readable audio file ({_reason(error)})") from None
    if handle.frames == 0:
        handle.close()
        raise AudioError(f"{path}: contains no audio samples")
    return handle


def read_frames(handle: soundfile.SoundFile, frames: int = -1) -> np.ndarray:
    """Up to ``frames`` frames (all that are left: -1) as float32 (frames, channels); AudioError if
    the data is corrupt or holds NaN or infinite samples, naming where."""
    offset = handle.tell()
    try:
        samples = handle.read(frames, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioError(
            f"{handle.name}: unreadable at {offset / handle.samplerate:.1f} s ({_reason(error)})"
        ) from None
    bad = ~np.isfinite(samples)
    if bad.any():
        at = (offset + int(np.argmax(bad.any(axis=1)))) / handle.samplerate
        raise AudioError(f"{handle.name}: contains NaN or infinite samples (first at {at:.2f} s)")
    return samples


def warn_if_short(handle: soundfile.SoundFile, frames_read: int) -> None:
    """Say so when the file held less audio than its header promised: a truncated recording or copy
    is used as far as it goes, not silently as if whole.

    soundfile's ``frames`` is libsndfile's count, which for a WAV is cut to what the file holds; the
    data chunk's own size in the header is what was promised.
    """
    promised = max(handle.frames, _wav_data_frames(handle.name) or 0)
    if frames_read < promised:
        rate = handle.samplerate
        log.warning(
            "%s: truncated: its header promises %.2f s of audio but the file holds %.2f s; the last %.2f s are missing",
            handle.name,
            promised / rate,
            frames_read / rate,
            (promised - frames_read) / rate,
        )


#: A data chunk of this size or more is a stream's "length unknown", not a promise.
_UNKNOWN_LENGTH = 0x7FFFFFFF


def _wav_data_frames(path: str) -> int | None:
    """The frames a RIFF WAVE file's data chunk claims, or None for other files and unknown lengths."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:] != b"WAVE":
            return None
        order = "<" if head[:4] == b"RIFF" else ">"
        block_align = 0
        while len(chunk := handle.read(8)) == 8:  # every seek moves forward: ends at the end of the file
            size = struct.unpack(order + "I", chunk[4:])[0]
            if chunk[:4] == b"data":
                return size // block_align if block_align and size < _UNKNOWN_LENGTH else None
            body = handle.read(size) if chunk[:4] == b"fmt " and size < 1024 else b""
            if len(body) >= 14:
                block_align = struct.unpack(order + "H", body[12:14])[0]
            handle.seek(size - len(body) + (size & 1), 1)
    return None


def _reason(error: Exception) -> str:
    return str(error).split(":")[-1].strip() or "unreadable"


def load_audio(path: str | Path, target_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """Any file libsndfile reads (wav, flac, ogg; any rate, channels, int or float) as mono float32.

    Raises AudioError with a one-line reason for missing, empty, non-audio or corrupt files, and
    for files longer than ``max_seconds`` (checked before decoding anything).
    """
    with open_audio(path) as handle:
        seconds = handle.frames / handle.samplerate
        if max_seconds is not None and seconds > max_seconds:
            raise AudioError(
                f"{path}: {seconds / 60:.1f} min is too long for one utterance (at most {max_seconds / 60:g} min); "
                f"`ser-stream run --source {path} --no-realtime --print` classifies each utterance in it"
            )
        samples = read_frames(handle)
        warn_if_short(handle, len(samples))
        rate = handle.samplerate
    return to_model_rate(samples, rate, target_rate)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] as 16-bit PCM (what webrtcvad takes), clipped."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def from_int16(samples: np.ndarray) -> np.ndarray:
    """16-bit PCM as float32 in [-1, 1)."""
    return samples.astype(np.float32) / 32768.0
