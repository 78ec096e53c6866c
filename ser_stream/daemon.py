"""The running pipeline: source → segmenter → worker (features, classifier) → publisher.

Threads: the source delivers audio blocks (its capture thread for a
microphone); the main thread segments them, which is cheap, and hands finished
utterances to the worker thread through a bounded queue.  The worker owns the
ZeroMQ socket: it classifies, publishes emotion events and sends status
heartbeats, so nothing on the audio path waits for features, the model or the
network.  A reload (SIGHUP) loads the new config and model on a third, short-lived
thread; the main thread swaps them in, so the input stays open throughout.

Under systemd the worker also pets the watchdog, and only while the main thread is
moving too: a wedged stage stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import IO

from .audio import from_int16
from .capture import Source
from .errors import DeviceError, DeviceLostError, UserError
from .events import TOPIC_EMOTION, TOPIC_STATUS, emotion_event, status_event
from .model import Classifier
from .notify import Notifier
from .publisher import Publisher
from .segmenter import Segmenter, SegmenterConfig, Utterance
from .settings import RunSettings

log = logging.getLogger("ser_stream")

#: How long the main loop waits for audio before checking for a stop request.
READ_TIMEOUT_S = 0.1
#: Reopening a lost input device: first retry after this long, doubling up to the cap.
REOPEN_FIRST_S = 0.5
REOPEN_MAX_S = 10.0
#: Utterances waiting for the worker; beyond it the oldest is dropped.
WORKER_QUEUE = 16


@dataclass(frozen=True)
class _Job:
    utterance: Utterance
    captured_at: float  # monotonic time the block that closed the utterance was captured

    def __str__(self) -> str:  # for logs: the times, not the samples
        return "utterance {:.2f}–{:.2f} s".format(*self.utterance.bounds_s)


@dataclass(frozen=True)
class _StatusChange:
    state: str
    message: str | None = None


@dataclass(frozen=True)
class _Stop:
    """Tells the worker to finish the queue, send the final status (saying why) and exit."""

    reason: str


class _WorkQueue(queue.Queue):
    """The worker's queue.  At most `utterance_limit` utterances wait: a new one past that evicts
    the oldest waiting utterance.  Status changes are never evicted; they are few (start, device
    lost/back, reload, stop) and subscribers rely on them to explain gaps."""

    def __init__(self, utterance_limit: int) -> None:
        super().__init__()  # unbounded for status changes; utterances are bounded here
        self.utterance_limit = utterance_limit

    def utterances_waiting(self) -> int:
        with self.mutex:
            return sum(isinstance(item, _Job) for item in self.queue)

    def put_evicting(self, item: _Job | _StatusChange | _Stop) -> _Job | None:
        """Never blocks; returns the utterance evicted to make room, if any."""
        with self.not_empty:  # the queue's one lock
            evicted = None
            if isinstance(item, _Job):
                waiting = [queued for queued in self.queue if isinstance(queued, _Job)]
                if len(waiting) >= self.utterance_limit:
                    evicted = waiting[0]
                    self.queue.remove(evicted)  # one task out, one in: unfinished_tasks stays
            self.queue.append(item)
            if evicted is None:
                self.unfinished_tasks += 1
            self.not_empty.notify()
            return evicted


#: Loads the config and model again for a reload (a new model warmed up); raises UserError (one line)
#: to keep the running ones.
Reloader = Callable[[], tuple[Classifier, RunSettings]]


class Daemon:
    """Runs until the source ends (file) or a stop is requested (SIGTERM/SIGINT); SIGHUP reloads."""

    def __init__(
        self,
        source: Source,
        classifier: Classifier,
        publisher: Publisher,
        settings: RunSettings,
        out: IO[str] = sys.stdout,
        notifier: Notifier | None = None,
        reloader: Reloader | None = None,
        worker_queue: int = WORKER_QUEUE,
    ) -> None:
        """The daemon reads ``settings.vad`` (at the source's rate), ``settings.service`` and
        ``settings.publish``; the source, classifier and publisher are already built from the rest."""
        self.source = source
        self.classifier = classifier  # replaced whole by a reload; the worker reads it once per utterance
        self.publisher = publisher
        self.settings = settings
        self.out = out
        self.notifier = Notifier({}) if notifier is None else notifier
        self.segmenter = Segmenter(SegmenterConfig.of(settings.vad, source.sample_rate))
        self._reloader = reloader
        self._jobs = _WorkQueue(worker_queue)
        self._stop_requested = threading.Event()
        self._reload_requested = threading.Event()
        self._reload_thread: threading.Thread | None = None
        self._reload_result: tuple[Classifier, RunSettings] | str = ""
        self._pending_segmenter: SegmenterConfig | None = None
        self._worker = threading.Thread(target=self._work, name="ser-stream-worker", daemon=True)
        self._started: float  # monotonic and wall-clock time the input opened, set by run()
        self._wall_start: datetime
        self._main_alive = time.monotonic()  # the main loop's last pass, for the watchdog
        self.utterance_drops = 0

    # -- control -------------------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        """Signal-handler safe: only sets a flag the main loop polls."""
        self._stop_requested.set()

    def request_reload(self, *_: object) -> None:
        """Signal-handler safe, like request_stop."""
        self._reload_requested.set()

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    def run(self) -> int:
        self.classifier.warm_up()  # before the input opens: no audio waits for it
        self.source.start()
        self._wall_start = datetime.now(timezone.utc)
        self._started = time.monotonic()
        self._main_alive = self._started
        self.notifier.ready(self.status_line("listening"))
        self._worker.start()
        self._enqueue(_StatusChange("started", f"listening on {self.source.name} at {self.source.sample_rate} Hz"))
        reason = "stop requested"
        try:
            self._segment_until_stopped()
            if self.source.finished:
                reason = "end of input"
        except UserError as error:  # e.g. the input device went away: say so, then exit with it
            reason = str(error)
            raise
        finally:
            self.notifier.stopping(self.status_line(f"stopping ({reason})"))
            self.source.stop()
            self._flush_segmenter()
            self._jobs.put(_Stop(reason))  # the worker drains the queue, then sends the final status
            self._worker.join()
        return 0

    def status_line(self, state: str) -> str:
        """One line for `systemctl status`."""
        counters = self.counters()
        bundle = self.classifier.bundle
        return (
            f"{state}: {self.source.name} at {self.source.sample_rate} Hz, {counters['utterances']} utterances, "
            f"{counters['queue_drops'] + counters['drops']} dropped; model {bundle.name} {bundle.sha256[:12]}"
        )

    # -- reload: config and model loaded off the audio path, swapped in by the main thread ------

    def _start_reload(self) -> None:
        self._reload_requested.clear()
        if self._reload_thread is not None:
            log.info("reload already in progress; SIGHUP ignored")
            return
        if self._reloader is None:
            log.warning("SIGHUP ignored: this daemon has nothing to reload from")
            return
        self.notifier.reloading()
        self.notifier.status(self.status_line("reloading"))
        log.info("reloading config and model (SIGHUP)")
        self._reload_thread = threading.Thread(target=self._load_for_reload, name="ser-stream-reload", daemon=True)
        self._reload_thread.start()

    def _load_for_reload(self) -> None:
        """The reload thread: its result waits in ``_reload_result`` until the main loop sees it end."""
        try:
            self._reload_result = self._reloader()
        except UserError as error:
            self._reload_result = str(error)
        except Exception as error:  # a bug in a reload must not take down the running pipeline
            log.exception("reload failed")
            self._reload_result = f"{type(error).__name__}: {error}"

    def _apply_reload(self, result: tuple[Classifier, RunSettings] | str) -> None:
        if isinstance(result, str):
            log.error("reload failed, still running the previous config and model: %s", result)
            message = f"reload failed: {result}"
        else:
            classifier, settings = result
            changed_model = classifier.bundle.sha256 != self.classifier.bundle.sha256
            self.classifier = classifier
            segmenter = SegmenterConfig.of(settings.vad, self.source.sample_rate)
            if segmenter != self.segmenter.config:
                self._pending_segmenter = segmenter  # applied between utterances
            self.settings = settings
            bundle = classifier.bundle
            message = f"reloaded: model {bundle.name} {bundle.sha256[:12]}" + ("" if changed_model else " (unchanged)")
            log.info("%s", message)
        self._enqueue(_StatusChange("running", message))
        self.notifier.ready(self.status_line(message))

    # -- main thread: audio → utterances --------------------------------------------------------

    def _segment_until_stopped(self) -> None:
        while not self._stop_requested.is_set():
            self._main_alive = time.monotonic()
            if self._reload_requested.is_set():
                self._start_reload()
            if self._reload_thread is not None and not self._reload_thread.is_alive():
                self._reload_thread = None
                self._apply_reload(self._reload_result)
            if self._pending_segmenter is not None and not self.segmenter.in_speech:
                self.segmenter = self.segmenter.reconfigured(self._pending_segmenter)
                self._pending_segmenter = None
            try:
                block = self.source.read(READ_TIMEOUT_S)
            except DeviceLostError as error:
                self._recover_device(error)
                continue
            if block is None:
                if self.source.finished:
                    return
                continue
            if block.start > self.segmenter.position:
                # A gap: audio dropped from a full queue, lost by the sound system, or missed while
                # the device was away.  The utterance in progress ends where the audio does, and
                # stream time jumps the gap.
                self._flush_segmenter(resume_at=block.start)
            for utterance in self.segmenter.feed(block.samples):
                self._enqueue(_Job(utterance, block.captured_at))

    def _flush_segmenter(self, resume_at: int = 0) -> None:
        """The utterance in progress, if any, goes to the worker: the input is ending, gone or cut."""
        for utterance in self.segmenter.flush(resume_at):
            self._enqueue(_Job(utterance, time.monotonic()))

    def _recover_device(self, lost: DeviceLostError) -> None:
        """Publish what was captured, say the device is lost, and reopen it with capped backoff.

        Returns when the device is back or a stop was requested.  The main loop stays alive for
        the watchdog meanwhile: waiting for a device is not a hang.
        """
        self._flush_segmenter(resume_at=self.segmenter.position)  # the gap is skipped when audio returns
        lost_at = time.monotonic()
        log.warning("%s; reopening it", lost)
        self._enqueue(_StatusChange("device lost", str(lost)))
        self.notifier.status(self.status_line(f"device lost ({lost})"))
        delay = REOPEN_FIRST_S
        while not self._sleep_unless_stopped(delay):
            try:
                self.source.reopen()
            except DeviceError as error:
                delay = min(2 * delay, REOPEN_MAX_S)
                log.info("input device not back yet (%s); next try in %.1f s", error, delay)
                continue
            message = f"{self.source.name} is back after {time.monotonic() - lost_at:.1f} s"
            log.info("%s", message)
            self._enqueue(_StatusChange("device back", message))
            self.notifier.status(self.status_line("listening"))
            return

    def _sleep_unless_stopped(self, seconds: float) -> bool:
        """Wait, keeping the main loop's watchdog stamp fresh; True if a stop was requested."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._main_alive = time.monotonic()
            if self._stop_requested.wait(min(left, READ_TIMEOUT_S)):
                return True
        return self._stop_requested.is_set()

    def _enqueue(self, job: _Job | _StatusChange) -> None:
        """Never blocks a live audio path: when the worker lags, the oldest waiting utterance goes.
        A source that can wait (a file read as fast as possible) waits for the worker instead."""
        if not self.source.live:
            self._jobs.put(job)
            self._wait_for_worker()
            return
        dropped = self._jobs.put_evicting(job)
        if dropped is not None:
            self.utterance_drops += 1
            log.warning("worker behind: dropped %s", dropped)

    def _wait_for_worker(self) -> None:
        """Until the worker has handled everything queued.  A file read far faster than real time is
        then processed one utterance at a time, each event sent as soon as its utterance is read,
        rather than piling up behind the worker (and its latency with it)."""
        with self._jobs.all_tasks_done:
            while self._jobs.unfinished_tasks and self._worker.is_alive():
                self._main_alive = time.monotonic()  # waiting on the worker, whose own pings tell if it hangs
                self._jobs.all_tasks_done.wait(READ_TIMEOUT_S)

    # -- worker thread: utterances → events ----------------------------------------------------

    def _work(self) -> None:
        next_heartbeat = time.monotonic() + self.settings.service.heartbeat_s
        next_ping = time.monotonic()
        watchdog_s = self.notifier.watchdog_interval_s
        while True:
            wake = next_heartbeat if watchdog_s is None else min(next_heartbeat, next_ping)
            try:
                item = self._jobs.get(timeout=max(0.0, wake - time.monotonic()))
            except queue.Empty:
                item = None
            now = time.monotonic()
            if watchdog_s is not None and now >= next_ping:
                # Pinged from here, the processing path, and only while the audio loop moves too.
                if now - self._main_alive <= watchdog_s:
                    self.notifier.watchdog()
                next_ping = now + watchdog_s
            if now >= next_heartbeat:
                next_heartbeat = now + self.settings.service.heartbeat_s
                self._handle(_StatusChange("running"))
                self.notifier.status(self.status_line("running"))
            if item is None:
                continue
            try:
                self._handle(item)
            finally:
                self._jobs.task_done()
            if isinstance(item, _Stop):
                return

    def _handle(self, item: _Job | _StatusChange | _Stop) -> None:
        """Classify and publish, or publish a status; a failure costs that one event, never the worker
        (a stuck worker would hang the stop, and a file source that waits for it)."""
        try:
            if isinstance(item, _Job):
                self._classify_and_publish(item)
            elif isinstance(item, _StatusChange):
                self._publish_status(item.state, item.message)
            else:
                self._publish_status("stopping", item.reason)
        except Exception:
            log.exception("could not publish the event of %s", item)

    def _classify_and_publish(self, job: _Job) -> None:
        utterance = job.utterance
        classifier = self.classifier  # one model per utterance, even if a reload swaps it meanwhile
        prediction = classifier.classify(from_int16(utterance.samples), utterance.sample_rate)
        event = emotion_event(
            label=prediction.label,
            confidence=prediction.confidence,
            probabilities=prediction.probabilities,
            start_s=utterance.start_s,
            end_s=utterance.end_s,
            wall_end=self._wall_start + timedelta(seconds=utterance.end_s),
            source=self.source.name,
            model=_model_info(classifier),
            device=self.settings.publish.device_id,
        )
        self._send(TOPIC_EMOTION, event, job.captured_at)

    def counters(self) -> dict[str, int | float]:
        source = self.source.counters()
        return {
            "frames_captured": source["frames_captured"],
            "frames_lost": source["frames_lost"],
            "overflows": source["overflows"],
            "utterances": self.segmenter.emitted,
            "utterances_dropped_short": self.segmenter.dropped_short,
            "events_published": self.publisher.sent,
            "drops": self.publisher.dropped,
            "queue_drops": source["queue_drops"] + self.utterance_drops,
            "queue_depth": source["queue_depth"] + self._jobs.qsize(),
        }

    def _publish_status(self, state: str, message: str | None = None) -> None:
        event = status_event(
            state=state,
            counters=self.counters(),
            uptime_s=time.monotonic() - self._started,
            source=self.source.name,
            model=_model_info(self.classifier),
            device=self.settings.publish.device_id,
            message=message,
        )
        self._send(TOPIC_STATUS, event)

    def _send(self, topic: str, event: dict, captured_at: float | None = None) -> None:
        self.publisher.publish(topic, event, captured_at)
        if self.settings.publish.print_events:
            print(json.dumps(event), file=self.out, flush=True)


def _model_info(classifier: Classifier) -> dict[str, str]:
    return {"name": classifier.bundle.name, "sha256": classifier.bundle.sha256}
