"""The main thread: read → segment → hand utterances to the worker; start, stop and reload.

Threads, one object each: the input's capture thread (``MicSource``) fills a bounded queue; this
loop reads it, segments (cheap), and hands the worker what the segmenter decided (an utterance
opened, closed, and the utterance itself) and, every ``interim_ms`` while one is open, a copy of it
for an interim result; the ``Worker`` classifies and publishes.  Nothing on the audio path waits
for features, the model or the network.  A
reload (SIGHUP) loads on its own short-lived thread (``Reload``); this loop polls for the outcome
and applies it, so the input stays open throughout.  A lost microphone is the input's business
(``ReopeningSource``): this loop only hears that it is lost, and back.

Heartbeats and watchdog pings are asked for here and sent by the worker: one that goes out proves
both threads move, so a wedged stage sends no `running` status with frozen counters, and stops
petting systemd's watchdog, which restarts the service.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime, timezone
from typing import IO

from ..capture import AudioBlock, Source
from ..control import Control
from ..counters import Counters
from ..errors import UserError
from ..model import Classifier
from ..notify import Notifier
from ..publisher import Publisher
from ..segmenter import Segmenter, SegmenterConfig, SpeechEvent, SpeechStarted
from ..settings import RunSettings
from .adaptation import Adaptation
from .device import DeviceChange, ReopeningSource
from .reload import Outcome, Reload, Reloader
from .work import Heartbeat, Reconfigure, SpeechChange, StatusChange, UtteranceJob, WatchdogPing, WorkItem
from .worker import Worker, status_line

log = logging.getLogger("ser_stream")

#: How long the main loop waits for audio before checking for a stop request.
READ_TIMEOUT_S = 0.1
#: Utterances waiting for the worker; beyond it the oldest is dropped.
WORKER_QUEUE = 16


class Beats:
    """When the main loop asks the worker for a heartbeat (every ``heartbeat_s``) and a watchdog ping
    (every ``watchdog_s``, if systemd wants them).  Pure: the caller gives the time."""

    def __init__(self, heartbeat_s: float, watchdog_s: float | None, now: float) -> None:
        self.heartbeat_s = heartbeat_s  # a reload may change it; it applies from the next heartbeat
        self._watchdog_s = watchdog_s
        self._next_heartbeat = now + heartbeat_s
        self._next_ping = now if watchdog_s is not None else float("inf")

    def due(self, now: float) -> list[Heartbeat | WatchdogPing]:
        items: list[Heartbeat | WatchdogPing] = []
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_s
            items.append(Heartbeat())
        if self._watchdog_s is not None and now >= self._next_ping:
            # On the ping's own schedule, so pings keep their period whatever the loop's pace.
            self._next_ping = max(self._next_ping + self._watchdog_s, now + self._watchdog_s / 2)
            items.append(WatchdogPing())
        return items


class Cadence:
    """When the open utterance's next interim result is due: every ``interim_ms`` of stream time after
    its start (0: never).  Due times missed (the loop was slow) are skipped, not made up for.  Pure:
    the caller gives stream positions in samples."""

    def __init__(self, sample_rate: int) -> None:
        self._rate = sample_rate
        self._every = 0
        self._next: int | None = None

    def opened(self, start: int, interim_ms: int) -> None:
        self._every = interim_ms * self._rate // 1000
        self._next = start + self._every if self._every else None

    def closed(self) -> None:
        self._next = None

    def due(self, position: int) -> bool:
        if self._next is None or position < self._next:
            return False
        self._next += self._every * ((position - self._next) // self._every + 1)
        return True


class Daemon:
    """Runs until the input ends (file) or a stop is requested (SIGTERM/SIGINT); SIGHUP reloads."""

    def __init__(
        self,
        source: Source | ReopeningSource,
        classifier: Classifier,
        publisher: Publisher,
        settings: RunSettings,
        out: IO[str] = sys.stdout,
        notifier: Notifier | None = None,
        reloader: Reloader | None = None,
        control: Control | None = None,
        worker_queue: int = WORKER_QUEUE,
        adaptation: Adaptation | None = None,
    ) -> None:
        """The main loop reads ``settings.vad`` (at the source's rate), ``settings.interim`` and
        ``settings.service``, the worker ``settings.publish`` and ``settings.model``; the source,
        classifier and publisher are already built from the rest, and the adaptation too (by default,
        from ``settings.model``)."""
        self.source = source
        self.classifier = classifier  # the model last handed to the worker
        self.settings = settings
        self.notifier = Notifier({}) if notifier is None else notifier
        self.control = Control() if control is None else control  # stop and reload requests
        self.segmenter = Segmenter(SegmenterConfig.of(settings.vad, source.sample_rate))
        self._utterance = 0  # the number of the utterance last opened
        self._cadence = Cadence(source.sample_rate)
        if adaptation is None:
            adaptation = Adaptation.start(classifier.bundle, settings.model)
        self.worker = Worker(
            publisher,
            classifier,
            settings,
            source,
            self._upstream_counters,
            self.notifier,
            out,
            worker_queue,
            adaptation,
        )
        self._reloader = reloader
        self._reload: Reload | None = None
        self._pending_segmenter: SegmenterConfig | None = None
        self._beats = Beats(settings.service.heartbeat_s, self.notifier.watchdog_interval_s, time.monotonic())

    def request_stop(self) -> None:
        """From any thread or a signal handler: the main loop stops at its next pass."""
        self.control.request_stop()

    def run(self) -> int:
        self.classifier.warm_up()  # before the input opens: no audio waits for it
        self.source.start()
        started = time.monotonic()
        self.worker.start(started, datetime.now(timezone.utc))
        self._beats = Beats(self.settings.service.heartbeat_s, self.notifier.watchdog_interval_s, started)
        self.notifier.ready(self.status_line("listening"))
        self._submit(StatusChange("started", f"listening on {self.source.name} at {self.source.sample_rate} Hz"))
        reason = "stop requested"
        try:
            self._segment_until_stopped()
            if self.source.finished:
                reason = "end of input"
        except UserError as error:  # e.g. a corrupt file or a dead worker: say so, then exit with it
            reason = str(error)
            raise
        finally:
            self.notifier.stopping(self.status_line(f"stopping ({reason})"))
            self.source.stop()
            self._flush_segmenter()
            self.worker.finish(reason)
        self.worker.check()  # it may have died with the input's last utterances
        return 0

    def counters(self) -> Counters:
        return self._upstream_counters() + self.worker.counters()

    def status_line(self, state: str) -> str:
        """One line for `systemctl status`."""
        return status_line(state, self.source, self.counters(), self.classifier)

    def _upstream_counters(self) -> Counters:
        """The shares of the stages before the worker: the input's and the segmenter's."""
        segmenter = self.segmenter
        return self.source.counters() + Counters(
            utterances=segmenter.emitted,
            utterances_dropped_short=segmenter.dropped_short,
            noise_floor_dbfs=segmenter.noise_floor_dbfs,
        )

    # -- the loop: audio → utterances -----------------------------------------------------------

    def _segment_until_stopped(self) -> None:
        while not self.control.stop:
            self.worker.check()
            for pulse in self._beats.due(time.monotonic()):
                self._submit(pulse)
            self._poll_reload()
            if self._pending_segmenter is not None and not self.segmenter.in_speech:
                self.segmenter = self.segmenter.reconfigured(self._pending_segmenter)
                self._pending_segmenter = None
            item = self.source.read(READ_TIMEOUT_S)
            if isinstance(item, DeviceChange):
                self._on_device_change(item)
                continue
            if item is None:
                if self.source.finished:
                    return
                continue
            if item.start > self.segmenter.position:
                # A gap: audio dropped from a full queue, lost by the sound system, or missed while
                # the device was away.  The utterance in progress ends where the audio does, and
                # stream time jumps the gap.
                self._flush_segmenter(resume_at=item.start)
            for event in self.segmenter.feed_events(item.samples):
                self._on_speech(event, self._capture_time(item, event.decided_at))
            if self._cadence.due(self.segmenter.position) and (so_far := self.segmenter.so_far()) is not None:
                captured_at = self._capture_time(item, so_far.closed_at)
                self._submit(UtteranceJob(so_far, captured_at, self._utterance, final=False))
            self.source.idle = self.segmenter.idle  # coarser blocks while nobody speaks: fewer wake-ups

    def _capture_time(self, block: AudioBlock, position: int) -> float:
        """When the audio of ``block`` up to stream ``position`` was captured: a live input times a
        block by its last sample; a file read faster than real time, by the reading."""
        after = block.start + block.samples.size - position
        return block.captured_at - max(after, 0) / self.source.sample_rate if self.source.live else block.captured_at

    def _on_speech(self, event: SpeechEvent, captured_at: float) -> None:
        """Number the utterances; the worker publishes their start and end, and classifies each."""
        if isinstance(event, SpeechStarted):
            self._utterance += 1
            self._cadence.opened(event.start, self.settings.interim.every_ms)
            self._submit(SpeechChange(event, self._utterance, captured_at))
            return
        self._cadence.closed()
        self._submit(SpeechChange(event, self._utterance, captured_at))
        if event.utterance is not None:
            self._submit(UtteranceJob(event.utterance, captured_at, self._utterance))

    def _flush_segmenter(self, resume_at: int = 0) -> None:
        """The utterance in progress, if any, goes to the worker: the input is ending, gone or cut."""
        for event in self.segmenter.flush_events(resume_at):
            self._on_speech(event, time.monotonic())

    def _on_device_change(self, change: DeviceChange) -> None:
        """Lost: what was captured is published first; the gap is skipped when audio returns."""
        if change.state == "device lost":
            self._flush_segmenter(resume_at=self.segmenter.position)
            self.notifier.status(self.status_line(f"device lost ({change.message})"))
        else:
            self.notifier.status(self.status_line("listening"))
        self._submit(StatusChange(change.state, change.message))

    def _submit(self, item: WorkItem) -> None:
        """A live input never waits for the worker; a file read as fast as possible does."""
        self.worker.submit(item, wait=not self.source.live)

    # -- reload: loaded off the audio path, applied here ---------------------------------------

    def _poll_reload(self) -> None:
        if self.control.take_reload():
            self._start_reload()
        if self._reload is not None and (outcome := self._reload.outcome()) is not None:
            self._reload = None
            self._apply_reload(outcome)

    def _start_reload(self) -> None:
        if self._reload is not None:
            log.info("reload already in progress; SIGHUP ignored")
            return
        if self._reloader is None:
            log.warning("SIGHUP ignored: this daemon has nothing to reload from")
            return
        self.notifier.reloading()
        self.notifier.status(self.status_line("reloading"))
        log.info("reloading config and model (SIGHUP)")
        self._reload = Reload(self._reloader)

    def _apply_reload(self, outcome: Outcome) -> None:
        if isinstance(outcome, str):
            log.error("reload failed, still running the previous config and model: %s", outcome)
            message = f"reload failed: {outcome}"
        else:
            classifier, settings = outcome
            changed_model = classifier is not self.classifier  # the reloader keeps an unchanged one
            self.classifier, self.settings = classifier, settings
            segmenter = SegmenterConfig.of(settings.vad, self.source.sample_rate)
            if segmenter != self.segmenter.config:
                self._pending_segmenter = segmenter  # applied between utterances
            self._beats.heartbeat_s = settings.service.heartbeat_s
            self._submit(Reconfigure(classifier, settings))
            bundle = classifier.bundle
            message = f"reloaded: model {bundle.name} {bundle.sha256[:12]}" + ("" if changed_model else " (unchanged)")
            log.info("%s", message)
        self._submit(StatusChange("running", message))
        self.notifier.ready(self.status_line(message))
