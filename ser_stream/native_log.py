"""What C libraries write to stderr, through our log.

PortAudio (``Expression '...' failed in 'src/hostapi/alsa/...'``) and ALSA (``ALSA lib
pcm_pulse.c:...``) write straight to file descriptor 2 when a device is probed or goes away,
around the log: raw lines, without our prefix or journal priority.  While relaying, fd 2 is a pipe
whose lines a thread logs: sound-library lines at debug level (the daemon logs its own line for
what happened, e.g. the device lost), anything else as a warning.  Python's own stderr (the log,
the CLI's error line) writes to a duplicate of the real one meanwhile.

The price: a library that writes a line and aborts the process at once may take that line with
it, as the relay had no time to read it.  So the relay runs only where PortAudio does (`run` from a
microphone).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator

from .logs import LOGGER

log = logging.getLogger(LOGGER)

#: Lines of PortAudio's ALSA host API and of ALSA itself (the pulse plugin's too).
SOUND_LIBRARY_LINE = re.compile(r"(Expression '.*' failed in 'src/|ALSA lib |PaAlsa|snd_)")


def _relay(read_end: int) -> None:
    with os.fdopen(read_end, "r", errors="backslashreplace") as pipe:
        for raw in pipe:
            line = raw.strip()
            if not line:
                continue
            if SOUND_LIBRARY_LINE.match(line):
                log.debug("sound library: %s", line)
            else:
                log.warning("from a library: %s", line)


@contextlib.contextmanager
def native_stderr_logged() -> Iterator[None]:
    """Within the block, lines written to fd 2 by C code are logged; fd 2 is restored after it."""
    python_stderr = sys.stderr
    python_stderr.flush()
    real = os.fdopen(os.dup(2), "w", buffering=1, encoding=python_stderr.encoding, errors="backslashreplace")
    handlers = [
        handler
        for handler in logging.getLogger(LOGGER).handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is python_stderr
    ]
    for handler in handlers:
        handler.setStream(real)
    sys.stderr = real
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    relay = threading.Thread(target=_relay, args=(read_end,), name="ser-stream-stderr", daemon=True)
    relay.start()
    try:
        yield
    finally:
        os.dup2(real.fileno(), 2)  # the pipe loses its last writer: the relay reads to its end and stops
        relay.join(timeout=1.0)
        sys.stderr = python_stderr
        for handler in handlers:
            handler.setStream(python_stderr)
        real.close()
