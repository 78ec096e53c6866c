"""Feature rows for a list of clips: all cores, a progress bar, a content-keyed disk cache.

A ``Dataset`` holds one row per clip and, when augmented, extra rows per clip
(speed-perturbed copies).  Splits are made over clips and mapped to rows so an
augmented copy is only ever trained on, never tested, and never crosses a split.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile
from joblib import Parallel, delayed
from tqdm import tqdm

from ser_stream.audio import to_int16, to_model_rate
from ser_stream.features import IMPLEMENTATION, FeatureParams, extractor_for
from ser_stream.segmenter import SegmenterConfig, speech_span

from .augment import speed_perturb
from .ravdess import Clip


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ser-stream" / "features"


def cache_key(params: FeatureParams, speeds: tuple[float, ...], trim: SegmenterConfig | None) -> str:
    settings = {
        "params": params.to_dict(),
        "speeds": list(speeds),
        "trim": asdict(trim) if trim else None,
        "features": IMPLEMENTATION,  # the code that computes them, not librosa's version
    }
    return settings_key(settings)


def settings_key(settings: dict[str, Any]) -> str:
    """A cache folder's name for what its files depend on: 16 hex digits of the SHA-256 of ``settings``
    as sorted JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def write_cache(file: Path, save: Callable[[BinaryIO], None]) -> None:
    """``save`` into ``file`` through a temporary file of this process, then renamed: parallel workers
    computing the same file never leave half of one for a reader."""
    staging = file.with_suffix(f".{os.getpid()}.tmp")
    with open(staging, "wb") as handle:
        save(handle)
    staging.replace(file)


def _features_of(
    path: Path, params: FeatureParams, speeds: tuple[float, ...], trim: SegmenterConfig | None, folder: Path
) -> tuple[str, np.ndarray]:
    """(content SHA-256, rows) of one file: the original first, then one row per speed.

    With ``trim``, the audio is first cut to the span the daemon's segmenter would hand over.
    """
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    cached = folder / f"{digest}.npy"
    if cached.exists():
        return digest, np.load(cached)
    samples = decode(data, params.sample_rate)
    if trim is not None:
        start, end = speech_span(to_int16(samples), trim)
        samples = samples[start:end]
    extract = extractor_for(params)
    variants = [samples] + [speed_perturb(samples, params.sample_rate, s) for s in speeds]
    rows = np.stack([extract(v) for v in variants])
    write_cache(cached, partial(np.save, arr=rows))
    return digest, rows


def decode(data: bytes, rate: int) -> np.ndarray:
    """An audio file's bytes as mono float32 at ``rate``."""
    samples, file_rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return to_model_rate(samples, file_rate, rate)


#: Our models' feature matrices: scikit-learn's MLP trains in the input's precision, and float32 fits
#: take about two thirds of float64's time. The seed's experiments keep float64 (``dtype``), the
#: arithmetic they were run with, so their rows stay the same to the bit.
TRAINING_DTYPE = np.float32


@dataclass(frozen=True)
class Dataset:
    X: np.ndarray  # (rows, features): the originals in clip order, then the augmented copies
    y: np.ndarray  # label per row
    clip: np.ndarray  # clip index per row
    original: np.ndarray  # True for a clip's own row
    groups: np.ndarray  # actor per clip
    digests: list[str]  # content SHA-256 per clip

    @property
    def labels(self) -> np.ndarray:
        """Label per clip."""
        return self.y[self.original]

    @property
    def n_clips(self) -> int:
        return len(self.groups)

    def rows(self, train_clips: np.ndarray, test_clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Training rows (all copies of the training clips) and test rows (test originals only)."""
        train = np.flatnonzero(np.isin(self.clip, train_clips))
        test = np.flatnonzero(np.isin(self.clip, test_clips) & self.original)
        return train, test


def load_dataset(
    clips: list[Clip],
    params: FeatureParams,
    cache_dir: Path,
    jobs: int,
    speeds: tuple[float, ...] = (),
    trim: SegmenterConfig | None = None,
    dtype: type = TRAINING_DTYPE,
) -> Dataset:
    folder = cache_dir / cache_key(params, speeds, trim)
    folder.mkdir(parents=True, exist_ok=True)
    results = Parallel(n_jobs=jobs, return_as="generator")(
        delayed(_features_of)(clip.path, params, speeds, trim, folder) for clip in clips
    )
    per_clip = list(tqdm(results, total=len(clips), desc="features", unit="clip", leave=False))
    stacked = np.stack([rows for _, rows in per_clip])  # (clips, 1 + speeds, features)
    n_clips, n_variants, _ = stacked.shape
    variant_major = stacked.transpose(1, 0, 2).reshape(n_clips * n_variants, -1)
    labels = np.array([clip.emotion for clip in clips])
    return Dataset(
        X=variant_major.astype(dtype),
        y=np.tile(labels, n_variants),
        clip=np.tile(np.arange(n_clips), n_variants),
        original=np.arange(n_clips * n_variants) < n_clips,
        groups=np.array([clip.actor for clip in clips]),
        digests=[digest for digest, _ in per_clip],
    )


def fingerprint(clips: list[Clip], digests: list[str], root: Path) -> str:
    """One SHA-256 over the relative paths and contents of the training files."""
    digest = hashlib.sha256()
    for clip, file_digest in sorted(zip(clips, digests, strict=True), key=lambda pair: str(pair[0].path)):
        digest.update(f"{clip.path.relative_to(root).as_posix()}\0{file_digest}\n".encode())
    return digest.hexdigest()
