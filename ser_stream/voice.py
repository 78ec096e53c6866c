"""Pitch and voice quality of an utterance: the prosody that MFCC, chroma and mel statistics leave out.

Emotion is carried by how high, how varied and how steady the voice is as much as by its timbre.
A YIN pitch track (de Cheveigné and Kawahara, 2002) at 8 kHz over 25 ms windows every 10 ms; a window is
voiced when it is within ``GATE_DB`` of the utterance's loudest window, above ``SILENCE_DB``, and
periodic (its cumulative mean normalised difference at the chosen period below
``VOICED_APERIODICITY``). The statistics follow the prosodic and voice-quality parameters of eGeMAPS
(Eyben et al., 2016), computed per window rather than per glottal period: pitch in semitones
(level, spread, range, rise and fall), jitter, shimmer, harmonics-to-noise ratio, the rhythm of
voiced stretches and loudness.

Plain numpy, pure logic: the same function for training and serving.
"""

from __future__ import annotations

import functools

import numpy as np

WINDOW_S, HOP_S = 0.025, 0.010
#: The pitch track runs at this rate (the audio low-passed and decimated to it): the voice's pitch and
#: the harmonics that decide it lie below 4 kHz, and at half of 16 kHz the track is a quarter of the work.
ANALYSIS_RATE = 8000
#: Taps of the decimation low-pass per unit of the decimation factor (31 for 16 kHz to 8 kHz).
TAPS_PER_FACTOR = 16
FMIN_HZ, FMAX_HZ = 60.0, 500.0  # low male to high-pitched excited speech
#: YIN's absolute threshold: the first dip of the normalised difference below it is the period.
YIN_THRESHOLD = 0.15
VOICED_APERIODICITY = 0.35
GATE_DB = 40.0
SILENCE_DB = -70.0  # mean square re full scale: digital silence and a quiet line's hiss are not voice
#: Fewer voiced windows than this and the statistics are all zero (nothing to measure).
MIN_VOICED = 3
SEMITONE_REFERENCE_HZ = 27.5  # eGeMAPS' reference: semitones above A0

#: The statistics in output order.
VOICE_STATISTICS = (
    "pitch_mean_st",
    "pitch_std_st",
    "pitch_p20_st",
    "pitch_p50_st",
    "pitch_p80_st",
    "pitch_range_st",
    "pitch_rise_st_per_s",
    "pitch_fall_st_per_s",
    "pitch_slope_std_st_per_s",
    "jitter_mean",
    "jitter_std",
    "shimmer_mean_db",
    "shimmer_std_db",
    "hnr_mean_db",
    "hnr_std_db",
    "voiced_share",
    "voiced_segments_per_s",
    "voiced_segment_mean_s",
    "voiced_segment_std_s",
    "voiced_level_db",
    "level_std_db",
)


#: Windows analysed at a time: small temporaries reuse memory, and few enough calls keep numpy's
#: per-call overhead down (32 to 128 measured; 64 the fastest).
FRAME_BLOCK = 64


