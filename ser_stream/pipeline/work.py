"""What the main loop hands the worker: a small closed set of work items, and the queue between them.

Items are handled in order, one at a time, by the worker thread.  New kinds of work (a voice
adapter's update, a second model) are new item types here and new cases in ``Worker._handle``;
nothing else in the worker changes.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..segmenter import SpeechEvent, Utterance

if TYPE_CHECKING:
    from ..model import Classifier
    from ..settings import RunSettings


@dataclass(frozen=True)
class UtteranceJob:
    """Classify an utterance and publish the result: the final one (topic `emotion`) or, with ``final``
    False, an interim result of the utterance still open (topic `interim`), which the queue drops first.

    Only a final result may change what the pipeline learns from the voices it hears (a voice
    adapter's statistics): an interim one is the same audio again, cut short.
    """

    utterance: Utterance
    captured_at: float  # monotonic time the audio that closed it (or, interim: its last frame) was captured
    number: int  # the utterance's number, from 1 per run: its speech, interim and emotion events share it
    final: bool = True

    def __str__(self) -> str:  # for logs: the times, not the samples
        kind = "utterance" if self.final else "interim result of utterance"
        return "{} {} {:.2f}–{:.2f} s".format(kind, self.number, *self.utterance.bounds_s)


@dataclass(frozen=True)
class SpeechChange:
    """Publish a `speech` event: the segmenter opened (SpeechStarted) or closed (SpeechEnded) an utterance."""

    event: SpeechEvent
    number: int
    captured_at: float  # monotonic time the frame on which the segmenter decided was captured


@dataclass(frozen=True)
class StatusChange:
    """Publish a status event: started, device lost / back, a reload's outcome."""

    state: str
    message: str | None = None


@dataclass(frozen=True)
class Heartbeat:
    """Publish a `running` status and the `systemctl status` line: the main loop asks every heartbeat_s."""


@dataclass(frozen=True)
class WatchdogPing:
    """Pet systemd's watchdog: the main loop asks every half WatchdogSec."""


@dataclass(frozen=True)
class Reconfigure:
    """A reload's result: classify with this model, publish with these settings, from here on."""

    classifier: Classifier
    settings: RunSettings


@dataclass(frozen=True)
class Stop:
    """Finish the queue, send the final status (saying why) and end the thread."""

    reason: str


WorkItem = UtteranceJob | SpeechChange | StatusChange | Heartbeat | WatchdogPing | Reconfigure | Stop
#: Items that say the pipeline is alive: they go to the front of the queue, one of each kind at most.
PULSES = (Heartbeat, WatchdogPing)


def _final(item: WorkItem) -> bool:
    return isinstance(item, UtteranceJob) and item.final


def _interim(item: WorkItem) -> bool:
    return isinstance(item, UtteranceJob) and not item.final


class WorkQueue(queue.Queue):
    """The worker's queue.  Interim work goes first: an interim result still waiting when another
    utterance job comes (a newer interim result, or a final one) is stale, and evicted.  At most
    `utterance_limit` final utterances wait: a new one past that evicts the oldest waiting one.
    Status changes and speech events are never evicted; they are few and small, and subscribers rely
    on them (to explain gaps; to pair an utterance's start with its end).  A heartbeat or a ping
    jumps the queue (it asks whether the worker still moves, not for its turn) and is not added while
    another of its kind waits: a stuck worker must not pile them up."""

    def __init__(self, utterance_limit: int) -> None:
        super().__init__()  # unbounded for status changes; utterances are bounded here
        self.utterance_limit = utterance_limit

    def utterances_waiting(self) -> int:
        """Final utterances waiting (an interim one waits alone, if at all)."""
        with self.mutex:
            return sum(_final(item) for item in self.queue)

    def put_evicting(self, item: WorkItem) -> list[UtteranceJob]:
        """Never blocks; returns the utterance jobs evicted to make room (interim ones first)."""
        with self.not_empty:  # the queue's one lock
            if isinstance(item, PULSES):
                if not any(isinstance(queued, type(item)) for queued in self.queue):
                    self.queue.appendleft(item)
                    self.unfinished_tasks += 1
                    self.not_empty.notify()
                return []
            evicted: list[UtteranceJob] = []
            if isinstance(item, UtteranceJob):
                evicted = [queued for queued in self.queue if _interim(queued)]
                waiting = [queued for queued in self.queue if _final(queued)]
                if item.final and len(waiting) >= self.utterance_limit:
                    evicted.append(waiting[0])
                for job in evicted:
                    self.queue.remove(job)
            self.queue.append(item)
            self.unfinished_tasks += 1 - len(evicted)  # the evicted are done with, unhandled
            self.not_empty.notify()
            return evicted
