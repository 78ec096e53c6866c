"""Stop and reload requests (SIGTERM, SIGINT, SIGHUP), safe under any burst of signals.

A Python signal handler runs in the main thread between two bytecodes: inside whatever the main
thread was doing, another handler included.  So a handler must take no lock: ``threading.Event.set``
takes one, and a burst of signals deadlocked on it (a handler nested in another's ``set``).  Here a
handler only sets a plain attribute and writes a byte to a non-blocking socket; the interpreter's
C-level wake-up fd (``signal.set_wakeup_fd``) writes one too, so a loop asleep in ``wait`` wakes at
once, whichever thread the kernel delivered the signal to.  Loops that poll anyway (every 0.1 s)
just read the flags.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket

#: The signals that ask a process to stop; SIGHUP asks a daemon to reload.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
CONTROL_SIGNALS = (*STOP_SIGNALS, signal.SIGHUP)
#: The longest single sleep in ``wait``: select() refuses a timeout beyond a few centuries.
_LONGEST_WAIT_S = 3600.0


class Control:
    """Flags the main loop polls (``stop``, ``reload``), and a ``wait`` that a request cuts short.

    ``request_stop`` and ``request_reload`` are safe from a signal handler and from any thread.
    """

    def __init__(self) -> None:
        self._wake_reader, self._wake_writer = socket.socketpair()
        for end in (self._wake_reader, self._wake_writer):
            end.setblocking(False)
        self.stop = False
        self.reload = False

    def request_stop(self, *_: object) -> None:
        self.stop = True
        self._wake()

    def request_reload(self, *_: object) -> None:
        self.reload = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: the sleeper has wake-ups enough to read
            self._wake_writer.send(b"\0")

    def take_reload(self) -> bool:
        """True if a reload was requested since the last call: a burst of SIGHUPs is one reload, or a
        few, never a queue of them."""
        if not self.reload:
            return False
        self.reload = False
        return True

    def install(self, reload: bool = True) -> None:
        """Route SIGTERM and SIGINT (and SIGHUP with ``reload``) here; main thread only."""
        signal.set_wakeup_fd(self._wake_writer.fileno(), warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.request_stop)
        if reload:
            signal.signal(signal.SIGHUP, self.request_reload)

    def ignore_signals(self) -> None:
        """Once the process has stopped: later signals of a burst are ignored, rather than killing the
        exiting interpreter (which puts its own handlers back to the default action)."""
        for signum in CONTROL_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        signal.set_wakeup_fd(-1)

    def wait(self, timeout: float) -> bool:
        """Sleep until a request arrives or ``timeout`` seconds pass; True if a stop was requested."""
        if not self.stop:
            ready, _, _ = select.select([self._wake_reader], [], [], min(max(timeout, 0.0), _LONGEST_WAIT_S))
            if ready:
                self._drain()
        return self.stop

    def _drain(self) -> None:
        """Read the wake-ups already there, so the next sleep is not cut short by old ones."""
        with contextlib.suppress(OSError):  # BlockingIOError: nothing left
            while self._wake_reader.recv(4096):
                pass
