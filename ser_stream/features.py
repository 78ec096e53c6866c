"""The one feature extractor shared by training and serving.

The seed recipe (DataFlair) is three librosa calls on one utterance:
``mfcc(y)``, ``chroma_stft(S=|stft(y)|)`` and ``melspectrogram(y)``, each
averaged over time: 40 + 12 + 128 = 180 values.  We reproduce it with one STFT
per utterance and filter banks built once per parameter set, and optionally
append more statistics over time (standard deviation, MFCC delta) that the
shipped model uses.  The mean block always comes first, equal to the seed's.  With
``voice``, the pitch and voice-quality statistics of ``ser_stream.voice`` come last.

It is plain numpy: the STFT, the mel and chroma filter banks, the tuning estimate
(librosa's ``piptrack``) and the delta follow librosa 0.11's definitions, so serving
imports neither librosa nor, through it, numba and llvmlite (about 110 MB and half
a second at start-up, and a JIT compilation on the first utterance), nor scipy.
The tests hold each piece to librosa and the whole to the recipe.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .voice import VOICE_STATISTICS, GrowingVoice, voice_statistics

#: Added before log10 so silent bands stay finite.
LOG_FLOOR = 1e-10
#: Which arithmetic computes the features: bump it on any numeric change, so that training's
#: feature cache (and a model manifest) tells features of this code from any other's.
IMPLEMENTATION = "numpy-3"  # 3: the voice statistics (their pitch track at 8 kHz)

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
    #: Append the pitch and voice-quality statistics (``ser_stream.voice``).
    voice: bool = False

    def __post_init__(self) -> None:
        unknown = [s for s in self.statistics if s not in STATISTICS]
        if unknown or not self.statistics or self.statistics[0] != "mean":
            raise ValueError(f"statistics must start with 'mean' and use only {STATISTICS}, got {self.statistics}")
        if self.mel_scale not in ("power", "log"):
            raise ValueError(f"mel_scale must be 'power' or 'log', got {self.mel_scale!r}")
        if not isinstance(self.voice, bool):
            raise ValueError(f"voice must be true or false, got {self.voice!r}")
        object.__setattr__(self, "statistics", tuple(self.statistics))

    @property
    def n_features(self) -> int:
        per_frame = self.n_mfcc + self.n_chroma + self.n_mels
        over_time = sum(self.n_mfcc if s == "delta_std" else per_frame for s in self.statistics)
        return over_time + (len(VOICE_STATISTICS) if self.voice else 0)

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


#: librosa's defaults that the recipe relies on.
AMIN = 1e-10  # power_to_db floor
TOP_DB = 80.0  # power_to_db dynamic range
PITCH_FMIN, PITCH_FMAX, PITCH_THRESHOLD = 150.0, 4000.0, 0.1  # piptrack, for the chroma tuning estimate
TUNING_RESOLUTION = 0.01  # estimate_tuning: fractions of a chroma bin
#: STFT frames transformed at a time: the float64 temporaries stay in cache and reuse memory.
FFT_BLOCK = 32
#: Mel bands projected together, over just the FFT bins they cover: 1/7 of the full product's work.
MEL_GROUP = 8


def hann_window(n_fft: int) -> np.ndarray:
    """The periodic Hann window, computed as scipy.signal.get_window("hann", n_fft) does (float64)."""
    return 0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, n_fft + 1)[:-1])


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.atleast_1d(np.asarray(hz, dtype=np.float64))
    log_region = hz >= 1000.0
    mels = hz / (200.0 / 3)
    mels[log_region] = 15.0 + np.log(hz[log_region] / 1000.0) / (np.log(6.4) / 27.0)
    return mels


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """The inverse of `hz_to_mel`."""
    mels = np.atleast_1d(np.asarray(mels, dtype=np.float64))
    log_region = mels >= 15.0
    hz = (200.0 / 3) * mels
    hz[log_region] = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels[log_region] - 15.0))
    return hz


def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels): Slaney-normalised triangles, float32."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lowest, highest = hz_to_mel(np.array([0.0, sample_rate / 2]))
    mel_f = mel_to_hz(np.linspace(lowest, highest, n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, fft_freqs.size), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


def chroma_filters(sample_rate: int, n_fft: int, n_chroma: int, tuning: float) -> np.ndarray:
    """librosa.filters.chroma(sr=..., n_fft=..., n_chroma=..., tuning=...): Gaussian bumps per pitch class, float32."""
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (a440 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    distance = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    distance = np.remainder(distance + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2 * distance / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    weights /= np.sqrt(np.sum(weights**2, axis=0, keepdims=True))  # unit L2 norm per FFT bin (none is zero)
    weights *= np.tile(np.exp(-0.5 * ((frqbins / n_chroma - 5.0) / 2) ** 2), (n_chroma, 1))  # centred on octave 5
    weights = np.roll(weights, -3 * (n_chroma // 12), axis=0)  # start at C
    return np.ascontiguousarray(weights[:, : 1 + n_fft // 2], dtype=np.float32)


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix: ``dct_matrix(k, n) @ x`` = scipy.fft.dct(x, type=2, norm="ortho")[:k]."""
    k = np.arange(n_out)[:, np.newaxis]
    basis = np.cos(np.pi * k * (2 * np.arange(n_in) + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis


def power_to_db(power: np.ndarray) -> np.ndarray:
    """librosa.power_to_db(power) with its defaults (ref 1, amin 1e-10, top_db 80)."""
    db = 10.0 * np.log10(np.maximum(AMIN, power))
    return np.maximum(db, db.max() - TOP_DB)


def band_blocks(basis: np.ndarray, group: int) -> list[tuple[slice, slice, np.ndarray]]:
    """(bands, bins, weights) per group of consecutive bands: ``basis`` without its columns of zeros.

    ``basis @ x`` is the sum of ``weights @ x[bins]`` into rows ``bands``; groups of zeros are left out.
    """
    blocks = []
    for start in range(0, basis.shape[0], group):
        bands = slice(start, start + group)
        covered = np.flatnonzero(basis[bands].any(axis=0))
        if covered.size:
            bins = slice(int(covered[0]), int(covered[-1]) + 1)
            blocks.append((bands, bins, np.ascontiguousarray(basis[bands, bins])))
    return blocks


class FeatureExtractor:
    """Turns one utterance into a feature vector; holds the filter banks for its params."""

    def __init__(self, params: FeatureParams = SEED_PARAMS) -> None:
        self.params = params
        self._window = hann_window(params.n_fft)
        self._mel_blocks = band_blocks(mel_filters(params.sample_rate, params.n_fft, params.n_mels), MEL_GROUP)
        self._dct = dct_matrix(params.n_mfcc, params.n_mels)
        fft_freqs = np.fft.rfftfreq(params.n_fft, 1.0 / params.sample_rate)
        in_range = np.flatnonzero((fft_freqs >= PITCH_FMIN) & (fft_freqs < min(PITCH_FMAX, params.sample_rate / 2)))
        self._pitch_rows = slice(int(in_range[0]), int(in_range[-1]) + 1)  # the FFT bins piptrack looks at

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one extractor per params, lives for the process
    def _chroma_basis(self, tuning: float) -> np.ndarray:
        p = self.params
        return chroma_filters(p.sample_rate, p.n_fft, p.n_chroma, tuning)

    def magnitude(self, samples: np.ndarray) -> np.ndarray:
        """|librosa.stft(samples)| (centred, zero-padded, periodic Hann), (1 + n_fft/2, frames) float32."""
        padded = np.pad(samples, self.params.n_fft // 2)
        return self.magnitude_rows(padded).T

    def magnitude_rows(self, padded: np.ndarray) -> np.ndarray:
        """The STFT magnitude of the frames of ``padded`` (already centred), (frames, 1 + n_fft/2) float32."""
        p = self.params
        frames = np.lib.stride_tricks.sliding_window_view(padded, p.n_fft)[:: p.hop_length]
        magnitude = np.empty((frames.shape[0], p.n_fft // 2 + 1), dtype=np.float32)
        for start in range(0, frames.shape[0], FFT_BLOCK):  # small temporaries: 3x faster than one big FFT
            block = np.fft.rfft(frames[start : start + FFT_BLOCK] * self._window, axis=1)
            magnitude[start : start + FFT_BLOCK] = np.abs(block.astype(np.complex64))  # librosa keeps complex64
        return magnitude

    def mel(self, magnitude: np.ndarray) -> np.ndarray:
        """Mel power per frame, (n_mels, frames) float32, from the magnitude (bins, frames)."""
        power = magnitude**2
        mel = np.zeros((self.params.n_mels, power.shape[1]), dtype=np.float32)
        for bands, bins, weights in self._mel_blocks:
            np.matmul(weights, power[bins], out=mel[bands])
        return mel

    def tuning(self, magnitude: np.ndarray) -> float:
        """librosa.estimate_tuning(S=magnitude): the commonest deviation of spectral peaks from equal temperament."""
        return self.tuning_of(*self.spectral_peaks(magnitude))

    def spectral_peaks(self, magnitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """piptrack's peaks (local maxima above a tenth of their frame's loudest bin, 150 Hz to 4 kHz) with
        its parabolic interpolation, computed at the peaks only: (pitches, magnitudes), float32.

        The arithmetic is librosa's numba stencil's (sums in float32, the rest in float64), so the
        estimate is the same to the bit.  Each frame's peaks are its own.
        """
        p = self.params
        lo, hi = self._pitch_rows.start, self._pitch_rows.stop
        context = magnitude[lo - 1 : hi + 1]  # and each bin's neighbours: 0 Hz and Nyquist are out of range
        gated = context * (context > PITCH_THRESHOLD * magnitude.max(axis=0))
        centre = gated[1:-1]
        rows, columns = np.nonzero((centre > gated[:-2]) & (centre >= gated[2:]))
        below, peak, above = (context[rows + k, columns] for k in range(3))
        a = (above + below).astype(np.float64) - 2 * peak.astype(np.float64)
        b = (above - below).astype(np.float64) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a).astype(np.float32)
        pitches = ((rows + lo + shift) * float(p.sample_rate) / p.n_fft).astype(np.float32)
        return pitches, peak + 0.5 * ((above - below) / 2.0) * shift

    def tuning_of(self, pitches: np.ndarray, magnitudes: np.ndarray) -> float:
        """The tuning estimate from the spectral peaks of every frame (0 when there are none)."""
        if pitches.size == 0:
            return 0.0
        pitches = pitches[magnitudes >= np.median(magnitudes)]
        residual = np.mod(self.params.n_chroma * np.log2(pitches / (440.0 / 16)), 1.0)
        residual[residual >= 0.5] -= 1.0
        counts, edges = np.histogram(residual, np.linspace(-0.5, 0.5, int(np.ceil(1.0 / TUNING_RESOLUTION)) + 1))
        return float(edges[np.argmax(counts)])

    def frames(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-frame MFCC, chroma and mel power, each (bands, frames), from one STFT."""
        magnitude = self.magnitude(samples)
        return self.combine(magnitude, self.mel(magnitude), self.tuning(magnitude))

    def combine(
        self, magnitude: np.ndarray, mel: np.ndarray, tuning: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """MFCC, chroma and mel per frame from what spans the whole utterance: the dB scale (relative to
        its loudest band) and the tuning."""
        mfcc = (self._dct @ power_to_db(mel)).astype(np.float32)  # float32, as scipy's DCT gives the recipe
        raw_chroma = self._chroma_basis(tuning) @ magnitude
        peak = np.max(np.abs(raw_chroma), axis=0)
        peak[peak < np.finfo(raw_chroma.dtype).tiny] = 1.0  # silent frames stay zero
        return mfcc, raw_chroma / peak, mel

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Feature vector (``params.n_features`` float64 values) for mono float audio."""
        samples = _mono(samples)
        over_time = self.statistics(*self.frames(samples))
        if not self.params.voice:
            return over_time
        return np.concatenate([over_time, voice_statistics(samples, self.params.sample_rate)])

    def statistics(self, mfcc: np.ndarray, chroma: np.ndarray, mel: np.ndarray) -> np.ndarray:
        """The feature vector: ``params.statistics`` of the frames over time."""
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
                parts.append(delta(mfcc).std(axis=1))
        return np.concatenate(parts).astype(np.float64)


def _mono(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1 or samples.size == 0:
        raise ValueError("expected a non-empty mono signal")
    return samples


class GrowingFeatures:
    """The features of an utterance still being heard, again and again as it grows (interim results).

    Each call gets the utterance so far: the same start, at least as long as the last.  The STFT
    frames that later audio cannot change (those whose window lies inside what was heard) are kept
    with their mel bands and spectral peaks, so a call transforms only the new audio and the last
    few frames; what spans the whole utterance (the tuning, the dB scale, the statistics) is
    computed again from them.  The result is the extractor's on the same audio.
    """

    def __init__(self, extractor: FeatureExtractor) -> None:
        self._extractor = extractor
        p = extractor.params
        self._half, self._hop = p.n_fft // 2, p.hop_length
        self._heard = 0  # samples of the last call
        self._kept = 0  # frames kept
        self._magnitude = np.empty((0, p.n_fft // 2 + 1), dtype=np.float32)  # (frames, bins), grown by doubling
        self._mel = np.empty((p.n_mels, 0), dtype=np.float32)
        self._peaks: list[tuple[np.ndarray, np.ndarray]] = []  # per batch of kept frames
        self._voice = GrowingVoice(p.sample_rate) if p.voice else None  # keeps its own settled windows

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        samples = _mono(samples)
        if samples.size < self._heard:
            raise ValueError(f"an utterance only grows: {samples.size} samples after {self._heard}")
        self._heard = n = samples.size
        frames = n // self._hop + 1
        settled = max(0, (n - self._half) // self._hop + 1)  # windows inside the audio: final
        first = self._kept * self._hop - self._half  # where the first frame not kept begins
        padded = np.pad(samples[max(first, 0) :], (max(-first, 0), self._half))
        fresh = self._extractor.magnitude_rows(padded)  # frames kept .. frames
        self._reserve(frames)
        self._magnitude[self._kept : frames] = fresh
        magnitude = self._magnitude[:frames].T
        self._mel[:, self._kept : frames] = self._extractor.mel(magnitude[:, self._kept :])
        self._peaks.append(self._extractor.spectral_peaks(magnitude[:, self._kept : settled]))
        tail = self._extractor.spectral_peaks(magnitude[:, settled:])
        self._kept = settled
        pitches, magnitudes = (np.concatenate(parts) for parts in zip(*self._peaks, tail, strict=True))
        tuning = self._extractor.tuning_of(pitches, magnitudes)
        over_time = self._extractor.statistics(*self._extractor.combine(magnitude, self._mel[:, :frames], tuning))
        return over_time if self._voice is None else np.concatenate([over_time, self._voice(samples)])

    def _reserve(self, frames: int) -> None:
        if frames > self._magnitude.shape[0]:
            capacity = max(frames, 2 * self._magnitude.shape[0])
            magnitude = np.empty((capacity, self._magnitude.shape[1]), dtype=np.float32)
            magnitude[: self._kept] = self._magnitude[: self._kept]
            mel = np.empty((self._mel.shape[0], capacity), dtype=np.float32)
            mel[:, : self._kept] = self._mel[:, : self._kept]
            self._magnitude, self._mel = magnitude, mel


def delta(frames: np.ndarray, max_width: int = 9) -> np.ndarray:
    """librosa.feature.delta along time with the widest odd window up to ``max_width`` that fits; zeros if none.

    A Savitzky-Golay first derivative of order 1 (a least-squares slope) in "interp" mode: the
    edge frames take the slope fitted to the first or last full window.
    """
    n = frames.shape[1]
    width = min(max_width, n - (1 - n % 2))
    if width < 3:
        return np.zeros_like(frames)
    half = width // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    slopes = np.lib.stride_tricks.sliding_window_view(frames, width, axis=1) @ (offsets / np.sum(offsets**2))
    return np.concatenate(
        [np.repeat(slopes[:, :1], half, axis=1), slopes, np.repeat(slopes[:, -1:], half, axis=1)], axis=1
    )


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
