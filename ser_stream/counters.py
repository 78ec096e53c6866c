"""The pipeline's counters: one typed record, each stage reporting its share.

The source counts audio, the segmenter utterances, the worker what it published and dropped;
each returns a ``Counters`` with its own fields set, and a status adds the shares up.  The field
order is the order of the `counters` object in the status event (wire format version 1).

Fields that default to None are readings one stage owns, not totals (the room's noise floor, what
the adapter has heard): a share that knows one gives it, and a status leaves out those not known.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Counters:
    frames_captured: int = 0  # audio samples captured since start
    frames_lost: int = 0  # samples the input lost before the daemon read them (found by the clock)
    overflows: int = 0  # input overflows PortAudio reported
    utterances: int = 0  # utterances the segmenter handed to the worker
    utterances_dropped_short: int = 0  # speech shorter than min_utterance_ms
    events_published: int = 0  # messages handed to ZeroMQ (every topic)
    drops: int = 0  # messages the socket refused outright
    queue_drops: int = 0  # audio blocks or utterances dropped from a full queue
    queue_depth: int = 0  # audio blocks and utterances waiting now
    interim_dropped: int = 0  # interim results dropped for a worker that fell behind
    adapted_on: int | None = None  # the worker: utterances in the voice adapter's statistics
    noise_floor_dbfs: float | None = None  # the segmenter: the room's noise floor

    def __add__(self, other: Counters) -> Counters:
        return Counters(*(_combined(f, getattr(self, f.name), getattr(other, f.name)) for f in fields(self)))

    def as_dict(self) -> dict[str, Any]:
        """The counters known, in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def _combined(f: Field, mine: Any, theirs: Any) -> Any:
    """Totals add up; a reading is the share's that knows it."""
    if f.default is None:
        return theirs if theirs is not None else mine
    return mine + theirs
