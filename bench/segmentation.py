"""Segmentation in rooms: each voice's RAVDESS clips in one stream, noise running through all of it.

For every condition of protocol (d) (``train.rooms.PROTOCOL_ROOMS``: clean, pink noise at 20 and
10 dB, babble of four other actors at 15 and 10 dB, a reverberant room of RT60 0.5 s), the same
streams go through the segmenter without the noise floor (``noise_gate_db=0``: the segmenter as it
was before it had one) and with the defaults. Per condition:

- found once: clips whose speech is overlapped by exactly one utterance that overlaps no other clip;
  missed (no utterance), split (several), merged (one utterance over several clips);
- events per clip: utterances / clips (1.00 ideal), and spurious ones (overlapping no clip's speech);
- boundary error: median |start - speech start| and |end - speech end| over the clips found once,
  the speech span of a clip being ``librosa.effects.trim(top_db=30)`` of the clean clip (as in the
  tests); the segmenter's pre-roll (150 ms) and tail (up to 100 ms) are in these figures;
- cut: the share of utterances closed at ``max_utterance_ms`` rather than at the end of speech.

Pure computation (no daemon): the segmenter is the daemon's, fed the whole stream as int16.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import librosa
import numpy as np
import soundfile

from bench.common import DEFAULT_DATA, line, section, verdict
from ser_stream.audio import to_int16
from ser_stream.segmenter import Segmenter, SegmenterConfig, Utterance
from train.rooms import PROTOCOL_ROOMS, Room

RATE = 16000
#: One stream per voice: that actor's clips of the four seed emotions (calm, happy, fearful,
#: disgust), both statements, both intensities.
VOICES = (2, 5, 8, 11, 14, 17, 20)
EMOTIONS = (2, 3, 6, 7)
#: The babble of a voice's stream: clips of four other actors (none of VOICES), all eight emotions.
BABBLE_ACTORS = (3, 6, 9, 12)
#: Digital silence added between clips, before the room's noise covers the stream (uniform, seconds);
#: each clip already has about a second of room tone around its speech.
GAP_S = (0.3, 1.5)
#: Target of issue 15: in babble at 15 dB, at most this share of events are `max_utterance_ms` windows.
TARGET_CUT_SHARE = 0.1


@dataclass(frozen=True)
class Stream:
    samples: np.ndarray  # float32, full scale 1.0
    spans: list[tuple[int, int]]  # each clip's speech, in samples


def read(data: Path, actor: int, emotion: int, intensity: int = 1, statement: int = 1) -> np.ndarray:
    path = data / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-{intensity:02d}-{statement:02d}-01-{actor:02d}.flac"
    samples, rate = soundfile.read(path, dtype="float32")
    if rate != RATE:
        raise SystemExit(f"bench: {path} is at {rate} Hz, expected {RATE}")
    return samples


def voice_stream(data: Path, actor: int, rng: np.random.Generator) -> Stream:
    """One actor's clips in a random order with random gaps; the clean stream and each clip's speech."""
    clips = [(e, i, s) for e in EMOTIONS for i in (1, 2) for s in (1, 2)]
    parts, spans, offset = [], [], 0
    for index in rng.permutation(len(clips)):
        emotion, intensity, statement = clips[index]
        clip = read(data, actor, emotion, intensity, statement)
        gap = np.zeros(int(rng.uniform(*GAP_S) * RATE), np.float32)
        _, (start, end) = librosa.effects.trim(clip, top_db=30)
        offset += gap.size
        spans.append((offset + int(start), offset + int(end)))
        parts += [gap, clip]
        offset += clip.size
    parts.append(np.zeros(RATE, np.float32))
    return Stream(np.concatenate(parts), spans)


@dataclass
class Score:
    clips: int = 0
    found_once: int = 0
    missed: int = 0
    split: int = 0
    merged: int = 0
    utterances: int = 0
    spurious: int = 0
    cut: int = 0
    start_errors_ms: list[float] | None = None
    end_errors_ms: list[float] | None = None

    def add(self, utterances: list[Utterance], spans: list[tuple[int, int]]) -> None:
        self.start_errors_ms = self.start_errors_ms or []
        self.end_errors_ms = self.end_errors_ms or []
        overlaps = [[i for i, (s, e) in enumerate(spans) if u.start < e and u.end > s] for u in utterances]
        self.clips += len(spans)
        self.utterances += len(utterances)
        self.cut += sum(u.cut for u in utterances)
        self.spurious += sum(not clips for clips in overlaps)
        self.merged += sum(len(clips) > 1 for clips in overlaps)
        for index, (start, end) in enumerate(spans):
            mine = [u for u, clips in zip(utterances, overlaps, strict=True) if index in clips]
            if not mine:
                self.missed += 1
            elif len(mine) > 1:
                self.split += 1
            elif overlaps[utterances.index(mine[0])] == [index]:
                self.found_once += 1
                self.start_errors_ms.append(abs(mine[0].start - start) * 1000 / RATE)
                self.end_errors_ms.append(abs(mine[0].end - end) * 1000 / RATE)

    def row(self) -> str:
        start = np.median(self.start_errors_ms) if self.start_errors_ms else float("nan")
        end = np.median(self.end_errors_ms) if self.end_errors_ms else float("nan")
        return (
            f"{self.found_once / self.clips:5.0%} {self.missed:4d} {self.split:4d} {self.merged:4d} "
            f"{self.utterances / self.clips:6.2f} {self.spurious:4d} {start:6.0f} {end:6.0f} "
            f"{self.cut_share:5.0%}"
        )

    @property
    def cut_share(self) -> float:
        return self.cut / self.utterances if self.utterances else 0.0


def segment(samples: np.ndarray, config: SegmenterConfig) -> list[Utterance]:
    segmenter = Segmenter(config)
    pcm = to_int16(samples)
    return segmenter.feed(pcm) + segmenter.flush()


def measure(data: Path, rooms: tuple[Room, ...], configs: dict[str, SegmenterConfig]) -> dict[tuple[str, str], Score]:
    """A Score per (room name, config name), over one stream per voice of VOICES."""
    babble_pool = [read(data, actor, emotion) for actor in BABBLE_ACTORS for emotion in range(1, 9)]
    scores = {(room.name, name): Score() for room in rooms for name in configs}
    for actor in VOICES:
        stream = voice_stream(data, actor, np.random.default_rng(actor))
        for room in rooms:
            heard = room.apply(stream.samples, RATE, np.random.default_rng(100 + actor), babble_pool)
            for name, config in configs.items():
                scores[room.name, name].add(segment(heard, config), stream.spans)
    return scores


def run(data: Path = DEFAULT_DATA) -> None:
    after = SegmenterConfig()
    configs = {"before": replace(after, noise_gate_db=0), "after": after}
    scores = measure(data, PROTOCOL_ROOMS, configs)
    clips = next(iter(scores.values())).clips
    section(
        f"segmentation: {len(VOICES)} voices x {clips // len(VOICES)} clips, one stream per voice, "
        f"noise through the whole stream; before = noise_gate_db 0, after = {after.noise_gate_db:g} dB"
    )
    line("condition", "        found missed split merged ev/clip spurious |dstart| |dend| cut")
    line("", "         once                              ms      ms")
    for room in PROTOCOL_ROOMS:
        for name in configs:
            line(f"{room.name}, {name}", scores[room.name, name].row())
    share = scores["babble 15 dB", "after"].cut_share
    line(
        "babble 15 dB: events cut at max, after",
        f"{share:.0%}  [target <= {TARGET_CUT_SHARE:.0%}: {verdict(share, TARGET_CUT_SHARE)}]",
    )
