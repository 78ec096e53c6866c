"""`ser-stream run`: settings → source, classifier, publisher → daemon, and what a reload re-reads."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from .capture import FileSource, MicSource, Source
from .config import RunConfig, resolve
from .control import Control
from .logs import set_level, setup_logging
from .model import Classifier, load_bundle, single_threaded_blas, trim_differences
from .native_log import native_stderr_logged
from .notify import Notifier
from .pipeline import Daemon, DaemonSettings, ReopeningSource
from .publisher import Publisher

log = logging.getLogger("ser_stream")


def daemon_settings(config: RunConfig, sample_rate: int) -> DaemonSettings:
    return DaemonSettings(
        segmenter=config.segmenter(sample_rate),
        heartbeat_s=config.heartbeat_s,
        print_events=config.print,
        device_id=config.device_id,
        interim_ms=config.interim_ms,
    )


def open_source(config: RunConfig) -> Source | ReopeningSource:
    if config.source == "mic":  # a lost microphone is reopened, with backoff
        return ReopeningSource(MicSource(config.device, sample_rate=config.capture_rate, block_ms=config.frame_ms))
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
    # PortAudio and ALSA write raw lines to stderr when a device is probed or lost: through the log.
    with native_stderr_logged() if config.source == "mic" else contextlib.nullcontext():
        return _serve(config_path, flags, config)


def _serve(config_path: Path | None, flags: dict[str, Any], config: RunConfig) -> int:
    classifier = Classifier(load_bundle(config.model))
    source = open_source(config)
    settings = daemon_settings(config, source.sample_rate)
    differences = trim_differences(classifier.bundle, settings.segmenter)
    if differences:
        log.warning(
            "VAD settings differ from the model's training, its accuracy may not hold: %s", "; ".join(differences)
        )
    endpoint = config.publish_connect or config.publish
    control = Control()
    control.install()  # from here on, SIGTERM, SIGINT and SIGHUP are requests the daemon polls
    try:
        with Publisher(endpoint, connect=config.publish_connect is not None, curve=config.curve()) as publisher:
            reloader = Reloader(config_path, flags, config, classifier, source.sample_rate)
            daemon = Daemon(
                source, classifier, publisher, settings, notifier=Notifier(), reloader=reloader, control=control
            )
            if config.wait_subscriber and not publisher.wait_for_subscriber(
                config.wait_subscriber, lambda: control.stop
            ):
                if control.stop:
                    log.info("stopped while waiting for a first subscriber; nothing was streamed")
                    return 0
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
    finally:
        control.ignore_signals()  # the rest of a burst must not kill the exiting interpreter
