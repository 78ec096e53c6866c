"""Training copies heard in rooms (issue 15): noise, babble and reverberation, beside the speed copies.

Each clip gets ``copies`` extra rows: the clip heard in a room of ``train.rooms.random_room``, then
cut to the span the daemon's segmenter finds in the clean clip (as the other rows are). A room is
drawn once per actor and copy, its noise once per clip: copy j of an actor is that voice in one
room, as a device hears it, and the adapter's per-voice statistics (``adaptation.voices_of``: one
voice per actor and copy) see a voice in a room. The room's SNR is against the voice's level (all
the actor's clips of the run, ``rooms.voice_level``), not each clip's: the noise of a copy is as
loud under the actor's calm clips as under its angry ones, so the soft ones are heard under the
noise as a device hears them.

Babble is made of the other actors of the clip's own protocol (b) fold: whenever the clip is a
training clip, so are they (a fold holds them out together), so no held-out voice is ever heard in
a training row, and the copies can be computed once and cached. With one actor per fold (five actors
or fewer) there is no such voice: pink noise instead of babble. Protocol (a)'s random split may test
a clip whose audio is in another actor's babble (at least 10 dB under that actor's voice); (a) is
for comparison with the article only. Test rows are originals only (``Dataset.rows``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from ser_stream.audio import to_int16
from ser_stream.features import IMPLEMENTATION, FeatureParams, extractor_for
from ser_stream.segmenter import SegmenterConfig, speech_span

from . import experiments as ex
from .dataset import Dataset, decode, settings_key, write_cache
from .ravdess import Clip
from .rooms import AUGMENT_RT60_S, AUGMENT_SNR_DB, BABBLE_VOICES, random_room, voice_level

#: Room copies per training clip of the shipped recipe (``--rooms``): each costs as much fit time as
#: a speed copy. Three, chosen by protocols (c) and (d): 1, 2, 3, 4 copies gave 66.5, 67.7, 68.1 and
#: 68.2 % (four emotions; pink noise at 20 dB 57.8 → 64.7 % at three), 50.3, 50.5 and 50.7 % (eight).
ROOM_COPIES = 3
#: Clips of other speakers drawn for one babble: enough for four voices that never repeat a clip.
POOL_CLIPS = 8


def babble_actors(data: Dataset) -> dict[int, list[int]]:
    """Per actor, the voices its babble is made of: the other actors of its protocol (b) fold."""
    mates: dict[int, list[int]] = {}
    for _, test in ex.actor_folds(data):
        fold = sorted({int(a) for a in data.groups[test]})
        mates.update({actor: [other for other in fold if other != actor] for actor in fold})
    return mates


def rooms_key(params: FeatureParams, trim: SegmenterConfig | None, copies: int, seed: int) -> str:
    settings = {
        "params": params.to_dict(),
        "trim": asdict(trim) if trim else None,
        "copies": copies,
        "seed": seed,
        "snr_db": list(AUGMENT_SNR_DB),
        "rt60_s": list(AUGMENT_RT60_S),
        "voices": BABBLE_VOICES,
        "pool": POOL_CLIPS,
        "features": IMPLEMENTATION,
        "snr_against": "voice",  # the level of all the actor's clips, not each clip's
    }
    return settings_key(settings)


def _actor_copies(
    actor: int,
    paths: list[Path],
    digests: list[str],
    pool_paths: list[Path],
    pool_digests: list[str],
    params: FeatureParams,
    trim: SegmenterConfig | None,
    copies: int,
    seed: int,
    folder: Path,
) -> np.ndarray:
    """(clips, copies, features) of one actor's clips, from the cache or computed."""
    pool_key = hashlib.sha256("".join(sorted(pool_digests)).encode()).hexdigest()[:16]
    files = [folder / f"{actor:02d}-{digest}-{pool_key}.npy" for digest in digests]
    if all(f.exists() for f in files):
        return np.stack([np.load(f) for f in files])
    rate = params.sample_rate
    pool = [decode(p.read_bytes(), rate) for p in pool_paths]
    babble = len(pool) >= BABBLE_VOICES
    rooms = [random_room(np.random.default_rng([seed, actor, j]), babble) for j in range(copies)]
    extract = extractor_for(params)
    voice = [decode(path.read_bytes(), rate) for path in paths]
    level = voice_level(voice)
    out = []
    for samples, digest, file in zip(voice, digests, files, strict=True):
        start, end = speech_span(to_int16(samples), trim) if trim else (0, samples.size)
        rows = []
        for j, room in enumerate(rooms):
            rng = np.random.default_rng([seed, j, int(digest[:12], 16)])
            voices = [pool[i] for i in rng.choice(len(pool), min(POOL_CLIPS, len(pool)), replace=False)] if pool else []
            rows.append(extract(room.apply(samples, rate, rng, voices, level)[start:end]))
        stacked = np.stack(rows)
        write_cache(file, partial(np.save, arr=stacked))
        out.append(stacked)
    return np.stack(out)


def with_room_copies(
    data: Dataset,
    clips: list[Clip],
    params: FeatureParams,
    cache_dir: Path,
    jobs: int,
    copies: int,
    seed: int,
    trim: SegmenterConfig | None = None,
) -> Dataset:
    """``data`` (the features of ``clips``) with ``copies`` room rows per clip appended, variant-major
    as the speed copies are: every copy is a training row only, never a test row."""
    if copies == 0:
        return data
    folder = cache_dir / f"rooms-{rooms_key(params, trim, copies, seed)}"
    folder.mkdir(parents=True, exist_ok=True)
    mates = babble_actors(data)
    by_actor = {int(a): np.flatnonzero(data.groups == a) for a in np.unique(data.groups)}
    pools = {a: np.flatnonzero(np.isin(data.groups, mates[a])) for a in by_actor}
    results = Parallel(n_jobs=jobs)(
        delayed(_actor_copies)(
            actor,
            [clips[i].path for i in rows],
            [data.digests[i] for i in rows],
            [clips[i].path for i in pools[actor]],
            [data.digests[i] for i in pools[actor]],
            params,
            trim,
            copies,
            seed,
            folder,
        )
        for actor, rows in by_actor.items()
    )
    per_clip = np.empty((data.n_clips, copies, data.X.shape[1]), dtype=data.X.dtype)
    for rows, features in zip(by_actor.values(), results, strict=True):
        per_clip[rows] = features
    n = data.n_clips
    return replace(
        data,
        X=np.concatenate([data.X, per_clip.transpose(1, 0, 2).reshape(copies * n, -1)]),
        y=np.concatenate([data.y, np.tile(data.labels, copies)]),
        clip=np.concatenate([data.clip, np.tile(np.arange(n), copies)]),
        original=np.concatenate([data.original, np.zeros(copies * n, bool)]),
    )
