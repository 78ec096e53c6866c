"""The one feature extractor shared by training and serving.

The seed recipe (DataFlair) is three librosa calls on one utterance:
``mfcc(y)``, ``chroma_stft(S=|stft(y)|)`` and ``melspectrogram(y)``, each
averaged over time: 40 + 12 + 128 = 180 values.  We reproduce it with one STFT
per utterance and filter banks built once per parameter set, and optionally
append more statistics over time (standard deviation, MFCC delta) that the
shipped model uses.  The mean block always comes first, equal to the seed's.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import librosa
import numpy as np
import scipy.fft

#: Added before log10 so silent bands stay finite.
LOG_FLOOR = 1e-10

#: Statistics over time that ``FeatureParams.statistics`` may name, in output order.
STATISTICS = ("mean", "std", "delta_std")


@dataclass(frozen=True)
class FeatureParams:
    """Everything that determines the feature vector; stored in the model manifest."""

    sample_rate: int = 16000
    n_fft: int = 2048
    hop_length: int = 512
    n_mfcc: int = 40
    n_chroma: int = 12
    n_mels: int = 128
    statistics: tuple[str, ...] = field(default=("mean",))
    #: "power" keeps the seed's mel statistics; "log" takes log10 of each (scale-free, better scaled).
    mel_scale: str = "power"

    def __post_init__(self) -> None:
        unknown = [s for s in self.statistics if s not in STATISTICS]
        if unknown or not self.statistics or self.statistics[0] != "mean":
            raise ValueError(f"statistics must start with 'mean' and use only {STATISTICS}, got {self.statistics}")
        if self.mel_scale not in ("power", "log"):
            raise ValueError(f"mel_scale must be 'power' or 'log', got {self.mel_scale!r}")
        object.__setattr__(self, "statistics", tuple(self.statistics))

    @property
    def n_features(self) -> int:
        per_frame = self.n_mfcc + self.n_chroma + self.n_mels
        return sum(self.n_mfcc if s == "delta_std" else per_frame for s in self.statistics)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["statistics"] = list(self.statistics)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureParams:
        d = dict(d)
        d["statistics"] = tuple(d.get("statistics", ("mean",)))
        return cls(**d)


#: The seed's 180-value recipe at 16 kHz.
SEED_PARAMS = FeatureParams()


class FeatureExtractor:
    """Turns one utterance into a feature vector; holds the filter banks for its params."""

    def __init__(self, params: FeatureParams = SEED_PARAMS) -> None:
        self.params = params
        self._mel_basis = librosa.filters.mel(sr=params.sample_rate, n_fft=params.n_fft, n_mels=params.n_mels)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one extractor per params, lives for the process
    def _chroma_basis(self, tuning: float) -> np.ndarray:
        p = self.params
        return librosa.filters.chroma(sr=p.sample_rate, n_fft=p.n_fft, tuning=tuning, n_chroma=p.n_chroma)

    def frames(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-frame MFCC, chroma and mel power, each (bands, frames), from one STFT."""
        p = self.params
        with warnings.catch_warnings():  # an utterance shorter than n_fft is centre-padded, as the seed's was
            warnings.filterwarnings("ignore", message="n_fft=.* is too large")
            magnitude = np.abs(librosa.stft(samples, n_fft=p.n_fft, hop_length=p.hop_length))
        power = magnitude**2
        mel = self._mel_basis @ power
        mfcc = scipy.fft.dct(librosa.power_to_db(mel), axis=0, type=2, norm="ortho")[: p.n_mfcc]
        # chroma_stft(S=magnitude) uses the magnitude as given, with its own tuning estimate.
        tuning = librosa.estimate_tuning(S=magnitude, sr=p.sample_rate, bins_per_octave=p.n_chroma)
        raw_chroma = self._chroma_basis(float(tuning)) @ magnitude
        chroma = librosa.util.normalize(raw_chroma, norm=np.inf, axis=0)
        return mfcc, chroma, mel

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Feature vector (``params.n_features`` float64 values) for mono float audio."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1 or samples.size == 0:
            raise ValueError("expected a non-empty mono signal")
        mfcc, chroma, mel = self.frames(samples)
        stacked = np.concatenate([mfcc, chroma, mel], axis=0)
        mel_rows = slice(mfcc.shape[0] + chroma.shape[0], None)
        parts = []
        for statistic in self.params.statistics:
            if statistic in ("mean", "std"):
                values = stacked.mean(axis=1) if statistic == "mean" else stacked.std(axis=1)
                if self.params.mel_scale == "log":
                    values[mel_rows] = np.log10(values[mel_rows] + LOG_FLOOR)
                parts.append(values)
            else:  # delta_std: how fast the timbre moves
                width = min(9, mfcc.shape[1] - (1 - mfcc.shape[1] % 2))
                delta = librosa.feature.delta(mfcc, width=width) if width >= 3 else np.zeros_like(mfcc)
                parts.append(delta.std(axis=1))
        return np.concatenate(parts).astype(np.float64)


@functools.lru_cache(maxsize=8)
def extractor_for(params: FeatureParams) -> FeatureExtractor:
    """A shared extractor per parameter set, so banks are built once per process."""
    return FeatureExtractor(params)


def extract_features(samples: np.ndarray, sample_rate: int = 16000, params: FeatureParams | None = None) -> np.ndarray:
    """Feature vector of one utterance of mono float32 audio at ``params.sample_rate``."""
    params = params or FeatureParams(sample_rate=sample_rate)
    if sample_rate != params.sample_rate:
        raise ValueError(f"audio is at {sample_rate} Hz, features expect {params.sample_rate} Hz")
    return extractor_for(params)(samples)
