"""Waiting in tests: for a condition, with a deadline, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str) -> T:
    """``condition()``'s first truthy value, polled until ``timeout`` s; an AssertionError naming
    ``what`` after that.  On a busy machine everything takes longer, and a deadline far above the
    usual wait costs nothing when things go well."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)  # the polling period
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
