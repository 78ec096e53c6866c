"""Voice-activity segmentation: int16 audio of any block size in, utterances out.

The classic padded ring-buffer collector of py-webrtcvad's ``example.py`` as a small
streaming class in the manner of silero-vad's ``VADIterator``: webrtcvad labels each
10/20/30 ms frame voiced or not; speech starts when ``trigger_ratio`` of the frames in a
short trigger window are voiced, and ends once ``RELEASE_RATIO`` of the frames of the last
``hangover_ms`` (counted from the onset; in steady, audible noise at least ``STEADY_HANGOVER_MS``)
are unvoiced.  Pure code, no threads, no I/O: it
runs on the audio path, so each frame costs one VAD call, one small FFT and a few updates.
Samples go into one preallocated "tape" and an utterance is copied out of it once, when
it is emitted.

Bounds of an utterance, in stream samples:

- ``start`` is the first voiced frame of the trigger window minus ``pre_roll_ms`` (the soft
  onset webrtcvad misses), clamped at 0 and at the end of the previous emitted utterance,
  so utterances never overlap.
- ``end`` hugs the speech: at most ``TAIL_MS`` after the last voiced frame (soft word endings
  that fall below the VAD's threshold), never beyond ``closed_at``, the position at which the
  hangover expired and the segmenter decided.  ``closed_at - end`` is the decision latency.
  ``flush`` trims the utterance in progress the same way, with ``closed_at`` the stream end.
- An utterance longer than ``max_utterance_ms`` is emitted in windows of exactly that
  length with ``cut=True`` as soon as a frame crosses the limit; the next window starts at
  the sample the previous one ended.  Cut windows are not trimmed; if the speech ended
  before the cut (the hangover was still running), the silent remainder is no utterance.
- Energy gate: webrtcvad also calls breaths, room noise and reverberation "voiced".  Inside
  an utterance, a frame more than ``gate_db`` below the utterance's loudest voiced frame counts
  as non-speech, so trailing noise does not hold the utterance open; and when the utterance
  closes, its start moves up to ``pre_roll_ms`` before the first frame within ``gate_db`` of
  that peak, so a breath before the first word does not pull the start early.  ``gate_db=0``
  turns the gate off (plain webrtcvad).
- Noise gate: webrtcvad calls babble (other voices, a television) speech, and loud steady
  noise too, so on its own an utterance in such a room never ends.  The segmenter follows the
  room's noise floor (``noise_floor_dbfs``, minimum statistics) and, while webrtcvad calls the
  frames at that floor speech, counts a frame as speech only if it is at least ``noise_gate_db``
  above the floor.  Quiet steady noise webrtcvad already tells from speech (a fan) and clean
  audio are segmented as without the gate.  ``noise_gate_db=0`` turns it off.  A sound webrtcvad
  calls speech that never pauses for ``FLOOR_WINDOW_MS`` becomes the floor itself: a babble that
  is always there is, after a few seconds, the room.
- Speech band rescue: webrtcvad calls a voice quieter than steady noise (pink noise, a fan) non-speech
  (and in loud steady noise the noise gate masks it), and the frame's whole power does not tell it
  either, as most of that noise's power lies below the voice and swings from frame to frame.  In noise
  above ``BAND_AUDIBLE_DBFS`` that is steady and has been for most of the last ``STEADY_MS``, such a
  frame counts as speech when its power in ``BAND_HZ`` is ``BAND_GATE_DB`` above that band's own floor;
  it opens an utterance only if that band repeats at a pitch period (``RESCUE_PERIODICITY``), as a voice
  does and noise whose level swells and fades does not.
  Clean, reverberant and babbling rooms are segmented as without it; ``noise_gate_db=0`` turns it off
  with the noise gate.
- ``min_utterance_ms`` applies to ``end - start``, pre-roll and tail included; shorter
  utterances are dropped and counted in ``dropped_short``.

``feed`` returns the utterances; ``feed_events`` also says when the segmenter opens an utterance
(``SpeechStarted``) and closes it (``SpeechEnded``, with the utterance it emitted, if any), in
stream order, so a subscriber can hear of speech while it goes on.  Each window of a cut monologue
is opened and closed like an utterance of its own.  ``so_far`` copies the open utterance as it
stands, for interim results: at most ``max_utterance_ms``, and only when asked.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, fields

import numpy as np
import webrtcvad

from .settings import VAD_SAMPLE_RATES, VadSettings, option

#: Length of the window whose voiced fraction must reach ``trigger_ratio`` to start speech:
#: long enough that a lone click does not trigger, short enough to react within ~0.1 s.
TRIGGER_WINDOW_MS = 120

#: Fraction of the hangover frames that must be unvoiced to end speech; below 1 so one stray
#: voiced frame in the trailing silence (a click, a breath) does not hold the utterance open.
RELEASE_RATIO = 0.9

#: Audio kept after the last voiced frame when an utterance ends, for soft word endings
#: (decays, final consonants) that fall below the VAD's threshold.
TAIL_MS = 100

#: Noise floor: the minimum, over the last ``FLOOR_WINDOW_MS``, of the frame power smoothed with a
#: time constant of ``FLOOR_SMOOTHING_MS`` (minimum statistics, Martin 2001), over every frame:
#: webrtcvad calls babble speech, so its non-speech frames alone would never see a babbling room.
#: Speech pauses every few seconds, so the minimum is the room between words; the smoothing keeps
#: the minimum of a fluctuating noise from diving to its single quietest frame.
FLOOR_WINDOW_MS = 3000
FLOOR_SMOOTHING_MS = 180
#: The floor is known once this much of a stream has been heard (the minimum so far until a whole
#: window has): long enough to hold a pause, short enough to catch noise that is there from the start.
FLOOR_WARMUP_MS = 600

#: webrtcvad adapts to quiet steady noise (a fan) and calls it non-speech, but calls babble speech.  The
#: noise gate applies while it calls at least ``FOOLED_SHARE`` of the frames at the floor (within
#: ``FLOOR_NEAR_DB`` of it) speech, a share followed with a time constant of ``FOOLED_MS``; so the
#: gate never cuts into quiet speech that webrtcvad already tells from the room.
FLOOR_NEAR_DB = 3.0
FOOLED_SHARE = 0.5
FOOLED_MS = 1000

#: Steady noise (a loud fan, pink noise) against babble: how far the single quietest frame of the
#: floor's window dips below the smoothed floor.  Steady noise barely dips (2-4 dB here, 30 ms frames
#: of pink noise), babble dips between syllables (7-15 dB).  In steady noise the gate needs only
#: ``STEADY_GATE_DB`` (or ``noise_gate_db`` if lower), where babble's own loud stretches reach 9 dB
#: over its floor: with 9 dB, more than half of the clips in loud pink noise at 10 dB were missed, with
#: 6 a quarter (``python -m bench segmentation``); 5 found more but let the noise's own peaks open
#: utterances early.
STEADY_DIP_DB = 5.0
STEADY_GATE_DB = 6.0

#: Speech band rescue.  webrtcvad calls a voice quieter than steady noise non-speech, and the frame's
#: whole power cannot tell it either: pink noise keeps most of its power below the voice (two thirds
#: under 60 Hz in protocol (d)'s streams), where it swings by several dB from frame to frame (99 % of
#: 30 ms frames within 7.6 dB of the median).  Between 300 and 3000 Hz it holds within 1.9 dB, and a
#: voice 5 dB under the noise overall still lifts it.  So in steady noise a frame webrtcvad calls
#: non-speech counts as speech when its power in ``BAND_HZ`` (Hann-windowed FFT) is ``BAND_GATE_DB``
#: above that band's floor (minimum statistics, as the floor's).  In protocol (d)'s streams (20 actors,
#: 640 clips) it missed 75 clips in pink noise at 10 dB with 200-3000 Hz, 211 without the rescue; with
#: the rescue on every steady frame (no ``STEADY_SHARE``), 200-3000 Hz missed 69, 300-3000 88,
#: 150-3000 69, 200-4000 77.
BAND_HZ = (200.0, 3000.0)
#: Shorter frames are judged on the mean of their energies in ``BAND_HZ`` over this long: on their
#: own, 10 ms frames let the noise's swings through (protocol (d)'s streams at 10 ms frames, pink noise
#: at 10 dB: 0.028 spurious utterances per clip, 0.014 with the mean, as without the rescue).
BAND_MS = 30
#: 3 dB opened no utterance on noise alone there; 2.5 found 22 clips more in pink noise at 10 dB but
#: opened one on the noise.
BAND_GATE_DB = 3.0
#: A rescue opens an utterance only when the speech band of the last ``BAND_MS`` repeats at a pitch period
#: (``PITCH_PERIOD_MS``: 80-400 Hz) with a normalised autocorrelation of at least this; once open, the
#: rescue holds it as before (consonants do not repeat).  Steady noise whose level swells and fades over
#: seconds (a fan changing speed, traffic) lifts the band as a voice does, but not at a pitch period:
#: pink noise at -50 and -35 dBFS whose level swings by 1-3 dB over 0.5-6 s (24 minutes) opened 55
#: utterances without this, 7 with it (0.25: 25, 0.35: 2); protocol (d)'s streams lost 1 clip in pink noise
#: at 20 dB (21 missed) and 4 at 10 dB (76; 0.35: 79, 0.4: 90).  With 10 ms frames it is asked three times
#: as often, and lets more through (a minute of the 3 dB swing: 6 utterances against 19, 30 ms frames 2 against 16).
RESCUE_PERIODICITY = 0.3
PITCH_PERIOD_MS = (2.5, 12.5)
#: No rescue below this floor (dBFS): noise that faint hides no voice, while the breaths and lip sounds
#: of a close talker stand out of it.  Protocol (d)'s clean streams with steady pink hiss at -75 dBFS:
#: 11 spurious utterances, as without the rescue; 17 without this floor.
BAND_AUDIBLE_DBFS = -70.0
#: Babble looks steady now and then (3-13 % of its frames in protocol (d)'s streams, pink noise 94-100 %),
#: and rescues then let its own bursts through (protocol (d), babble at 15 dB: a clip missed and a
#: spurious utterance more).  So the rescue waits until the share of steady frames, followed with a
#: time constant of ``STEADY_MS``, reaches ``STEADY_SHARE``: after 6 s of steady noise; babble's stayed
#: under 0.57 in 99 % of its frames.
STEADY_MS = 5000
STEADY_SHARE = 0.7

#: In such noise (steady, audible, for a while: where the rescue listens) an utterance ends only after at
#: least this much non-speech, ``hangover_ms`` if longer: a voice's soft words sink under the noise for
#: longer than a quiet room's pauses, and with the quiet room's 500 ms one clip in twenty was split in two
#: or more in streams built as protocol (d)'s at 10 dB.  With 800 ms: split clips 34 -> 12 (of 640) in pink
#: noise at 10 dB and 10 -> 5 at 20 dB, missed 67 -> 62 and 24 -> 22 (the speech band holds an utterance
#: open longer); clean, reverberant and babbling rooms are segmented as before (in babble, 800 ms joins
#: neighbouring sentences).  It delays the decision in such a room, not the utterance's end, which still
#: hugs the last voiced frame.  ``noise_gate_db=0`` turns it off with the noise gate and the rescue.
STEADY_HANGOVER_MS = 800

#: What ``noise_floor_dbfs`` says for digital silence (whose logarithm is -inf, which JSON lacks).
SILENT_DBFS = -120.0

#: Slack when turning a ratio into a frame count, so that e.g. 0.7 * 10 frames needs 7, not 8.
_RATIO_EPSILON = 1e-9


def _ms_to_samples(ms: int, sample_rate: int) -> int:
    """Exact: every VAD rate is a multiple of 1000."""
    return ms * sample_rate // 1000


@dataclass(frozen=True)
class SegmenterConfig(VadSettings):
    """The VAD settings at the rate of the audio fed; every field is checked (by VadSettings) when made."""

    sample_rate: int = option(16000, "the rate of the audio fed, Hz", choices=VAD_SAMPLE_RATES)
    trigger_ratio: float = 0.6

    def __post_init__(self) -> None:
        super().__post_init__()
        ratio = self.trigger_ratio
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio <= 1:
            raise ValueError(f"trigger_ratio must be a number in (0, 1], got {ratio!r}")

    @classmethod
    def of(cls, vad: VadSettings, sample_rate: int) -> SegmenterConfig:
        """``vad`` at ``sample_rate``: the rate is the source's, known once it is open."""
        return cls(sample_rate=sample_rate, **{f.name: getattr(vad, f.name) for f in fields(VadSettings)})

    @property
    def frame_samples(self) -> int:
        """Samples per VAD frame."""
        return _ms_to_samples(self.frame_ms, self.sample_rate)


