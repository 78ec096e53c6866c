"""An utterance at any sample rate → features → model bundle → prediction: shared by `classify` and the daemon.

Audio → features (`Classifier.features`) and features → prediction (`Classifier.predict`) are apart,
so that a voice adapter can standardise the features in between (`ser_stream.adapter`).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..adapter import VoiceAdapter
from ..audio import load_audio, to_int16, to_model_rate
from ..errors import NotClassifiable, UserError
from ..features import GrowingFeatures, extractor_for
from ..segmenter import VAD_SAMPLE_RATES, SegmenterConfig, speech_bounds
from .bundle import ModelBundle

log = logging.getLogger("ser_stream")

#: A recording shorter than this is refused: an STFT frame alone is 128 ms.
MIN_RECORDING_S = 0.1
#: A recording longer than this is refused before it is decoded: as one utterance an hour would
#: take about 1.7 GB and mean nothing; `run --source` segments it in bounded memory instead.
MAX_RECORDING_S = 600.0


@dataclass(frozen=True)
class Prediction:
    label: str  # the most probable, whatever its confidence
    confidence: float
    probabilities: dict[str, float]
    intensity: float | None = None  # P(strong), from a bundle with an intensity head
    adapted_on: int | None = None  # utterances in the adapter's statistics (0: the prior alone); None: no adapter

    def uncertain(self, min_confidence: float | None) -> bool | None:
        """Whether the confidence is below ``min_confidence``; None (not known) without a threshold."""
        return None if min_confidence is None else self.confidence < min_confidence


def single_threaded_blas() -> None:
    """Run BLAS (numpy's matrix products) in this thread only, for the whole process: called once
    by the commands that serve (``run``, ``classify`` and its workers), not by the classifier.

    One utterance's matrices are small: BLAS helper threads gain nothing on them and, spinning
    for a core the audio, segmenter and other programs also want, made features ten times
    slower on a busy 2-core machine (6 → 45 ms per clip). Parallel work is done by processes.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


class Classifier:
    """Classifies one utterance, resampled to the bundle's sample rate from whatever rate it comes at."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle
        self._extract = extractor_for(bundle.feature_params)
        self._prior_alone = None if bundle.prior is None else VoiceAdapter(bundle.prior)  # never updated

    @property
    def sample_rate(self) -> int:
        return self.bundle.sample_rate

    def warm_up(self) -> None:
        """Classify one second of quiet noise, so the first real utterance does not pay for
        one-off set-up: numpy's FFT plan, first-call allocations, a chroma filter bank."""
        noise = np.random.default_rng(0).normal(0.0, 0.01, self.sample_rate).astype(np.float32)
        self.classify(noise, self.sample_rate)

    def classify_recording(self, samples: np.ndarray, sample_rate: int) -> Prediction:
        """A whole recording as one utterance, cut to its speech span as the model was trained
        (NotClassifiable: see `recording_features`)."""
        return self.predict(self.recording_features(samples, sample_rate))

    def recording_features(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """The features of a whole recording as one utterance, cut to its speech span as the model was trained.

        NotClassifiable when there is nothing to classify: under MIN_RECORDING_S of audio, or not
        one frame the VAD calls speech (silence, hum), where any label would be noise.
        """
        samples = to_model_rate(samples, sample_rate, self.sample_rate)
        if samples.size < MIN_RECORDING_S * self.sample_rate:
            duration_ms = 1000 * samples.size / self.sample_rate
            raise NotClassifiable(
                f"too short to classify: {duration_ms:.0f} ms (at least {MIN_RECORDING_S * 1000:.0f} ms)"
            )
        trim = self.bundle.trim
        if trim is not None:
            bounds = speech_bounds(to_int16(samples), trim)
        else:  # not cut, only checked for speech, at a rate the VAD takes
            vad_rate = self.sample_rate if self.sample_rate in VAD_SAMPLE_RATES else 16000
            pcm = to_int16(to_model_rate(samples, self.sample_rate, vad_rate))
            bounds = speech_bounds(pcm, SegmenterConfig(sample_rate=vad_rate))
        if bounds is None:
            raise NotClassifiable("no speech found (silence or noise only)")
        if trim is not None:
            samples = samples[bounds[0] : bounds[1]]
        return self._extract(samples)

    def classify(self, samples: np.ndarray, sample_rate: int) -> Prediction:
        """One utterance as the segmenter hands it over: mono float samples at ``sample_rate``."""
        return self.predict(self.features(samples, sample_rate))

    def features(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """The feature vector of one utterance (mono float samples at ``sample_rate``), as training computed it."""
        return self._extract(to_model_rate(samples, sample_rate, self.sample_rate))

    def growing(self) -> GrowingUtterance:
        """A classifier for one utterance still open, asked again and again as it grows."""
        return GrowingUtterance(self)

    def predict(self, features: np.ndarray, adapter: VoiceAdapter | None = None) -> Prediction:
        """The prediction for one utterance's feature vector.  A bundle that adapts was trained on
        features standardised per voice: ``adapter`` holds the statistics of the voice(s) heard (by
        default the bundle's prior alone, as at a cold start); it is read, never updated, here."""
        adapted_on = None
        temperature = self.bundle.temperature_for(features)  # how the utterance sounds, not the voice
        adapter = adapter if adapter is not None else self._prior_alone
        if adapter is not None:
            if adapter.prior is not self.bundle.prior:
                raise ValueError("the adapter's prior is not this model's")
            features, adapted_on = adapter.normalise(features), adapter.heard
        probabilities = self.bundle.predict_proba(features, temperature)
        label = max(probabilities, key=probabilities.__getitem__)
        return Prediction(
            label=label,
            confidence=probabilities[label],
            probabilities=probabilities,
            intensity=self.bundle.intensity(features),
            adapted_on=adapted_on,
        )


class GrowingUtterance:
    """Interim results of one utterance: each call classifies all of it so far (the same start, longer
    each time) as ``Classifier.classify`` would, reusing the spectrum of the audio already classified
    (``GrowingFeatures``), so a call costs the new audio, not the whole utterance again.  Audio at
    another rate than the model's is resampled whole each time, and classified from scratch: the end
    of a resampled prefix differs from the same stretch resampled longer."""

    def __init__(self, classifier: Classifier) -> None:
        self._classifier = classifier
        self._features = GrowingFeatures(extractor_for(classifier.bundle.feature_params))

    def features(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """The features of all of it so far (an interim result must not be learned from: it is the same
        audio again, cut short)."""
        if sample_rate != self._classifier.sample_rate:
            return self._classifier.features(samples, sample_rate)
        return self._features(samples)

    def classify(self, samples: np.ndarray, sample_rate: int, adapter: VoiceAdapter | None = None) -> Prediction:
        """All of it so far, with ``adapter``'s statistics as `Classifier.predict` takes them."""
        return self._classifier.predict(self.features(samples, sample_rate), adapter)


#: What a file gives: its features, or the one-line reason it has none.
Outcome = np.ndarray | str


def _features_of(classifier: Classifier, file: str) -> Outcome:
    try:
        rate = classifier.sample_rate  # read at the model's rate: one resampling, in the reader
        return classifier.recording_features(load_audio(file, rate, MAX_RECORDING_S), rate)
    except NotClassifiable as error:
        return f"{file}: {error}"
    except UserError as error:
        return str(error)


#: A worker process's classifier, set once by `_start_worker`.
_worker: Classifier | None = None
#: What a worker logged (level, message) while reading its current file.
_worker_log: list[tuple[int, str]] = []


class _Kept(logging.Handler):
    """A worker's log handler: its records go back to the parent with the file's outcome, and the parent
    logs them as it reaches that file, so stderr has one writer and the order of the files."""

    def emit(self, record: logging.LogRecord) -> None:
        _worker_log.append((record.levelno, record.getMessage()))


def _start_worker(bundle: ModelBundle) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: no traceback per worker
    single_threaded_blas()
    log.handlers[:] = [_Kept()]
    log.propagate = False
    _worker = Classifier(bundle)


def _worker_features(file: str) -> tuple[Outcome, list[tuple[int, str]]]:
    assert _worker is not None, "_start_worker runs first in every worker"
    _worker_log.clear()
    outcome = _features_of(_worker, file)
    return outcome, list(_worker_log)


def _features_in_order(classifier: Classifier, files: Sequence[str], jobs: int) -> Iterator[tuple[str, Outcome]]:
    """Each file's features (or why it has none), in the order given, from ``jobs`` processes."""
    jobs = max(1, min(jobs, len(files)))
    if jobs == 1:
        for file in files:
            yield file, _features_of(classifier, file)
        return
    with ProcessPoolExecutor(jobs, initializer=_start_worker, initargs=(classifier.bundle,)) as pool:
        try:
            chunk = max(1, min(16, len(files) // (4 * jobs)))  # few round trips, yet every worker busy to the end
            for file, (outcome, logged) in zip(files, pool.map(_worker_features, files, chunksize=chunk), strict=True):
                for level, message in logged:
                    log.log(level, "%s", message)
                yield file, outcome
        except BaseException:  # interrupted, or the caller stopped reading: drop the files not started
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def classify_files(
    bundle: ModelBundle, files: Sequence[str], jobs: int, adapt: bool = False
) -> Iterator[tuple[str, Prediction | str]]:
    """Each file as one recording, in the order given: its prediction, or the one-line reason it failed.

    ``jobs`` > 1 computes the features in that many worker processes (a process uses about one core:
    the GIL, and BLAS in one thread); the network runs here.  With ``adapt`` the files are one voice:
    a first pass takes the features of all of them into one adapter (in the order given), a second
    classifies each with those statistics.  Without it, each file alone: with the bundle's prior, if
    it adapts.
    """
    single_threaded_blas()
    classifier = Classifier(bundle)
    outcomes = _features_in_order(classifier, files, jobs)
    adapter = None
    if adapt and bundle.prior is None:
        log.warning("model %s has no adaptation prior: --adapt is ignored, each file is classified alone", bundle.name)
    elif adapt:
        gathered = list(outcomes)  # the first pass, whole
        adapter = VoiceAdapter(bundle.prior)
        for _, outcome in gathered:
            if not isinstance(outcome, str):
                adapter.update(outcome)
        outcomes = iter(gathered)
    for file, outcome in outcomes:
        yield file, outcome if isinstance(outcome, str) else classifier.predict(outcome, adapter)
