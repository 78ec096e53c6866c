"""Pitch and voice quality of an utterance: the prosody that MFCC, chroma and mel statistics leave out.

Emotion is carried by how high, how varied and how steady the voice is as much as by its timbre.
A YIN pitch track (de Cheveigné and Kawahara, 2002) over 25 ms windows every 10 ms; a window is
voiced when it is within ``GATE_DB`` of the utterance's loudest window, above ``SILENCE_DB``, and
periodic (its cumulative mean normalised difference at the chosen period below
``VOICED_APERIODICITY``). The statistics follow the prosodic and voice-quality parameters of eGeMAPS
(Eyben et al., 2016), computed per window rather than per glottal period: pitch in semitones
(level, spread, range, rise and fall), jitter, shimmer, harmonics-to-noise ratio, the rhythm of
voiced stretches and loudness.

Plain numpy, pure logic: the same function for training and serving.
"""

from __future__ import annotations

import numpy as np

WINDOW_S, HOP_S = 0.025, 0.010
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


#: Windows analysed at a time: the temporaries stay small enough to reuse memory (one block of the whole
#: utterance took 2-3x as long, most of it fresh pages).
FRAME_BLOCK = 32


class PitchTrack:
    """Per window: the pitch (Hz), whether it is voiced, its periodicity (normalised autocorrelation at
    the period) and its level (dB)."""

    def __init__(self, samples: np.ndarray, sample_rate: int) -> None:
        window, self.hop = round(WINDOW_S * sample_rate), round(HOP_S * sample_rate)
        self._window = window
        self._shortest, longest = int(sample_rate / FMAX_HZ), int(np.ceil(sample_rate / FMIN_HZ))
        span = window + longest + 1
        self._n_fft = 1 << int(np.ceil(np.log2(span)))  # lags up to the longest period never wrap around
        self._lags = np.arange(longest + 1)
        x = np.asarray(samples, dtype=np.float64)
        x = np.pad(x, (0, max(0, span - x.size)))
        frames = np.lib.stride_tricks.sliding_window_view(x, span)[:: self.hop]
        blocks = [self._analyse(frames[start : start + FRAME_BLOCK]) for start in range(0, len(frames), FRAME_BLOCK)]
        period, aperiodicity, self.periodicity, energy = (np.concatenate(parts) for parts in zip(*blocks, strict=True))
        self.pitch_hz = sample_rate / period
        self.level_db = 10 * np.log10(energy / window + 1e-12)
        self.loud = (self.level_db > self.level_db.max() - GATE_DB) & (self.level_db > SILENCE_DB)
        self.voiced = self.loud & (aperiodicity < VOICED_APERIODICITY)

    def _analyse(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """YIN on a block of windows: per window the period (samples), the aperiodicity there, the
        periodicity (normalised autocorrelation) there and the energy."""
        window, shortest, lags, n_fft = self._window, self._shortest, self._lags, self._n_fft
        # YIN's difference d(lag) = energy of the window + energy of the lagged window - 2 * their correlation
        correlation = np.fft.irfft(np.conj(np.fft.rfft(frames[:, :window], n_fft)) * np.fft.rfft(frames, n_fft), n_fft)
        correlation = correlation[:, : lags.size]
        cumulative = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
        energy = cumulative[:, window]
        lagged_energy = cumulative[:, lags + window] - cumulative[:, lags]
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


def voice_statistics(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The ``VOICE_STATISTICS`` of mono float audio at ``sample_rate`` (float64); zeros when fewer than
    ``MIN_VOICED`` windows are voiced."""
    track = PitchTrack(samples, sample_rate)
    voiced = track.voiced
    if voiced.sum() < MIN_VOICED:
        return np.zeros(len(VOICE_STATISTICS))
    per_second = sample_rate / track.hop
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
