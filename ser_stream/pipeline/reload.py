"""A reload (SIGHUP) as a background result: the config and model are read and checked on a
short-lived thread; the main loop polls for the outcome and applies it, so the input stays open
and no audio waits for a model to load."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..errors import UserError
from ..model import Classifier
from ..settings import RunSettings

log = logging.getLogger("ser_stream")

#: Loads the config and model again (a new model warmed up); raises UserError (one line) to keep
#: the running ones.
Reloader = Callable[[], tuple[Classifier, RunSettings]]
#: A reload's outcome: the new model and settings, or why they were refused.
Outcome = tuple[Classifier, RunSettings] | str


class Reload:
    """One reload in progress; ``outcome()`` is None until it is done."""

    def __init__(self, reloader: Reloader) -> None:
        self._reloader = reloader
        self._outcome: Outcome | None = None
        self._thread = threading.Thread(target=self._load, name="ser-stream-reload", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            outcome: Outcome = self._reloader()
        except UserError as error:
            outcome = str(error)
        except Exception as error:  # a bug in a reload must not take down the running pipeline
            log.exception("reload failed")
            outcome = f"{type(error).__name__}: {error}"
        self._outcome = outcome

    def outcome(self) -> Outcome | None:
        return None if self._thread.is_alive() else self._outcome
