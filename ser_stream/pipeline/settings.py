"""What the running pipeline is told: built by the service from the config, replaced whole by a reload."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..segmenter import SegmenterConfig


@dataclass(frozen=True)
class DaemonSettings:
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    heartbeat_s: float = 5.0
    worker_queue: int = 16  # utterances waiting for the worker; beyond it the oldest is dropped
    print_events: bool = False
    device_id: str = "ser-stream"  # every event's `device`
    interim_ms: int = 1000  # an open utterance is classified this often (stream time); 0: never
