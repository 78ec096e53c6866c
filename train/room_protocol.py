"""Protocol (d), the room: each held-out voice's clips in one stream, heard in a room, through the
daemon's segmenter and adapter.

For every fold of protocol (b), each held-out actor's clips (the model's emotions) in a random order
make one stream, ``GAP_S`` of silence between clips, heard in each room of ``train.rooms.PROTOCOL_ROOMS``
(and, for protocol (e), through each microphone of ``PROTOCOL_MICROPHONES``; ``HEARD``: both)
(noise through the whole stream; babble made of the fold's other held-out actors, or of the other
actors when the fold holds out one). The stream goes through ``ser_stream.segmenter.Segmenter`` with
the daemon's default settings; each utterance found is matched to the clip whose speech (the span the
segmenter finds in the clean clip) it overlaps most. The fold's fitted model (protocol (c)'s fits)
classifies every utterance in stream order, adapted as the daemon does (the statistics of the
utterances before it, spurious ones included, blended with the fold's prior), or unadapted for the
recipe without adaptation. A clip is right when the utterance overlapping it most is classified as
its emotion; a clip no utterance overlaps is wrong.

Segmentation figures per room: utterances per clip, clips found exactly once, missed clips, spurious
utterances (overlapping no clip's speech) and the share of utterances cut at ``max_utterance_ms``.
The utterances' features are computed once per run (cached like the training rows), before any fit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import ClassifierMixin

from ser_stream import segmenter
from ser_stream.adapter import AdapterPrior, VoiceAdapter
from ser_stream.audio import from_int16, to_int16
from ser_stream.features import IMPLEMENTATION, FeatureParams, extractor_for
from ser_stream.segmenter import Segmenter, SegmenterConfig, speech_span

from . import calibration as cal
from . import experiments as ex
from .dataset import TRAINING_DTYPE, Dataset, decode, settings_key, write_cache
from .ravdess import Clip
from .room_augment import POOL_CLIPS
from .rooms import PROTOCOL_MICROPHONES, PROTOCOL_ROOMS, Room

#: Every condition a stream is heard in: protocol (d)'s rooms, then protocol (e)'s microphones.
HEARD = PROTOCOL_ROOMS + PROTOCOL_MICROPHONES

#: Silence between two clips of a stream (each clip has about a second of room tone of its own).
GAP_S = 1.2


@dataclass(frozen=True)
class RoomStream:
    """One voice's stream in one room, segmented: what the fold's model will classify."""

    actor: int
    room: str
    X: np.ndarray  # (utterances, features): raw features of each utterance found, in stream order
    clip: np.ndarray  # per utterance: the clip (index into y) whose speech it overlaps most, -1 none
    overlap: np.ndarray  # per utterance: samples of that overlap
    cut: np.ndarray  # per utterance: closed at max_utterance_ms
    y: np.ndarray  # label per clip, in stream order


#: RoomStream's arrays, in its order, as the cache stores them.
SAVED = ("X", "clip", "overlap", "cut", "y")


@dataclass(frozen=True)
class RoomPlayed:
    """A model on one RoomStream: per clip 1 right, 0 wrong (or missed); segmentation counts."""

    actor: int
    room: str
    right: np.ndarray  # per clip
    right_all_heard: np.ndarray  # per clip, every utterance classified with the whole stream's statistics
    found: np.ndarray  # utterances per clip
    cut: int  # utterances closed at max_utterance_ms
    spurious: int  # utterances overlapping no clip's speech
    proba: np.ndarray  # (utterances, classes), float32: each utterance's probabilities, as a device publishes them
    labels: np.ndarray  # per utterance: the label of the clip it overlaps most, "" for a spurious one
    voice: np.ndarray  # (utterances, voice statistics), float32: each utterance's raw, for the calibration


def layout(clips: Sequence[np.ndarray], rate: int, config: SegmenterConfig) -> tuple[np.ndarray, np.ndarray]:
    """The clips end to end with ``GAP_S`` of silence before each and after the last, and each clip's
    speech span in the stream (``speech_span`` of the clean clip)."""
    gap = np.zeros(round(GAP_S * rate), np.float32)
    parts, spans, offset = [], [], 0
    for clip in clips:
        start, end = speech_span(to_int16(clip), config)
        spans.append((offset + gap.size + start, offset + gap.size + end))
        parts += [gap, clip]
        offset += gap.size + clip.size
    parts.append(gap)
    return np.concatenate(parts), np.array(spans)


def match(starts: np.ndarray, ends: np.ndarray, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per utterance [start, end), the span it overlaps most (-1: none) and that overlap in samples."""
    if not len(starts):
        return np.zeros(0, int), np.zeros(0, int)
    overlap = np.minimum(ends[:, None], spans[None, :, 1]) - np.maximum(starts[:, None], spans[None, :, 0])
    overlap = np.maximum(overlap, 0)
    best = overlap.argmax(axis=1)
    most = overlap[np.arange(len(starts)), best]
    return np.where(most > 0, best, -1), most