class Yin:
    """YIN's settings at one analysis rate, and the analysis of a run of windows."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.window, self.hop = round(WINDOW_S * rate), round(HOP_S * rate)
        self.shortest, longest = int(rate / FMAX_HZ), int(np.ceil(rate / FMIN_HZ))
        self.span = self.window + longest + 1  # what one window's analysis reads
        self.n_fft = 1 << int(np.ceil(np.log2(self.span)))  # lags up to the longest period never wrap around
        self.lags = np.arange(longest + 1)

    def padded(self, x: np.ndarray, before: int = 0) -> np.ndarray:
        """``x`` with zeros after it if the signal it ends (``before`` samples precede it) is shorter than
        one window's span."""
        return np.pad(x, (0, max(0, self.span - before - x.size)))

    def count(self, n: int) -> int:
        """Windows over ``n`` samples (at least one span of them)."""
        return (n - self.span) // self.hop + 1

    def analyse(self, x: np.ndarray, energy_before: np.ndarray) -> tuple[np.ndarray, ...]:
        """The windows of ``x`` (padded), whose ``running_energy`` is ``energy_before``: per window the
        period (samples), the aperiodicity there, the periodicity (normalised autocorrelation) there and
        the energy."""
        if x.size < self.span:  # no window: a growing utterance's tail whose windows are all kept
            return tuple(np.empty(0) for _ in range(4))
        frames = np.lib.stride_tricks.sliding_window_view(x, self.span)[:: self.hop]
        blocks = [
            self._block(frames[start : start + FRAME_BLOCK], start, energy_before)
            for start in range(0, len(frames), FRAME_BLOCK)
        ]
        return tuple(np.concatenate(parts) for parts in zip(*blocks, strict=True))

    def _block(self, frames: np.ndarray, first: int, energy_before: np.ndarray) -> tuple[np.ndarray, ...]:
        window, shortest, lags, n_fft = self.window, self.shortest, self.lags, self.n_fft
        # YIN's difference d(lag) = energy of the window + energy of the lagged window - 2 * their correlation
        correlation = np.fft.irfft(np.conj(np.fft.rfft(frames[:, :window], n_fft)) * np.fft.rfft(frames, n_fft), n_fft)
        correlation = correlation[:, : lags.size]
        offsets = (first + np.arange(len(frames)))[:, None] * self.hop + lags
        lagged_energy = np.maximum(energy_before[offsets + window] - energy_before[offsets], 0.0)
        energy = lagged_energy[:, 0]
        difference = np.maximum(energy[:, None] + lagged_energy - 2 * correlation, 0.0)
        normalised = np.ones_like(difference)
        running = np.maximum(np.cumsum(difference[:, 1:], axis=1), 1e-12)
        normalised[:, 1:] = difference[:, 1:] * lags[1:] / running
        searched = normalised[:, shortest:]
        dips = np.zeros_like(searched, dtype=bool)
        dips[:, 1:-1] = (searched[:, 1:-1] <= searched[:, :-2]) & (searched[:, 1:-1] <= searched[:, 2:])
        dips &= searched < YIN_THRESHOLD
        chosen = np.where(dips.any(axis=1), dips.argmax(axis=1), searched.argmin(axis=1))
        rows = np.arange(len(frames))
        centre = np.clip(chosen, 1, searched.shape[1] - 2)
        before, at, after = (searched[rows, centre + k] for k in (-1, 0, 1))
        curvature = before - 2 * at + after
        safe = np.where(np.abs(curvature) > 1e-12, curvature, 1.0)
        offset = np.where(np.abs(curvature) > 1e-12, np.clip(0.5 * (before - after) / safe, -1, 1), 0.0)
        lag = shortest + chosen
        periodicity = correlation[rows, lag] / np.sqrt(np.maximum(energy * lagged_energy[rows, lag], 1e-20))
        return shortest + centre + offset, searched[rows, chosen], periodicity, energy


def running_energy(x: np.ndarray, before: float = 0.0) -> np.ndarray:
    """The energy of the samples before each of ``x`` and after its last (window energies by difference),
    ``before`` that of the samples before ``x``. One running sum in order, so a signal's tail continued
    from the sum at its start has the whole signal's sums to the bit."""
    return np.cumsum(np.concatenate([[before], x**2]))


class PitchTrack:
    """Per window: the pitch (Hz), whether it is voiced, its periodicity (normalised autocorrelation at
    the period) and its level (dB)."""

    def __init__(
        self, yin: Yin, period: np.ndarray, aperiodicity: np.ndarray, periodicity: np.ndarray, energy: np.ndarray
    ) -> None:
        self.windows_per_second = yin.rate / yin.hop
        self.pitch_hz = yin.rate / period
        self.periodicity = periodicity
        self.level_db = 10 * np.log10(energy / yin.window + 1e-12)
        self.loud = (self.level_db > self.level_db.max() - GATE_DB) & (self.level_db > SILENCE_DB)
        self.voiced = self.loud & (aperiodicity < VOICED_APERIODICITY)

    @classmethod
    def of(cls, samples: np.ndarray, sample_rate: int) -> PitchTrack:
        """The track of mono float audio at ``sample_rate``."""
        x, rate = decimate(np.asarray(samples, dtype=np.float64), sample_rate)
        yin = Yin(rate)
        x = yin.padded(x)
        return cls(yin, *yin.analyse(x, running_energy(x)))


