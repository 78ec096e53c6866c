"""The pipeline's counters: one typed record, each stage reporting its share.

The source counts audio, the segmenter utterances, the worker what it published and dropped;
each returns a ``Counters`` with its own fields set, and a status adds the shares up.  The field
order is the order of the `counters` object in the status event (wire format version 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


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

    def __add__(self, other: Counters) -> Counters:
        return Counters(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
