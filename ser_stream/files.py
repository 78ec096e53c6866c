"""Files a user names (a config file, an audio file): regular files only, each other thing named for what it is.

Opening a FIFO waits for a writer forever, and ``/dev/zero`` never ends: neither is a file to
read whole.  Light: the standard library only.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words."""
    return next((name for test, name in _KINDS if test(mode)), "a regular file")


def why_unreadable(path: Path) -> str | None:
    """Why ``path`` is not a regular file one can open, in words ("no such file", "is a named pipe
    (FIFO), not a regular file", ...), or None if it is one.  Follows symbolic links, as opening would."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except PermissionError:
        return "permission denied"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a loop of symbolic links"
        if error.errno == errno.ENOTDIR:
            return "a path through a file (Not a directory)"
        return error.strerror or str(error)
    return None if stat.S_ISREG(mode) else f"is {kind_of(mode)}, not a regular file"


def read_bounded(path: Path, limit: int, what: str = "a config file") -> bytes:
    """The whole of a regular file of at most ``limit`` bytes (``what`` it should be); ValueError saying why not.

    Opened without blocking and checked on the open file, so a FIFO swapped in meanwhile does
    not hang and a file that grows is cut at ``limit + 1`` bytes and refused.
    """
    if (reason := why_unreadable(path)) is not None:
        raise ValueError(reason)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise ValueError(error.strerror or str(error)) from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"is {kind_of(mode)}, not a regular file")
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            raise ValueError(error.strerror or str(error)) from None
    if len(data) > limit:
        raise ValueError(f"is larger than {limit // 1024} KiB: not {what}")
    return data