class _Span:
    """Stream samples ``[start, end)`` at ``sample_rate``, in seconds."""

    start: int
    end: int
    sample_rate: int

    @property
    def start_s(self) -> float:
        return self.start / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.end / self.sample_rate

    @property
    def bounds_s(self) -> tuple[float, float]:
        return self.start_s, self.end_s

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / self.sample_rate


@dataclass(frozen=True, eq=False)
class Utterance(_Span):
    """One stretch of speech: ``samples`` is exactly ``stream[start:end]`` (read-only int16 mono).

    ``closed_at`` (>= ``end``) is the stream position at which the segmenter decided the
    utterance was over; ``cut`` says it was closed for reaching ``max_utterance_ms`` rather than
    by the hangover or the end of the stream.  Compared by identity: it holds an array.
    """

    samples: np.ndarray
    start: int
    end: int
    sample_rate: int
    closed_at: int
    cut: bool


@dataclass(frozen=True)
class SpeechStarted:
    """The segmenter opened an utterance at stream position ``opened_at``, its speech starting at ``start``.

    ``start`` is provisional: when the utterance closes, the energy gate may move its start later
    (a breath before the first word), so the emitted utterance starts at or after it.
    """

    start: int
    opened_at: int
    sample_rate: int

    @property
    def start_s(self) -> float:
        return self.start / self.sample_rate

    @property
    def decided_at(self) -> int:
        return self.opened_at