@functools.lru_cache(maxsize=8)  # designed once per rate, not per utterance and interim result
def decimation(sample_rate: int) -> tuple[int, np.ndarray]:
    """The decimation factor to ``ANALYSIS_RATE`` (the largest whole one that stays at or above it) and
    its low-pass filter (a Hamming-windowed sinc, unit gain; one tap when the factor is 1)."""
    factor = max(1, int(sample_rate // ANALYSIS_RATE))
    if factor == 1:
        return 1, np.ones(1)
    taps = TAPS_PER_FACTOR * factor - 1
    low_pass = np.sinc((np.arange(taps) - taps // 2) / factor) * np.hamming(taps)
    return factor, low_pass / low_pass.sum()


def decimate(samples: np.ndarray, sample_rate: int, first: int = 0) -> tuple[np.ndarray, float]:
    """``samples`` low-passed and kept every ``factor``-th (the filter computed at the kept samples
    only), from kept sample ``first`` on (reading only the input their filters reach), as float64, with
    their new rate."""
    factor, low_pass = decimation(sample_rate)
    if factor == 1:
        return np.asarray(samples[first:], dtype=np.float64), float(sample_rate)
    reach = low_pass.size // 2
    start = first * factor - reach  # the input sample the first filter begins at: zeros before the audio
    read = np.asarray(samples[max(0, start) :], dtype=np.float64)
    padded = np.pad(read, (max(0, -start), reach))
    windows = np.lib.stride_tricks.sliding_window_view(padded, low_pass.size)[::factor]
    return windows @ low_pass, sample_rate / factor


class GrowingVoice:
    """``voice_statistics`` of an utterance still being heard, again and again as it grows (interim
    results): the decimated samples and the windows' analysis that later audio cannot change are kept,
    so a call reads only the new audio and the last few windows (and keeps only what those read)."""

    def __init__(self, sample_rate: int) -> None:
        self._sample_rate = sample_rate
        self._factor, low_pass = decimation(sample_rate)
        self._reach = low_pass.size // 2  # input samples after a kept sample that its filter reads
        self._yin = Yin(sample_rate / self._factor)
        self._settled = 0  # decimated samples final
        self._start = 0  # the first decimated sample a window not kept reads
        self._x = np.empty(0)  # decimated samples from ``_start`` on (final up to ``_settled``)
        self._before = 0.0  # the running energy at ``_start``: final, as the samples before it are
        self._kept: tuple[np.ndarray, ...] = tuple(np.empty(0) for _ in range(4))  # analyses of final windows

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        fresh, _ = decimate(samples, self._sample_rate, self._settled)
        yin, start = self._yin, self._start
        x = yin.padded(np.concatenate([self._x[: self._settled - start], fresh]), start)
        energy_before = running_energy(x, self._before)
        analysed = tuple(np.concatenate(pair) for pair in zip(self._kept, yin.analyse(x, energy_before), strict=True))
        settled = max(0, (samples.size - 1 - self._reach) // self._factor + 1)  # filters within the audio
        final = max(0, yin.count(settled))  # windows inside the final samples
        self._start = final * yin.hop
        self._x, self._before = x[self._start - start :], energy_before[self._start - start]
        self._settled = settled
        self._kept = tuple(values[:final] for values in analysed)
        return statistics(PitchTrack(yin, *analysed))


def voice_statistics(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The ``VOICE_STATISTICS`` of mono float audio at ``sample_rate`` (float64); zeros when fewer than
    ``MIN_VOICED`` windows are voiced."""
    return statistics(PitchTrack.of(samples, sample_rate))


def statistics(track: PitchTrack) -> np.ndarray:
    """The ``VOICE_STATISTICS`` of a pitch track."""
    voiced = track.voiced
    if voiced.sum() < MIN_VOICED:
        return np.zeros(len(VOICE_STATISTICS))
    per_second = track.windows_per_second
    semitones = 12 * np.log2(track.pitch_hz / SEMITONE_REFERENCE_HZ)
    p20, p50, p80 = np.percentile(semitones[voiced], [20, 50, 80])
    both = voiced[1:] & voiced[:-1]  # consecutive voiced windows: where change is measured
    slopes = np.diff(semitones)[both] * per_second
    rises, falls = slopes[slopes > 0], slopes[slopes < 0]
    period = 1 / track.pitch_hz
    jitter = np.abs(np.diff(period))[both] / period[voiced].mean()
    shimmer = np.abs(np.diff(track.level_db))[both]
    periodicity = np.clip(track.periodicity[voiced], 1e-3, 0.999)
    hnr = 10 * np.log10(periodicity / (1 - periodicity))
    edges = np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]]))
    stretches = (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)) / per_second
    duration = len(voiced) / per_second
    return np.array(
        [
            semitones[voiced].mean(),
            semitones[voiced].std(),
            p20,
            p50,
            p80,
            p80 - p20,
            _mean(rises),
            _mean(falls),
            _std(slopes),
            _mean(jitter),
            _std(jitter),
            _mean(shimmer),
            _std(shimmer),
            hnr.mean(),
            hnr.std(),
            voiced.sum() / track.loud.sum(),
            stretches.size / duration,
            stretches.mean(),
            stretches.std(),
            track.level_db[voiced].mean() - track.level_db.max(),
            track.level_db[track.loud].std(),
        ]
    )


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 0.0


def _std(values: np.ndarray) -> float:
    return float(values.std()) if values.size else 0.0
