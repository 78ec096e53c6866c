"""`ser-stream run`: settings → source, classifier, publisher → daemon, and what a reload re-reads."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from .capture import FileSource, MicSource, Source
from .config import resolve
from .control import Control
from .logs import set_level, setup_logging
from .model import Classifier, load_bundle, single_threaded_blas, trim_differences
from .native_log import native_stderr_logged
from .notify import Notifier
from .pipeline import Daemon, ReopeningSource
from .pipeline.adaptation import Adaptation
from .publisher import Publisher
from .segmenter import SegmenterConfig
from .settings import RunSettings

log = logging.getLogger("ser_stream")


def open_source(settings: RunSettings) -> Source | ReopeningSource:
    """The input the capture settings name, in blocks of one VAD frame; it says which rate it delivers.
    A lost microphone is reopened, with backoff."""
    capture, block_ms = settings.capture, settings.vad.frame_ms
    if capture.source == "mic":
        return ReopeningSource(MicSource(capture.device, sample_rate=capture.rate, block_ms=block_ms))
    return FileSource(capture.source, sample_rate=capture.rate, block_ms=block_ms, realtime=capture.realtime)


class Reloader:
    """Re-reads the same config file with the same flags on top; the model's hash is checked again.

    Keys that need the input or the socket reopened keep their running values, with a warning.
    """

    def __init__(
        self, config_path: Path | None, flags: dict[str, Any], running: RunSettings, classifier: Classifier
    ) -> None:
        self._config_path = config_path
        self._flags = flags
        self.running = running
        self.classifier = classifier

    def __call__(self) -> tuple[Classifier, RunSettings]:
        new = resolve(self._config_path, self._flags)
        for key in self.running.restart_only_changes(new):
            log.warning("%s changed; it takes effect at the next restart, not on reload", key)
        new = self.running.keeping_restart_only(new)
        bundle = load_bundle(new.model.path)
        if bundle.manifest != self.classifier.bundle.manifest:  # the arrays' SHA-256, or a new calibration
            self.classifier = Classifier(bundle)
            self.classifier.warm_up()  # here, off the audio path, before the worker gets it
        set_level(new.service.log_level)
        self.running = new
        return self.classifier, new


def run_service(config_path: Path | None, flags: dict[str, Any], reset_adaptation: bool = False) -> int:
    """Start-up checks everything before the input opens: config, model, state folder, endpoint, then
    the device.  ``reset_adaptation`` forgets what adaptation learned before (a new owner)."""
    settings = resolve(config_path, flags)
    setup_logging(settings.service.log_level)
    single_threaded_blas()
    # PortAudio and ALSA write raw lines to stderr when a device is probed or lost: through the log.
    with native_stderr_logged() if settings.capture.source == "mic" else contextlib.nullcontext():
        return _serve(config_path, flags, settings, reset_adaptation)


def _serve(config_path: Path | None, flags: dict[str, Any], settings: RunSettings, reset_adaptation: bool) -> int:
    classifier = Classifier(load_bundle(settings.model.path))
    adaptation = Adaptation.start(classifier.bundle, settings.model, reset=reset_adaptation)
    source = open_source(settings)
    differences = trim_differences(classifier.bundle, SegmenterConfig.of(settings.vad, source.sample_rate))
    if differences:
        log.warning(
            "VAD settings differ from the model's training, its accuracy may not hold: %s", "; ".join(differences)
        )
    publish = settings.publish
    endpoint = publish.connect or publish.endpoint
    control = Control()
    control.install()  # from here on, SIGTERM, SIGINT and SIGHUP are requests the daemon polls
    try:
        with Publisher(endpoint, connect=publish.connect is not None, curve=publish.curve()) as publisher:
            reloader = Reloader(config_path, flags, settings, classifier)
            daemon = Daemon(
                source,
                classifier,
                publisher,
                settings,
                notifier=Notifier(),
                reloader=reloader,
                control=control,
                adaptation=adaptation,
            )
            if publish.wait_subscriber and not publisher.wait_for_subscriber(
                publish.wait_subscriber, lambda: control.stop
            ):
                if control.stop:
                    log.info("stopped while waiting for a first subscriber; nothing was streamed")
                    return 0
                log.warning("no subscriber after %.1f s; starting anyway", publish.wait_subscriber)
            log.info(
                "model %s (%s), source %s, publishing %s %s as %s",
                classifier.bundle.name,
                classifier.bundle.sha256[:12],
                source.name,
                "to" if publish.connect else "on",
                endpoint,
                publish.device_id,
            )
            return daemon.run()
    finally:
        control.ignore_signals()  # the rest of a burst must not kill the exiting interpreter