@dataclass(frozen=True, eq=False)
class SpeechEnded(_Span):
    """The segmenter closed the utterance it last opened, at stream position ``closed_at``.

    ``utterance`` is what it emitted: None when nothing was (shorter than ``min_utterance_ms``,
    or only the silence after a cut).  ``cut``: closed for reaching ``max_utterance_ms``, the
    speech going on in the next window.
    """

    start: int
    end: int
    closed_at: int
    sample_rate: int
    cut: bool
    utterance: Utterance | None

    @property
    def decided_at(self) -> int:
        return self.closed_at


SpeechEvent = SpeechStarted | SpeechEnded


def utterances_of(events: list[SpeechEvent]) -> list[Utterance]:
    """The utterances the events emitted, in order."""
    return [event.utterance for event in events if isinstance(event, SpeechEnded) and event.utterance is not None]


class _Window:
    """The last few voiced/unvoiced frame labels and how many of them were voiced."""

    def __init__(self, size: int) -> None:
        self.labels: deque[bool] = deque(maxlen=size)
        self.voiced = 0

    def push(self, voiced: bool) -> None:
        if len(self.labels) == self.labels.maxlen:
            self.voiced -= self.labels[0]
        self.labels.append(voiced)
        self.voiced += voiced

    @property
    def unvoiced(self) -> int:
        return len(self.labels) - self.voiced

    def unvoiced_of_last(self, count: int) -> int:
        """Unvoiced labels among the last ``count``."""
        if count >= len(self.labels):
            return self.unvoiced
        return sum(not voiced for voiced in itertools.islice(reversed(self.labels), count))

    def clear(self) -> None:
        self.labels.clear()
        self.voiced = 0


