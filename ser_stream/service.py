"""`ser-stream run`: settings → source, classifier, publisher → daemon, and what a reload re-reads."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .capture import FileSource, MicSource, Source
from .config import resolve
from .daemon import Daemon
from .logs import set_level, setup_logging
from .model import Classifier, load_bundle, single_threaded_blas, trim_differences
from .notify import Notifier
from .publisher import Publisher
from .segmenter import SegmenterConfig
from .settings import RunSettings

log = logging.getLogger("ser_stream")


def open_source(settings: RunSettings) -> Source:
    """The input the capture settings name, in blocks of one VAD frame; it says which rate it delivers."""
    capture, block_ms = settings.capture, settings.vad.frame_ms
    if capture.source == "mic":
        return MicSource(capture.device, sample_rate=capture.rate, block_ms=block_ms)
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
        if bundle.sha256 != self.classifier.bundle.sha256:
            self.classifier = Classifier(bundle)
            self.classifier.warm_up()  # here, off the audio path, before the worker gets it
        set_level(new.service.log_level)
        self.running = new
        return self.classifier, new


def run_service(config_path: Path | None, flags: dict[str, Any]) -> int:
    """Start-up checks everything before the input opens: config, model, endpoint, then the device."""
    settings = resolve(config_path, flags)
    setup_logging(settings.service.log_level)
    single_threaded_blas()
    classifier = Classifier(load_bundle(settings.model.path))
    source = open_source(settings)
    differences = trim_differences(classifier.bundle, SegmenterConfig.of(settings.vad, source.sample_rate))
    if differences:
        log.warning(
            "VAD settings differ from the model's training, its accuracy may not hold: %s", "; ".join(differences)
        )
    publish = settings.publish
    endpoint = publish.connect or publish.endpoint
    with Publisher(endpoint, connect=publish.connect is not None, curve=publish.curve()) as publisher:
        reloader = Reloader(config_path, flags, settings, classifier)
        daemon = Daemon(source, classifier, publisher, settings, notifier=Notifier(), reloader=reloader)
        daemon.install_signal_handlers()
        if publish.wait_subscriber and not publisher.wait_for_subscriber(publish.wait_subscriber):
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