def _actor_streams(
    actor: int,
    paths: list[Path],
    labels: list[str],
    pool_paths: list[Path],
    params: FeatureParams,
    config: SegmenterConfig,
    seed: int,
    file: Path,
) -> list[RoomStream]:
    """One actor's stream in every room of HEARD, from the cache or segmented."""
    if file.exists():
        with np.load(file) as saved:
            return [
                RoomStream(actor, room.name, *(saved[f"{key}{i}"] for key in SAVED)) for i, room in enumerate(HEARD)
            ]
    rate = params.sample_rate
    rng = np.random.default_rng([seed, actor])
    order = rng.permutation(len(paths))
    samples, spans = layout([decode(paths[i].read_bytes(), rate) for i in order], rate, config)
    y = np.array(labels)[order]
    pool = [decode(p.read_bytes(), rate) for p in pool_paths]
    extract = extractor_for(params)
    streams = []
    for i, room in enumerate(HEARD):
        room_rng = np.random.default_rng([seed, actor, i])
        voices = [pool[k] for k in room_rng.choice(len(pool), min(POOL_CLIPS, len(pool)), replace=False)]
        heard = to_int16(room.apply(samples, rate, room_rng, voices))
        segmenter = Segmenter(config)
        found = segmenter.feed(heard) + segmenter.flush()
        X = np.array([extract(from_int16(u.samples)) for u in found]).reshape(len(found), -1)
        clip, overlap = match(np.array([u.start for u in found]), np.array([u.end for u in found]), spans)
        cut = np.array([u.cut for u in found], bool)
        streams.append(RoomStream(actor, room.name, X, clip, overlap, cut, y))
    arrays = {f"{key}{i}": getattr(s, key) for i, s in enumerate(streams) for key in SAVED}
    write_cache(file, partial(np.savez, **arrays))
    return streams


def streams_key(params: FeatureParams, config: SegmenterConfig, seed: int) -> str:
    settings = {
        "params": params.to_dict(),
        "segmenter": asdict(config),
        "seed": seed,
        "gap_s": GAP_S,
        "rooms": [asdict(room) for room in HEARD],
        "pool": POOL_CLIPS,
        "features": IMPLEMENTATION,
        "segmenter_code": hashlib.sha256(Path(segmenter.__file__).read_bytes()).hexdigest(),  # it changes
    }
    return settings_key(settings)


def fold_rooms(
    data: Dataset,
    clips: list[Clip],
    params: FeatureParams,
    cache_dir: Path,
    jobs: int,
    seed: int,
    config: SegmenterConfig | None = None,
) -> list[list[RoomStream]]:
    """Protocol (d)'s streams of each fold of protocol (b) (``data``: the features of ``clips``)."""
    config = config or SegmenterConfig(sample_rate=params.sample_rate)
    folder = cache_dir / f"room-streams-{streams_key(params, config, seed)}"
    folder.mkdir(parents=True, exist_ok=True)
    folds = ex.actor_folds(data)
    tasks, owners = [], []
    for f, (_, test) in enumerate(folds):
        held_out = sorted({int(a) for a in data.groups[test]})
        for actor in held_out:
            others = [a for a in held_out if a != actor] or [int(a) for a in np.unique(data.groups) if a != actor]
            mine = np.flatnonzero(data.groups == actor)
            pool = np.flatnonzero(np.isin(data.groups, others))
            key = hashlib.sha256("".join([data.digests[i] for i in mine] + [data.digests[i] for i in pool]).encode())
            file = folder / f"{actor:02d}-{key.hexdigest()[:16]}.npz"
            tasks.append(
                delayed(_actor_streams)(
                    actor,
                    [clips[i].path for i in mine],
                    [str(data.labels[i]) for i in mine],
                    [clips[i].path for i in pool],
                    params,
                    config,
                    seed,
                    file,
                )
            )
            owners.append(f)
    results = Parallel(n_jobs=jobs)(tasks)
    by_fold: list[list[RoomStream]] = [[] for _ in folds]
    for streams, f in zip(results, owners, strict=True):
        by_fold[f] += streams
    return by_fold