class _Minimum:
    """The minimum of the values pushed over the last ``window`` pushes (a deque of increasing values)."""

    def __init__(self, window: int) -> None:
        self._window = window
        self._values: deque[tuple[int, float]] = deque()  # (push index, value), increasing values
        self._pushed = 0

    def clear(self) -> None:
        self._values.clear()
        self._pushed = 0

    def push(self, value: float) -> None:
        values = self._values
        while values and values[-1][1] >= value:
            values.pop()
        values.append((self._pushed, value))
        if values[0][0] <= self._pushed - self._window:
            values.popleft()
        self._pushed += 1

    @property
    def value(self) -> float:
        return self._values[0][1]


class _NoiseFloor:
    """The room's noise power per frame, in the whole band and in the speech band; whether the noise is
    steady; and whether webrtcvad calls that noise speech (babble, a television) or not (a fan: webrtcvad
    adapts to steady noise itself)."""

    def __init__(self, frame_ms: int, frame_samples: int) -> None:
        window = FLOOR_WINDOW_MS // frame_ms
        self._warmup = FLOOR_WARMUP_MS // frame_ms
        self._keep = math.exp(-frame_ms / FLOOR_SMOOTHING_MS)
        self._keep_voiced = math.exp(-frame_ms / FOOLED_MS)
        self._keep_steady = math.exp(-frame_ms / STEADY_MS)
        self._near = 10 ** (FLOOR_NEAR_DB / 10)
        self._dip = 10 ** (STEADY_DIP_DB / 10)
        self._audible = 10 ** (BAND_AUDIBLE_DBFS / 10) * frame_samples * 32768.0**2  # as a frame energy
        self._floor, self._quietest = _Minimum(window), _Minimum(window)  # smoothed and single frames' power
        self._band_floor = _Minimum(window)  # the smoothed power in BAND_HZ
        self.clear()

    def clear(self) -> None:
        for minimum in (self._floor, self._quietest, self._band_floor):
            minimum.clear()
        self._frames = 0
        self._smoothed = self._band_smoothed = 0.0
        self._voiced_share = 0.0  # of the frames at the floor, how many webrtcvad called speech (running)
        self._steady_share = 0.0  # of the frames since the warm-up, how many found the noise steady (running)

    def push(self, energy: float, band: float, voiced: bool) -> None:
        if self._frames == 0:
            self._smoothed, self._band_smoothed = energy, band
        else:
            self._smoothed = self._keep * self._smoothed + (1 - self._keep) * energy
            self._band_smoothed = self._keep * self._band_smoothed + (1 - self._keep) * band
        self._floor.push(self._smoothed)
        self._quietest.push(energy)
        self._band_floor.push(self._band_smoothed)
        self._frames += 1
        floor = self.energy
        if floor is not None and energy <= floor * self._near:
            self._voiced_share = self._keep_voiced * self._voiced_share + (1 - self._keep_voiced) * voiced
        if floor is not None:
            self._steady_share = self._keep_steady * self._steady_share + (1 - self._keep_steady) * self.steady

    @property
    def steady(self) -> bool:
        """The noise barely dips below its floor (a fan, pink noise), unlike babble or digital silence."""
        floor = self.energy
        return floor is not None and self._quietest.value > 0 and floor < self._quietest.value * self._dip

    def masks(self, energy: float, ratio: float, steady_ratio: float) -> bool:
        """Whether a frame of ``energy`` is the room's noise: webrtcvad takes that noise for speech and
        the frame is less than ``ratio`` (power) above the floor, ``steady_ratio`` if the noise is steady."""
        floor = self.energy
        if floor is None or self._voiced_share < FOOLED_SHARE:
            return False
        return energy < floor * (steady_ratio if self.steady else ratio)

    @property
    def steady_and_audible(self) -> bool:
        """The noise is audible and steady, and has been for a while: a fan, not babble or a quiet room."""
        floor = self.energy
        return floor is not None and floor >= self._audible and self._steady_share >= STEADY_SHARE and self.steady

    def speaks(self, band: float, ratio: float) -> bool:
        """Whether a frame with ``band`` energy in ``BAND_HZ`` stands ``ratio`` (power) above steady, audible
        noise (``steady_and_audible``): a voice webrtcvad does not hear, or not out of the noise."""
        return self.steady_and_audible and band >= self._band_floor.value * ratio

    @property
    def energy(self) -> float | None:
        """The floor as a frame energy (None during the warm-up)."""
        return self._floor.value if self._frames >= self._warmup else None


