"""The worker thread: utterances → features → classifier → events on the publisher.

It owns the ZeroMQ socket (the publisher is not thread-safe), the classifier in use and its own
counters (messages sent and refused, utterances dropped from its queue).  It takes work items
(`work.py`) from one queue, in order, and keeps no clock of its own: heartbeats and watchdog pings
are items the main loop asks for, so one that goes out proves both threads move.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import IO, Protocol

import numpy as np

from ..audio import from_int16
from ..counters import Counters
from ..errors import PipelineError
from ..events import TOPIC_EMOTION, TOPIC_INTERIM, TOPIC_SPEECH, TOPIC_STATUS, emotion_event, speech_event, status_event
from ..model import Classifier, ModelBundle
from ..model.classifier import GrowingUtterance, Prediction
from ..notify import Notifier
from ..publisher import Publisher
from ..segmenter import SpeechEnded
from ..settings import ModelSettings, RunSettings
from .adaptation import Adaptation
from .work import (
    Heartbeat,
    Reconfigure,
    SpeechChange,
    StatusChange,
    Stop,
    UtteranceJob,
    WatchdogPing,
    WorkItem,
    WorkQueue,
)

log = logging.getLogger("ser_stream")

#: In a burst of utterances dropped for a worker that stays behind, one summary line this often.
DROP_SUMMARY_EVERY_S = 60.0
#: How often a caller waiting for the worker looks whether it died meanwhile.
_WAIT_POLL_S = 0.1


class Named(Protocol):
    """What the worker needs of the input: its name and rate, for events and status lines."""

    name: str
    sample_rate: int


def status_line(state: str, source: Named, counters: Counters, classifier: Classifier) -> str:
    """One line for `systemctl status`."""
    bundle = classifier.bundle
    return (
        f"{state}: {source.name} at {source.sample_rate} Hz, {counters.utterances} utterances, "
        f"{counters.queue_drops + counters.drops} dropped; model {bundle.name} {bundle.sha256[:12]}"
    )


class DropBursts:
    """Utterances (or interim results) dropped for a worker that fell behind, logged per burst (how
    many, and the stream span they covered) rather than one line each: a worker far behind drops
    thousands.  A burst ends when one is queued without evicting one, or at stop; one that goes on is
    summed up every DROP_SUMMARY_EVERY_S.  Pure: the caller logs the lines it returns."""

    def __init__(self, what: str = "utterance", plural: str = "utterances") -> None:
        self._what, self._plural = what, plural
        self._count = 0
        self._since = 0.0
        self._first_s = 0.0
        self._last_s = 0.0

    def dropped(self, bounds_s: tuple[float, float], now: float) -> str | None:
        if not self._count:
            self._since, self._first_s = now, bounds_s[0]
        self._count += 1
        self._last_s = bounds_s[1]
        return self.end() if now - self._since >= DROP_SUMMARY_EVERY_S else None

    def end(self) -> str | None:
        """The summary of the burst, if one was going on."""
        count, self._count = self._count, 0
        if count == 0:
            return None
        if count == 1:
            return f"worker behind: dropped {self._what} {self._first_s:.2f}–{self._last_s:.2f} s"
        return f"worker behind: dropped {count} {self._plural} between {self._first_s:.2f} and {self._last_s:.2f} s"


def _log_drops(summary: str | None) -> None:
    if summary is not None:
        log.warning("%s", summary)


class Worker:
    """The worker thread and its queue.  ``submit``, ``finish``, ``check`` and ``counters`` are for the
    main loop; everything else runs on the worker thread."""

    def __init__(
        self,
        publisher: Publisher,
        classifier: Classifier,
        settings: RunSettings,
        source: Named,
        upstream: Callable[[], Counters],
        notifier: Notifier,
        out: IO[str],
        queue_limit: int,
        adaptation: Adaptation,
    ) -> None:
        """It reads ``settings.publish`` and ``settings.model``.  ``upstream`` gives the counters of the
        stages before this one (input and segmenter), for the status events; ``queue_limit`` is how many
        utterances may wait for it; ``adaptation`` is the voice adapter for ``classifier``'s model."""
        self.publisher = publisher
        self.classifier = classifier  # replaced by a Reconfigure item; one model per utterance
        self.adaptation = adaptation  # follows the classifier: kept on a reload of the same model
        self.settings = settings
        self._source = source
        self._upstream = upstream
        self._notifier = notifier
        self._out = out
        self._queue = WorkQueue(queue_limit)
        self._drop_bursts = DropBursts()
        self._interim_bursts = DropBursts("interim result", "interim results")
        self.utterances_dropped = 0  # evicted from the queue because the worker fell behind
        self.interims_dropped = 0  # interim results evicted, stale, for the same reason
        self.failure: BaseException | None = None  # what killed the thread, if anything did
        self._growing: tuple[tuple, GrowingUtterance] | None = None  # the open utterance's, for interim results
        self._thread = threading.Thread(target=self._run, name="ser-stream-worker", daemon=True)
        self._started = 0.0  # monotonic and wall-clock time the input opened, set by start()
        self._wall_start = datetime.now(timezone.utc)

    # -- the main loop's side -------------------------------------------------------------------

    def start(self, started: float, wall_start: datetime) -> None:
        self._started, self._wall_start = started, wall_start
        self._thread.start()

    def submit(self, item: WorkItem, wait: bool) -> None:
        """Queue ``item``.  Without ``wait`` it never blocks (a live input): when the worker lags, a
        waiting interim result goes first, then the oldest waiting utterance.  With ``wait`` (a file
        read as fast as possible) it returns once the worker has handled everything queued, so each
        event is sent as soon as its utterance is read rather than piling up behind the worker (and
        its latency with it)."""
        dropped = self._queue.put_evicting(item)
        now = time.monotonic()
        for job in dropped:
            if job.final:
                self.utterances_dropped += 1
                _log_drops(self._drop_bursts.dropped(job.utterance.bounds_s, now))
            else:
                self.interims_dropped += 1
                _log_drops(self._interim_bursts.dropped(job.utterance.bounds_s, now))
        if isinstance(item, UtteranceJob):  # queued without evicting one of a kind: the worker caught up on it
            if item.final and not any(job.final for job in dropped):
                _log_drops(self._drop_bursts.end())
            if not any(not job.final for job in dropped):
                _log_drops(self._interim_bursts.end())
        if wait:
            with self._queue.all_tasks_done:
                while self._queue.unfinished_tasks and self._thread.is_alive():
                    self._queue.all_tasks_done.wait(_WAIT_POLL_S)

    def finish(self, reason: str) -> None:
        """The worker handles what is queued, sends the final status (saying why) and ends."""
        _log_drops(self._drop_bursts.end())
        _log_drops(self._interim_bursts.end())
        self._queue.put_evicting(Stop(reason))
        self._thread.join()

    def check(self) -> None:
        """A dead worker is fatal: without it nothing is classified or published, and a run that ends
        'successfully' with no events would hide the loss."""
        if self.failure is not None:
            error = self.failure
            raise PipelineError(
                f"the worker thread died ({type(error).__name__}: {error}); nothing more can be published"
            )

    def counters(self) -> Counters:
        """Its share: messages sent and refused, utterances dropped from its queue and waiting in it."""
        return Counters(
            events_published=self.publisher.sent,
            drops=self.publisher.dropped,
            queue_drops=self.utterances_dropped,
            queue_depth=self._queue.qsize(),
            interim_dropped=self.interims_dropped,
            adapted_on=self.adaptation.adapted_on,
        )

    def utterances_waiting(self) -> int:
        return self._queue.utterances_waiting()

    # -- the worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                try:
                    self._handle(item)
                finally:
                    self._queue.task_done()
                if isinstance(item, Stop):
                    return
        except BaseException as error:  # whatever it was, the main loop must hear of it
            log.debug("the worker thread died", exc_info=True)  # the traceback, for --log-level debug
            self.failure = error

    def _handle(self, item: WorkItem) -> None:
        """One item.  A failure to classify or publish costs that one event, never the worker (a stuck
        worker would hang the stop, and a file source that waits for it)."""
        try:
            if isinstance(item, UtteranceJob):
                self._classify_and_publish(item)
            elif isinstance(item, SpeechChange):
                self._publish_speech(item)
            elif isinstance(item, StatusChange):
                self._publish_status(item.state, item.message)
            elif isinstance(item, Heartbeat):
                self._publish_status("running")
                self._notifier.status(status_line("running", self._source, self._all_counters(), self.classifier))
            elif isinstance(item, WatchdogPing):
                self._notifier.watchdog()
            elif isinstance(item, Reconfigure):
                self.classifier, self.settings = item.classifier, item.settings
                self.adaptation = self.adaptation.reconfigured(item.classifier.bundle, item.settings.model)
            else:
                self.adaptation.close()
                self._publish_status("stopping", item.reason)
        except Exception:
            log.exception("could not publish the event of %s", item)

    def _wall_time(self, stream_s: float, captured_at: float) -> datetime:
        """The wall-clock time of a stream position: stream start + ``stream_s`` for an input paced like
        a microphone, but never later than ``captured_at``, when the daemon read the audio.  A file read
        faster than real time (--no-realtime) has no wall-clock time of its own, and start + end_s would
        lie in the future, after the final `stopping` status; the moment it was read stands in, so
        timestamps keep the order events are sent in."""
        return self._wall_start + timedelta(seconds=min(stream_s, captured_at - self._started))

    def _classify_and_publish(self, job: UtteranceJob) -> None:
        """The final result on `emotion`, or an interim one on `interim`; `timestamp` is the wall-clock
        time of the utterance's end (interim: of the end of the audio classified so far)."""
        utterance = job.utterance
        classifier = self.classifier
        features, prediction = self._classify(job)
        event = emotion_event(
            label=prediction.label,
            confidence=prediction.confidence,
            probabilities=prediction.probabilities,
            start_s=utterance.start_s,
            end_s=utterance.end_s,
            wall_end=self._wall_time(utterance.end_s, job.captured_at),
            source=self._source.name,
            model=_model_info(classifier),
            device=self.settings.publish.device_id,
            utterance=job.number,
            final=job.final,
            adapted_on=prediction.adapted_on,
            uncertain=prediction.uncertain(min_confidence(self.settings.model, classifier.bundle)),
            intensity=prediction.intensity,
        )
        self._send(TOPIC_EMOTION if job.final else TOPIC_INTERIM, event, job.captured_at)
        if job.final:  # heard once, and learned once: after its event is out
            self.adaptation.learn(features)

    def _classify(self, job: UtteranceJob) -> tuple[np.ndarray, Prediction]:
        """The features and the prediction, standardised by the voice adapter's statistics as they are.
        A final result from scratch (what the adapter learns from); interim results of one utterance
        reuse the work done on it for the last one (and are never learned from: the same audio again,
        cut short)."""
        samples, rate = from_int16(job.utterance.samples), job.utterance.sample_rate
        if job.final:
            self._growing = None
            features = self.classifier.features(samples, rate)
        else:
            key = (job.number, job.utterance.start, self.classifier)
            if self._growing is None or self._growing[0] != key:
                self._growing = (key, self.classifier.growing())
            features = self._growing[1].features(samples, rate)
        return features, self.classifier.predict(features, self.adaptation.adapter)

    def _publish_speech(self, change: SpeechChange) -> None:
        """An utterance opened (`timestamp`: the wall-clock time of its start) or closed (of its end)."""
        speech = change.event
        ended = isinstance(speech, SpeechEnded)
        event = speech_event(
            state="end" if ended else "start",
            utterance=change.number,
            start_s=speech.start_s,
            end_s=speech.end_s if ended else None,
            wall_time=self._wall_time(speech.end_s if ended else speech.start_s, change.captured_at),
            source=self._source.name,
            device=self.settings.publish.device_id,
            cut=ended and speech.cut,
            classified=ended and speech.utterance is not None,
        )
        self._send(TOPIC_SPEECH, event, change.captured_at)

    def _all_counters(self) -> Counters:
        return self._upstream() + self.counters()

    def _publish_status(self, state: str, message: str | None = None) -> None:
        event = status_event(
            state=state,
            counters=self._all_counters(),
            uptime_s=time.monotonic() - self._started,
            source=self._source.name,
            model=_model_info(self.classifier),
            device=self.settings.publish.device_id,
            message=message,
        )
        self._send(TOPIC_STATUS, event)

    def _send(self, topic: str, event: dict, captured_at: float | None = None) -> None:
        self.publisher.publish(topic, event, captured_at)
        if self.settings.publish.print_events:
            print(json.dumps(event), file=self._out, flush=True)


def min_confidence(settings: ModelSettings, bundle: ModelBundle) -> float | None:
    """Below it an event says ``uncertain``: the setting, else the model's abstention threshold, else none."""
    return bundle.min_confidence if settings.min_confidence is None else settings.min_confidence


def _model_info(classifier: Classifier) -> dict[str, str]:
    return {"name": classifier.bundle.name, "sha256": classifier.bundle.sha256}
