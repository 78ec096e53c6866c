"""Logging to stderr: plain lines in a terminal, syslog priority prefixes for journald.

Under systemd, stderr is a stream into the journal, which stamps time, unit and PID itself and
reads a leading ``<N>`` as the line's priority (sd-daemon(3)).  systemd says so by setting
``JOURNAL_STREAM`` to the stream's ``device:inode``; we compare it with stderr, as
systemd.exec(5) advises, so a child whose stderr was redirected gets plain lines again.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import IO

#: logging level → syslog priority (sd-daemon.h: SD_DEBUG 7 ... SD_CRIT 2)
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

LOGGER = "ser_stream"


def journal_stream(stream: IO[str] = sys.stderr, environ: Mapping[str, str] = os.environ) -> bool:
    """True when ``stream`` is the journal stream systemd connected us to."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return device.isdigit() and inode.isdigit() and (status.st_dev, status.st_ino) == (int(device), int(inode))


class PlainFormatter(logging.Formatter):
    """``ser-stream: message``, with the level named from warnings up."""

    def format(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return f"ser-stream: {level}{super().format(record)}"


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        # Each line of a multi-line message (a traceback) is its own journal entry: prefix them all.
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def setup_logging(level: str = "info", stream: IO[str] = sys.stderr) -> None:
    """Route the ``ser_stream`` logger to ``stream`` at ``level`` (debug, info, warning, error)."""
    handler = logging.StreamHandler(stream)
    if journal_stream(stream):
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(PlainFormatter("%(message)s"))
    logger = logging.getLogger(LOGGER)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.propagate = False
    set_level(level)


def set_level(level: str) -> None:
    logging.getLogger(LOGGER).setLevel(level.upper())


def error_line(message: str, stream: IO[str] = sys.stderr) -> str:
    """The one line a fatal user error prints: ``<3>``-prefixed for the journal, which names us itself."""
    return f"<3>{message}" if journal_stream(stream) else f"ser-stream: {message}"