class Segmenter:
    """Streaming VAD segmenter: ``feed`` blocks of any length, ``flush`` at the end of the stream.

    Offsets are in samples from the start of the stream; ``flush`` ends the stream, so the next
    ``feed`` starts a new one at offset 0.  The counters ``emitted`` and ``dropped_short``
    (utterances shorter than ``min_utterance_ms``) add up over all streams.
    """

    def __init__(self, config: SegmenterConfig = SegmenterConfig()) -> None:
        self.config = config
        self.emitted = 0
        self.dropped_short = 0
        frame_ms = config.frame_ms
        self._frame = config.frame_samples
        self._pre_roll = _ms_to_samples(config.pre_roll_ms, config.sample_rate)
        self._tail = _ms_to_samples(TAIL_MS, config.sample_rate)
        self._min = _ms_to_samples(config.min_utterance_ms, config.sample_rate)
        self._max = _ms_to_samples(config.max_utterance_ms, config.sample_rate)
        trigger_frames = TRIGGER_WINDOW_MS // frame_ms
        hangover_frames = math.ceil(config.hangover_ms / frame_ms)
        steady_hangover_ms = max(config.hangover_ms, STEADY_HANGOVER_MS if config.noise_gate_db > 0 else 0)
        steady_frames = math.ceil(steady_hangover_ms / frame_ms)
        self._trigger_needed = max(1, math.ceil(config.trigger_ratio * trigger_frames - _RATIO_EPSILON))
        self._release_needed = math.ceil(RELEASE_RATIO * hangover_frames - _RATIO_EPSILON)
        self._steady_release_needed = math.ceil(RELEASE_RATIO * steady_frames - _RATIO_EPSILON)
        self._trigger = _Window(trigger_frames)
        self._hangover_frames = hangover_frames
        self._hangover = _Window(steady_frames)  # the last frames, for either hangover
        self._recent_energy: deque[float] = deque(maxlen=trigger_frames)  # beside the trigger labels
        self._gate_ratio = 10 ** (-config.gate_db / 10) if config.gate_db > 0 else 0.0
        self._noise_ratio = 10 ** (config.noise_gate_db / 10) if config.noise_gate_db > 0 else 0.0
        self._steady_ratio = min(self._noise_ratio, 10 ** (STEADY_GATE_DB / 10))
        self._noise = _NoiseFloor(frame_ms, self._frame)
        self._band_ratio = 10 ** (BAND_GATE_DB / 10) if config.noise_gate_db > 0 else math.inf
        self._band_window = np.hanning(self._frame).astype(np.float32)
        frequencies = np.fft.rfftfreq(self._frame, 1 / config.sample_rate)
        bins = np.flatnonzero((frequencies >= BAND_HZ[0]) & (frequencies <= BAND_HZ[1]))
        self._band = slice(int(bins[0]), int(bins[-1]) + 1)
        self._recent_band: deque[float] = deque(maxlen=max(1, BAND_MS // frame_ms))  # energies in BAND_HZ
        self._pitch_audio = max(self._frame, _ms_to_samples(BAND_MS, config.sample_rate))  # samples judged
        self._pitch_window = np.hanning(self._pitch_audio).astype(np.float32)
        pitch_frequencies = np.fft.rfftfreq(2 * self._pitch_audio, 1 / config.sample_rate)
        self._pitch_band = (pitch_frequencies >= BAND_HZ[0]) & (pitch_frequencies <= BAND_HZ[1])
        shortest, longest = (round(ms * config.sample_rate / 1000) for ms in PITCH_PERIOD_MS)
        self._pitch_lags = slice(shortest, longest + 1)
        # While silent, keep enough past audio for the earliest onset the trigger window can report.
        self._history = self._pre_roll + trigger_frames * self._frame
        # Compacting keeps at most max + history + two frames, so at least half the tape is free
        # afterwards: each sample is moved O(1) times on average.
        self._tape = np.empty(2 * (self._max + self._history + 2 * self._frame), dtype=np.int16)
        self._reset()

    def _reset(self, origin: int = 0) -> None:
        """Start a stream whose first sample will be at offset ``origin``."""
        self._vad = webrtcvad.Vad(self.config.aggressiveness)  # fresh noise estimate per stream
        self._tape_start = origin  # stream offset of _tape[0]
        self._tape_end = origin  # stream offset just past the last sample fed
        self._vad_pos = origin  # stream offset of the first sample not yet labelled
        self._in_speech = False
        self._start = origin  # start of the utterance (or window) in progress
        self._floor = origin  # end of the last emitted utterance: the next may not start before it
        self._last_voiced_end = origin
        self._peak = 0.0  # energy of the loudest voiced frame of the utterance in progress
        self._voiced_frames: list[tuple[int, float]] = []  # (offset, energy) since the onset, until a cut
        self._trigger.clear()
        self._recent_energy.clear()
        self._hangover.clear()
        self._noise.clear()
        self._recent_band.clear()

    @property
    def in_speech(self) -> bool:
        """True between the detected onset and the end of an utterance."""
        return self._in_speech

    @property
    def idle(self) -> bool:
        """No utterance open and no voiced frame in the trigger window: nothing can open one before the
        next voiced frame, so the input may deliver audio in coarser blocks meanwhile."""
        return not self._in_speech and self._trigger.voiced == 0

    @property
    def noise_floor_dbfs(self) -> float | None:
        """The noise floor of the current stream in dBFS (RMS relative to a full-scale square wave;
        digital silence reads ``SILENT_DBFS``), or None during the first ``FLOOR_WARMUP_MS``."""
        energy = self._noise.energy
        if energy is None:
            return None
        mean_square = energy / (self._frame * 32768.0**2)
        return 10 * math.log10(mean_square) if mean_square > 10 ** (SILENT_DBFS / 10) else SILENT_DBFS

    @property
    def position(self) -> int:
        """Samples fed in the current stream, including a buffered partial frame."""
        return self._tape_end

    def feed(self, samples: np.ndarray) -> list[Utterance]:
        """Consume a block of 1-D int16 samples of any length; return the utterances it completed."""
        return utterances_of(self.feed_events(samples))

    def feed_events(self, samples: np.ndarray) -> list[SpeechEvent]:
        """``feed``, returning what happened in stream order: utterances opened and closed."""
        if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 1:
            got = f"{samples.ndim}-D {samples.dtype} array" if isinstance(samples, np.ndarray) else type(samples)
            raise ValueError(f"Segmenter.feed takes a 1-D int16 array, got {got}")
        done: list[SpeechEvent] = []
        taken = 0
        while taken < samples.size:
            used = self._tape_end - self._tape_start
            if used == self._tape.size:
                self._compact()
                used = self._tape_end - self._tape_start
            count = min(samples.size - taken, self._tape.size - used)
            self._tape[used : used + count] = samples[taken : taken + count]
            self._tape_end += count
            taken += count
            while self._tape_end - self._vad_pos >= self._frame:
                self._step(done)
        return done

    def reconfigured(self, config: SegmenterConfig) -> Segmenter:
        """A segmenter with new settings that carries on this stream: same offsets, counters and noise floor.

        For a reload between utterances (``in_speech`` False), at the same rate and frame length.
        The new one starts with a fresh VAD and no history, so an utterance that begins within
        ``pre_roll_ms`` of the switch gets a shorter pre-roll.
        """
        if self._in_speech:
            raise RuntimeError("a segmenter can only be reconfigured between utterances")
        if (config.sample_rate, config.frame_ms) != (self.config.sample_rate, self.config.frame_ms):
            raise ValueError("a reconfigured segmenter keeps the sample rate and frame length")
        successor = Segmenter(config)
        successor.emitted, successor.dropped_short = self.emitted, self.dropped_short
        successor._reset(origin=self._vad_pos)
        successor._noise = self._noise  # the room has not changed
        successor.feed(self._tape[self._vad_pos - self._tape_start : self._tape_end - self._tape_start].copy())
        return successor

    def so_far(self) -> Utterance | None:
        """A copy of the open utterance as it stands, for an interim result: None when no utterance is
        open, or when what was heard so far would be dropped as shorter than ``min_utterance_ms``.

        From the provisional ``start`` (the gate's start trim applies when the utterance closes) to
        ``TAIL_MS`` after the last voiced frame, as the end would be trimmed if it closed now;
        ``closed_at`` is the current position.  A window is cut at ``max_utterance_ms``, so neither
        the copy nor the time it takes grows beyond that.
        """
        if not self._in_speech:
            return None
        end = min(self._last_voiced_end + self._tail, self._vad_pos)
        if end - self._start < max(self._min, 1):
            return None
        begin = self._start - self._tape_start
        samples = self._tape[begin : begin + end - self._start].copy()
        samples.flags.writeable = False
        return Utterance(samples, self._start, end, self.config.sample_rate, self._vad_pos, cut=False)

    def flush(self, resume_at: int = 0) -> list[Utterance]:
        """End of stream: emit the utterance in progress (trimmed as if the hangover expired) and
        start a new stream at offset ``resume_at``: 0, or where the input resumes after a gap, so
        that offsets keep counting time since the first stream began.

        The partial frame still buffered is audio too: it may be part of the final utterance.
        """
        return utterances_of(self.flush_events(resume_at))

    def flush_events(self, resume_at: int = 0) -> list[SpeechEvent]:
        """``flush``, returning what happened: the open utterance, if any, closed."""
        done: list[SpeechEvent] = []
        if self._in_speech:
            end = min(self._last_voiced_end + self._tail, self._tape_end)
            self._cut_windows(done, end, closed_at=self._tape_end)
            self._close(done, end, closed_at=self._tape_end)
        self._reset(resume_at)
        return done

    def _compact(self) -> None:
        """Drop tape audio no utterance can still need, moving the rest to the front."""
        keep = self._start if self._in_speech else max(self._tape_start, self._vad_pos - self._history)
        begin, end = keep - self._tape_start, self._tape_end - self._tape_start
        self._tape[: end - begin] = self._tape[begin:end]
        self._tape_start = keep

    def _step(self, done: list[SpeechEvent]) -> None:
        """Label the next frame and advance the state machine."""
        offset = self._vad_pos - self._tape_start
        samples = self._tape[offset : offset + self._frame]
        voiced = self._vad.is_speech(memoryview(samples).cast("B"), self.config.sample_rate)
        as_float = samples.astype(np.float32)
        energy = float(np.dot(as_float, as_float))
        frame_start = self._vad_pos
        self._vad_pos += self._frame
        band = self._band_energy(samples)
        self._noise.push(energy, band, voiced)
        if voiced and self._noise.masks(energy, self._noise_ratio, self._steady_ratio):
            voiced = False  # webrtcvad hears a voice, but it does not stand out of the room's babble
        self._recent_band.append(band)
        if not voiced and self._noise.speaks(sum(self._recent_band) / len(self._recent_band), self._band_ratio):
            # webrtcvad hears none (or the noise gate masked it), but the speech band stands out: speech that
            # goes on, or that starts if the band repeats at a pitch period (swelling noise does not)
            voiced = self._in_speech or self._band_periodicity() >= RESCUE_PERIODICITY
        if not self._in_speech:
            self._trigger.push(voiced)
            self._recent_energy.append(energy)
            if voiced:
                self._last_voiced_end = self._vad_pos
            if self._trigger.voiced >= self._trigger_needed:
                self._open(done)
                self._cut_windows(done, self._vad_pos, closed_at=self._vad_pos)
            return
        if voiced:
            self._peak = max(self._peak, energy)
            voiced = energy >= self._peak * self._gate_ratio
        if voiced:
            self._last_voiced_end = self._vad_pos
            self._voiced_frames.append((frame_start, energy))
        self._hangover.push(voiced)
        if self._noise.steady_and_audible:
            released = self._hangover.unvoiced >= self._steady_release_needed
        else:
            released = self._hangover.unvoiced_of_last(self._hangover_frames) >= self._release_needed
        if not released:
            self._cut_windows(done, self._vad_pos, closed_at=self._vad_pos)
            return
        end = min(self._last_voiced_end + self._tail, self._vad_pos)
        self._cut_windows(done, end, closed_at=self._vad_pos)
        self._close(done, end, closed_at=self._vad_pos)

    def _band_energy(self, samples: np.ndarray) -> float:
        """The frame's energy in ``BAND_HZ`` (Hann-windowed): a fan's rumble and pink noise's low end left out."""
        spectrum = np.fft.rfft(samples * self._band_window)[self._band]
        return float(np.vdot(spectrum, spectrum).real)

    def _band_periodicity(self) -> float:
        """The highest normalised autocorrelation, at a lag of ``PITCH_PERIOD_MS``, of the last ``BAND_MS`` (or
        frame) of audio in ``BAND_HZ`` (Hann-windowed; from its power spectrum): how much it repeats at a
        pitch period.  Only asked when a rescue would open an utterance, so it costs nothing otherwise."""
        end = self._vad_pos - self._tape_start
        samples = self._tape[max(0, end - self._pitch_audio) : end]
        window = self._pitch_window[-samples.size :]
        spectrum = np.fft.rfft(samples * window, 2 * self._pitch_audio)
        autocorrelation = np.fft.irfft(np.where(self._pitch_band, np.abs(spectrum) ** 2, 0.0))
        if autocorrelation[0] <= 0:
            return 0.0
        return float(autocorrelation[self._pitch_lags].max() / autocorrelation[0])

    def _open(self, done: list[SpeechEvent]) -> None:
        """Speech starts: the onset is the first voiced frame of the trigger window."""
        labels, energies = self._trigger.labels, self._recent_energy
        first = labels.index(True)
        onset = self._vad_pos - (len(labels) - first) * self._frame
        self._voiced_frames = [
            (onset + i * self._frame, energy)
            for i, (voiced, energy) in enumerate(list(zip(labels, energies, strict=True))[first:])
            if voiced
        ]
        self._peak = max(energy for _, energy in self._voiced_frames)
        self._start = max(onset - self._pre_roll, self._floor)
        self._in_speech = True
        self._hangover.clear()
        done.append(SpeechStarted(self._start, self._vad_pos, self.config.sample_rate))

    def _cut_windows(self, done: list[SpeechEvent], end: int, closed_at: int) -> None:
        """Emit full ``max_utterance_ms`` windows while the audio up to ``end`` is longer than one."""
        while end - self._start > self._max:
            self._emit(done, self._start + self._max, closed_at, cut=True)
            self._start += self._max
            self._voiced_frames.clear()  # a window after a cut starts where the last ended: no start trim
            done.append(SpeechStarted(self._start, closed_at, self.config.sample_rate))

    def _close(self, done: list[SpeechEvent], end: int, closed_at: int) -> None:
        """Speech ended: emit ``[start, end)`` if long enough, else count it as dropped; either way it is closed."""
        self._in_speech = False
        self._trigger.clear()
        self._recent_energy.clear()
        loud_enough = self._peak * self._gate_ratio
        first_loud = next((offset for offset, energy in self._voiced_frames if energy >= loud_enough), None)
        if first_loud is not None:
            self._start = max(self._start, first_loud - self._pre_roll)
        rate = self.config.sample_rate
        if self._last_voiced_end <= self._start:  # the window after a cut held only trailing silence
            done.append(SpeechEnded(self._start, max(end, self._start), closed_at, rate, cut=False, utterance=None))
        elif end - self._start < self._min:
            self.dropped_short += 1
            done.append(SpeechEnded(self._start, end, closed_at, rate, cut=False, utterance=None))
        else:
            self._emit(done, end, closed_at, cut=False)

    def _emit(self, done: list[SpeechEvent], end: int, closed_at: int, cut: bool) -> None:
        begin = self._start - self._tape_start
        samples = self._tape[begin : begin + end - self._start].copy()
        samples.flags.writeable = False
        rate = self.config.sample_rate
        utterance = Utterance(samples, self._start, end, rate, closed_at, cut)
        done.append(SpeechEnded(self._start, end, closed_at, rate, cut, utterance))
        self.emitted += 1
        self._floor = end


def speech_bounds(samples: np.ndarray, config: SegmenterConfig) -> tuple[int, int] | None:
    """``[start, end)`` from the first utterance's start to the last one's end; all of it when the
    only speech was too short to be an utterance; None when the VAD heard no speech at all."""
    segmenter = Segmenter(config)
    utterances = segmenter.feed(samples) + segmenter.flush()
    if utterances:
        return utterances[0].start, utterances[-1].end
    return (0, samples.size) if segmenter.dropped_short else None


def speech_span(samples: np.ndarray, config: SegmenterConfig) -> tuple[int, int]:
    """``speech_bounds``, and all of it if there is no speech.

    Training and ``classify`` cut files to this span so the model sees the same speech-bounded
    audio (pre-roll, speech, tail) that the daemon's segmenter hands it.
    """
    return speech_bounds(samples, config) or (0, samples.size)
