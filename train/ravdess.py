"""RAVDESS file names → labelled clips.

Names are ``MM-VV-EE-II-SS-RR-AA.ext``: modality, vocal channel, emotion,
intensity, statement, repetition, actor.  The original release is ``.wav`` at
48 kHz; our copy is ``.flac`` at 16 kHz; both layouts are ``Actor_XX/NAME``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ser_stream.errors import UserError

EMOTIONS = {
    1: "neutral",
    2: "calm",
    3: "happy",
    4: "sad",
    5: "angry",
    6: "fearful",
    7: "disgust",
    8: "surprised",
}
#: The four emotions of the DataFlair seed.
SEED_EMOTIONS = ("calm", "happy", "fearful", "disgust")

_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.(wav|flac)$", re.IGNORECASE)
_FIELD_RANGES = {  # field → allowed codes
    "modality": range(1, 4),
    "vocal_channel": range(1, 3),
    "emotion": range(1, 9),
    "intensity": range(1, 3),
    "statement": range(1, 3),
    "repetition": range(1, 3),
    "actor": range(1, 25),
}
AUDIO_ONLY, SPEECH = 3, 1


@dataclass(frozen=True)
class Clip:
    path: Path
    modality: int
    vocal_channel: int
    emotion_code: int
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def emotion(self) -> str:
        return EMOTIONS[self.emotion_code]


def parse_name(path: Path) -> Clip | None:
    """The clip a RAVDESS file name describes, or None if the name is not one."""
    match = _NAME.match(path.name)
    if not match:
        return None
    codes = [int(group) for group in match.groups()[:7]]
    if any(code not in allowed for code, allowed in zip(codes, _FIELD_RANGES.values(), strict=True)):
        return None
    return Clip(path, *codes)


@dataclass(frozen=True)
class Scan:
    clips: list[Clip]
    skipped: list[Path]  # audio-looking files whose names are not RAVDESS speech names


def scan(root: str | Path, emotions: tuple[str, ...] | None = None, actors: set[int] | None = None) -> Scan:
    """All audio-only speech clips under ``root``, filtered by emotion names and actor numbers."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such data folder (expected RAVDESS Actor_XX/ folders)")
    clips, skipped = [], []
    for path in sorted(root.glob("Actor_*/*")):
        if path.suffix.lower() not in (".wav", ".flac"):
            continue
        clip = parse_name(path)
        if clip is None or clip.modality != AUDIO_ONLY or clip.vocal_channel != SPEECH:
            skipped.append(path)
            continue
        if emotions is not None and clip.emotion not in emotions:
            continue
        if actors is not None and clip.actor not in actors:
            continue
        clips.append(clip)
    if not clips:
        raise UserError(f"{root}: no RAVDESS speech clips found (expected Actor_XX/03-01-EE-II-SS-RR-AA.wav or .flac)")
    return Scan(clips, skipped)