def play_room(model: ClassifierMixin, stream: RoomStream, prior: AdapterPrior | None) -> RoomPlayed:
    """``stream`` through a fresh adapter (without ``prior``, the raw features) and ``model``: each
    utterance with the statistics of those before it and, as a second figure, with all of them."""
    online = after_all = stream.X
    if prior is not None and len(stream.X):
        adapter = VoiceAdapter(prior)
        online = adapter.hear(stream.X)
        after_all = adapter.normalise(stream.X)
    found = np.bincount(stream.clip[stream.clip >= 0], minlength=len(stream.y))
    proba = _proba(model, online)
    right = _per_clip(_predict(model, proba), stream)
    right_all = right if after_all is online else _per_clip(_predict(model, _proba(model, after_all)), stream)
    cut, spurious = int(stream.cut.sum()), int((stream.clip < 0).sum())
    labels = np.array([stream.y[c] if c >= 0 else "" for c in stream.clip], dtype=str)
    voice = cal.voice_of(stream.X).astype(np.float32)
    return RoomPlayed(
        stream.actor, stream.room, right, right_all, found, cut, spurious, proba.astype(np.float32), labels, voice
    )


def _proba(model: ClassifierMixin, features: np.ndarray) -> np.ndarray:
    if not len(features):
        return np.zeros((0, len(model.classes_)))
    return model.predict_proba(features.astype(TRAINING_DTYPE))


def _predict(model: ClassifierMixin, proba: np.ndarray) -> np.ndarray:
    """The labels of ``proba``'s rows: their argmax, as the model's ``predict`` gives them."""
    return np.asarray(model.classes_)[proba.argmax(axis=1)]


def _per_clip(predicted: np.ndarray, stream: RoomStream) -> np.ndarray:
    """1 where the utterance overlapping a clip most is classified as its emotion, else (none) 0."""
    right = np.zeros(len(stream.y))
    for c in range(len(stream.y)):
        mine = np.flatnonzero(stream.clip == c)
        if mine.size:
            right[c] = float(predicted[mine[np.argmax(stream.overlap[mine])]] == stream.y[c])
    return right


def play_rooms(rooms: Sequence[RoomStream], prior: AdapterPrior | None, model: ClassifierMixin) -> list[RoomPlayed]:
    return [play_room(model, stream, prior) for stream in rooms]


def summarise(played: Sequence[RoomPlayed], rooms: Sequence[Room] = PROTOCOL_ROOMS) -> dict[str, dict[str, Any]]:
    """Protocol (d) (or, with ``PROTOCOL_MICROPHONES``, (e)) per room: accuracy over clips, per actor, and
    the segmentation figures."""
    summary = {}
    for room in rooms:
        runs = [p for p in played if p.room == room.name]
        if not runs:
            continue
        found = np.concatenate([p.found for p in runs])
        utterances = int(found.sum()) + sum(p.spurious for p in runs)
        summary[room.name] = {
            "accuracy": float(np.concatenate([p.right for p in runs]).mean()),
            "accuracy_all_heard": float(np.concatenate([p.right_all_heard for p in runs]).mean()),
            "per_actor": {str(p.actor): float(p.right.mean()) for p in runs},
            "clips": int(found.size),
            "utterances_per_clip": float(found.mean()),
            "found_once": float(np.mean(found == 1)),
            "missed": float(np.mean(found == 0)),
            "spurious_per_clip": sum(p.spurious for p in runs) / found.size,
            "cut_share": sum(p.cut for p in runs) / utterances if utterances else 0.0,
        }
    return summary


def mean_accuracy(summary: dict[str, dict[str, Any]]) -> float:
    """Protocol (d) in one figure: the mean over the rooms."""
    return float(np.mean([room["accuracy"] for room in summary.values()]))
