"""`ser-stream run`: settings → source, classifier, publisher → daemon, and what a reload re-reads."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .capture import FileSource, MicSource, Source
from .config import RunConfig, resolve
from .daemon import Daemon, DaemonSettings
from .logs import set_level, setup_logging
from .model import Classifier, load_bundle, single_threaded_blas, trim_differences
from .notify import Notifier
from .publisher import Publisher

log = logging.getLogger("ser_stream")


def daemon_settings(config: RunConfig, sample_rate: int) -> DaemonSettings:
    return DaemonSettings(
        segmenter=config.segmenter(sample_rate),
        heartbeat_s=config.heartbeat_s,
        print_events=config.print,
        device_id=config.device_id,
    )


def open_source(config: RunConfig) -> Source:
    if config.source == "mic":
        return MicSource(config.device, sample_rate=config.capture_rate, block_ms=config.frame_ms)
    return FileSource(
        config.source, sample_rate=config.capture_rate, block_ms=config.frame_ms, realtime=config.realtime
    )


class Reloader:
    """Re-reads the same config file with the same flags on top; the model's hash is checked again.

    Keys that need the input or the socket reopened keep their running values, with a warning.
    """

    def __init__(
        self, config_path: Path | None, flags: dict[str, Any], running: RunConfig, classifier: Classifier, rate: int
    ) -> None:
        self._config_path = config_path
        self._flags = flags
        self._rate = rate
        self.running = running
        self.classifier = classifier

    def __call__(self) -> tuple[Classifier, DaemonSettings]:
        new = resolve(self._config_path, self._flags)
        for key in self.running.restart_only_changes(new):
            log.warning("%s changed; it takes effect at the next restart, not on reload", key)
        new = self.running.keeping_restart_only(new)
        bundle = load_bundle(new.model)
        settings = daemon_settings(new, self._rate)
        if bundle.sha256 != self.classifier.bundle.sha256:
            self.classifier = Classifier(bundle)
            self.classifier.warm_up()  # here, off the audio path, before the worker gets it
        set_level(new.log_level)
        self.running = new
        return self.classifier, settings


def run_service(config_path: Path | None, flags: dict[str, Any]) -> int:
    """Start-up checks everything before the input opens: config, model, endpoint, then the device."""
    config = resolve(config_path, flags)
    setup_logging(config.log_level)
    single_threaded_blas()
    classifier = Classifier(load_bundle(config.model))
    source = open_source(config)
    settings = daemon_settings(config, source.sample_rate)
    differences = trim_differences(classifier.bundle, settings.segmenter)
    if differences:
        log.warning(
            "VAD settings differ from the model's training, its accuracy may not hold: %s", "; ".join(differences)
        )
    endpoint = config.publish_connect or config.publish
    with Publisher(endpoint, connect=config.publish_connect is not None, curve=config.curve()) as publisher:
        reloader = Reloader(config_path, flags, config, classifier, source.sample_rate)
        daemon = Daemon(source, classifier, publisher, settings, notifier=Notifier(), reloader=reloader)
        daemon.install_signal_handlers()
        if config.wait_subscriber and not publisher.wait_for_subscriber(config.wait_subscriber):
            log.warning("no subscriber after %.1f s; starting anyway", config.wait_subscriber)
        log.info(
            "model %s (%s), source %s, publishing %s %s as %s",
            classifier.bundle.name,
            classifier.bundle.sha256[:12],
            source.name,
            "to" if config.publish_connect else "on",
            endpoint,
            config.device_id,
        )
        return daemon.run()
