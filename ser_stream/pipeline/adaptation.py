"""The worker's voice adapter: the statistics the model's input is standardised with, learned from
each final utterance on the worker thread (never on the audio path), and kept in the state folder.

- A bundle without an adaptation prior has no adapter: its features go to the network as they are.
- ``adapt`` off (``--no-adapt``): the prior alone, as at a cold start; nothing is learned, and the
  state file is neither read nor written.
- With a state folder, the state is saved atomically every ``SAVE_EVERY`` utterances learned and at
  stop, and restored at start; a state file that cannot be used (another model, another feature
  count, corrupt) is one warning line and a fresh start.  Without one it lasts as long as the process.
  The saves run on a thread of their own (`StateWriter`): the worker never waits for the disk.
- A reload (SIGHUP) keeps what was learned, unless the model changed: another model starts afresh.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

from ..adapter import VoiceAdapter
from ..adapter_state import STATE_FILE, StateRefused, load_state, save_state
from ..errors import ConfigError
from ..model import ModelBundle
from ..settings import ModelSettings

log = logging.getLogger("ser_stream")

#: Utterances learned between two saves: a crash loses at most these.
SAVE_EVERY = 5
#: How long a stop waits for the last save: a disk stuck longer keeps the previous state file.
CLOSE_TIMEOUT_S = 5.0


class StateWriter:
    """Writes the adapter states handed to it to the state file, on a thread of its own, so the worker
    never waits for the disk: an fsync takes milliseconds, on a busy SD card seconds, while the worker
    publishes events and pets the watchdog.  One state waits at most (a newer one replaces it: each is
    the whole state).  A failing save is one warning until a save succeeds again."""

    def __init__(self, path: Path, model_sha256: str) -> None:
        self.path = path
        self._sha256 = model_sha256
        self._pending: VoiceAdapter | None = None
        self._closed = False
        self._failing = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="ser-stream-state", daemon=True)
        self._thread.start()

    def submit(self, adapter: VoiceAdapter) -> None:
        """Save a copy of ``adapter``'s state (soon, and in the background)."""
        snapshot = VoiceAdapter.from_state(adapter.prior, adapter.state())
        with self._wake:
            self._pending = snapshot
            self._wake.notify()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Write what waits, then end; after ``timeout`` the state stays as the disk has it (one warning)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "the adaptation state was not saved to %s within %.0f s; it keeps the last saved", self.path, timeout
            )

    @property
    def failing(self) -> bool:
        """The last save failed: the next chance to save should take it, even with nothing new."""
        return self._failing

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                if self._pending is None:
                    return
                snapshot, self._pending = self._pending, None
            self._write(snapshot)

    def _write(self, snapshot: VoiceAdapter) -> None:
        try:
            save_state(self.path, snapshot, self._sha256)
        except OSError as error:
            if not self._failing:
                log.warning("could not save the adaptation state to %s (%s); will retry", self.path, error)
            self._failing = True
            return
        self._failing = False


class Adaptation:
    """What the worker standardises features with and learns into; owned by the worker thread."""

    def __init__(self, bundle: ModelBundle, adapter: VoiceAdapter | None, learning: bool, state_file: Path | None):
        self.bundle = bundle
        self.adapter = adapter  # None: the bundle does not adapt
        self.learning = learning and adapter is not None
        self.state_file = state_file
        self._unsaved = 0  # utterances learned since the last save
        self._writer = StateWriter(state_file, bundle.sha256) if state_file is not None and self.learning else None

    @classmethod
    def start(cls, bundle: ModelBundle, settings: ModelSettings, reset: bool = False) -> Adaptation:
        """At start-up: restored from the state folder if there is one (forgotten first with ``reset``).
        ConfigError when the folder cannot be made, written or emptied."""
        state_file = _state_file(settings.state_dir)
        if reset:
            _forget(state_file)
        return cls._restored(bundle, settings, state_file)

    @classmethod
    def _restored(cls, bundle: ModelBundle, settings: ModelSettings, state_file: Path | None) -> Adaptation:
        if bundle.prior is None:
            if settings.adapt:
                log.warning("adapt is on, but model %s has no adaptation prior: it classifies without", bundle.name)
            return cls(bundle, None, False, state_file)
        learning = settings.adapt is not False
        adapter = VoiceAdapter(bundle.prior)
        if learning and state_file is not None and state_file.exists():
            try:
                adapter = load_state(state_file, bundle.prior, bundle.sha256)
                log.info("adaptation restored from %s: %d utterances heard", state_file, adapter.heard)
            except StateRefused as error:
                log.warning("adaptation state %s: %s; starting afresh", state_file, error)
        return cls(bundle, adapter, learning, state_file)

    def reconfigured(self, bundle: ModelBundle, settings: ModelSettings) -> Adaptation:
        """After a reload: the same model keeps what was learned; another model starts afresh."""
        learning = bundle.prior is not None and settings.adapt is not False
        if bundle.sha256 == self.bundle.sha256 and learning == self.learning:
            if self.adapter is not None and bundle.prior is not self.adapter.prior:  # the same arrays, reloaded
                self.adapter = VoiceAdapter.from_state(bundle.prior, self.adapter.state())
            self.bundle = bundle
            return self
        self.close()
        if bundle.sha256 == self.bundle.sha256:  # adapt switched: as at a start
            return self._restored(bundle, settings, self.state_file)
        fresh = Adaptation._restored(bundle, settings, None)  # not this file: it holds the old model's state
        if fresh.learning:
            log.info("model changed to %s %s: adaptation starts afresh", bundle.name, bundle.sha256[:12])
        return Adaptation(bundle, fresh.adapter, fresh.learning, self.state_file)

    @property
    def adapted_on(self) -> int | None:
        """Utterances in the statistics (0: the prior alone); None without an adapter."""
        return None if self.adapter is None else self.adapter.heard

    def learn(self, features: np.ndarray) -> None:
        """One final utterance's raw features into the statistics; saved every SAVE_EVERY."""
        if not self.learning or self.adapter is None:
            return
        try:
            self.adapter.update(features)
        except ValueError as error:  # non-finite features: nothing to learn from
            log.debug("adaptation skipped an utterance: %s", error)
            return
        self._unsaved += 1
        if self._unsaved >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Have what was learned since the last save written (in the background), if there is a state file."""
        if self._writer is None or self.adapter is None or not (self._unsaved or self._writer.failing):
            return
        self._writer.submit(self.adapter)
        self._unsaved = 0

    def close(self) -> None:
        """At stop (or before the model changes): what was learned goes to disk, and the writer ends."""
        self.save()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _state_file(state_dir: Path | None) -> Path | None:
    """The state file in ``state_dir``, the folder made if need be; ConfigError if it cannot be used."""
    if state_dir is None:
        return None
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"state_dir {state_dir}: cannot create it ({error.strerror or error})") from None
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"state_dir {state_dir}: not writable by this user")
    return state_dir / STATE_FILE


def _forget(state_file: Path | None) -> None:
    """``--reset-adaptation``: the state file goes (a new owner, a new room)."""
    if state_file is None:
        log.info("adaptation reset: nothing kept to forget (no state_dir)")
        return
    try:
        state_file.unlink(missing_ok=True)
    except OSError as error:
        raise ConfigError(f"state_dir: cannot remove {state_file} ({error.strerror or error})") from None
    log.info("adaptation reset: %s removed, starting from the prior", state_file)
