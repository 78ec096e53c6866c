"""Noisy streams of RAVDESS voices for the segmenter tests, the end-to-end test and the bench."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import librosa
import numpy as np
import soundfile

from testkit.live import clip_path

RATE = 16000
#: Digital silence added between clips, before the room's noise covers the stream (uniform, seconds);
#: each clip already has about a second of room tone around its speech.
GAP_S = (0.3, 1.5)


@dataclass(frozen=True)
class Stream:
    """A voice's clips end to end: float32 samples (full scale 1.0) and each clip's speech span."""

    samples: np.ndarray
    spans: list[tuple[int, int]]  # in samples; librosa.effects.trim(top_db=30) of the clean clip, as in testkit.live
    order: list[int] = field(default_factory=list)  # which of the clips given each span is


def read_clip(
    ravdess: Path, actor: int, emotion: int, intensity: int = 1, statement: int = 1, repetition: int = 1
) -> np.ndarray:
    samples, rate = soundfile.read(
        clip_path(ravdess, emotion, actor, intensity, statement, repetition), dtype="float32"
    )
    assert rate == RATE, f"RAVDESS copy at {rate} Hz, expected {RATE}"
    return samples


def voice_stream(
    ravdess: Path,
    actor: int,
    clips: list[tuple[int, ...]],
    rng: np.random.Generator,
    order: list[int] | None = None,
) -> Stream:
    """``actor``'s clips ((emotion, intensity, statement[, repetition]) each) in a random order (or the
    ``order`` given: indices into ``clips``), random gaps between."""
    parts, spans, offset = [], [], 0
    order = [int(index) for index in (rng.permutation(len(clips)) if order is None else order)]
    for index in order:
        clip = read_clip(ravdess, actor, *clips[index])
        gap = np.zeros(int(rng.uniform(*GAP_S) * RATE), np.float32)
        _, (start, end) = librosa.effects.trim(clip, top_db=30)
        offset += gap.size
        spans.append((offset + int(start), offset + int(end)))
        parts += [gap, clip]
        offset += clip.size
    parts.append(np.zeros(RATE, np.float32))
    return Stream(np.concatenate(parts), spans, order)


def babble_pool(ravdess: Path, actors: tuple[int, ...]) -> list[np.ndarray]:
    """One clip per emotion of each of ``actors``: the voices of a babble (never the target's)."""
    return [read_clip(ravdess, actor, emotion) for actor in actors for emotion in range(1, 9)]


def overlapping(start: int, end: int, spans: list[tuple[int, int]]) -> list[int]:
    """Indices of the clip spans that ``[start, end)`` overlaps."""
    return [i for i, (s, e) in enumerate(spans) if start < e and end > s]
