"""What the main loop hands the worker: a small closed set of work items, and the queue between them.

Items are handled in order, one at a time, by the worker thread.  New kinds of work (a voice
adapter's update, speech start/end, interim results, a second model) are new item types here and
new cases in ``Worker._handle``; nothing else in the worker changes.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..segmenter import Utterance

if TYPE_CHECKING:
    from ..model import Classifier
    from ..settings import RunSettings


@dataclass(frozen=True)
class UtteranceJob:
    """Classify an utterance and publish its emotion event."""

    utterance: Utterance
    captured_at: float  # monotonic time the block that closed the utterance was captured

    def __str__(self) -> str:  # for logs: the times, not the samples
        return "utterance {:.2f}–{:.2f} s".format(*self.utterance.bounds_s)


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


WorkItem = UtteranceJob | StatusChange | Heartbeat | WatchdogPing | Reconfigure | Stop
#: Items that say the pipeline is alive: they go to the front of the queue, one of each kind at most.
PULSES = (Heartbeat, WatchdogPing)


class WorkQueue(queue.Queue):
    """The worker's queue.  At most `utterance_limit` utterances wait: a new one past that evicts the
    oldest waiting utterance.  Status changes are never evicted; they are few (start, device lost /
    back, reload, stop) and subscribers rely on them to explain gaps.  A heartbeat or a ping jumps the
    queue (it asks whether the worker still moves, not for its turn) and is not added while another
    of its kind waits: a stuck worker must not pile them up."""

    def __init__(self, utterance_limit: int) -> None:
        super().__init__()  # unbounded for status changes; utterances are bounded here
        self.utterance_limit = utterance_limit

    def utterances_waiting(self) -> int:
        with self.mutex:
            return sum(isinstance(item, UtteranceJob) for item in self.queue)

    def put_evicting(self, item: WorkItem) -> UtteranceJob | None:
        """Never blocks; returns the utterance evicted to make room, if any."""
        with self.not_empty:  # the queue's one lock
            if isinstance(item, PULSES):
                if not any(isinstance(queued, type(item)) for queued in self.queue):
                    self.queue.appendleft(item)
                    self.unfinished_tasks += 1
                    self.not_empty.notify()
                return None
            evicted = None
            if isinstance(item, UtteranceJob):
                waiting = [queued for queued in self.queue if isinstance(queued, UtteranceJob)]
                if len(waiting) >= self.utterance_limit:
                    evicted = waiting[0]
                    self.queue.remove(evicted)  # one task out, one in: unfinished_tasks stays
            self.queue.append(item)
            if evicted is None:
                self.unfinished_tasks += 1
            self.not_empty.notify()
            return evicted
