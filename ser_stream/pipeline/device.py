"""A microphone that goes away and comes back: device loss and reopen-with-backoff, as events.

``ReopeningSource`` wraps a source that can be reopened (``MicSource``).  Its ``read`` turns the
loss of the device into a ``DeviceChange``, then tries to reopen it with capped backoff, each try
inside a ``read`` call that otherwise waits no longer than its timeout: the main loop stays in
charge meanwhile (stop requests, heartbeats, the watchdog), and learns of the loss and the return
as it learns of audio.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from ..capture import AudioBlock, Source
from ..counters import Counters
from ..errors import DeviceError, DeviceLostError

log = logging.getLogger("ser_stream")

#: Reopening a lost input device: first try after this long, doubling up to the cap.
REOPEN_FIRST_S = 0.5
REOPEN_MAX_S = 10.0


@dataclass(frozen=True)
class DeviceChange:
    """The input went away (``device lost``) or came back (``device back``); ``message`` says how."""

    state: str
    message: str


class Reopenable(Source, Protocol):
    def reopen(self) -> None:
        """After DeviceLostError: open the input again, or raise DeviceError if it is still gone."""
        ...


class ReopeningSource:
    """A ``Source`` whose ``read`` also returns DeviceChange events, and never raises DeviceLostError."""

    def __init__(self, source: Reopenable) -> None:
        self._source = source
        self.live = source.live
        self._lost_at: float | None = None  # monotonic time the device was lost, while it is away
        self._delay = REOPEN_FIRST_S
        self._next_try = 0.0

    @property
    def name(self) -> str:  # a reopened device's name is the one found again
        return self._source.name

    @property
    def sample_rate(self) -> int:
        return self._source.sample_rate

    @property
    def finished(self) -> bool:
        return self._source.finished

    @property
    def idle(self) -> bool:
        return self._source.idle

    @idle.setter
    def idle(self, idle: bool) -> None:
        self._source.idle = idle

    def start(self) -> None:
        self._source.start()

    def stop(self) -> None:
        self._source.stop()

    def counters(self) -> Counters:
        return self._source.counters()

    def read(self, timeout: float) -> AudioBlock | DeviceChange | None:
        if self._lost_at is None:
            try:
                return self._source.read(timeout)
            except DeviceLostError as error:
                self._lost_at = time.monotonic()
                self._delay = REOPEN_FIRST_S
                self._next_try = self._lost_at + self._delay
                log.warning("%s; reopening it", error)
                return DeviceChange("device lost", str(error))
        wait = self._next_try - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))
            return None
        try:
            self._source.reopen()
        except DeviceError as error:
            self._delay = min(2 * self._delay, REOPEN_MAX_S)
            self._next_try = time.monotonic() + self._delay
            log.info("input device not back yet (%s); next try in %.1f s", error, self._delay)
            return None
        message = f"{self.name} is back after {time.monotonic() - self._lost_at:.1f} s"
        log.info("%s", message)
        self._lost_at = None
        return DeviceChange("device back", message)
