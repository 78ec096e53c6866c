"""The `ser-stream` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__
from .errors import UserError
from .publisher import DEFAULT_ENDPOINT
from .segmenter import SegmenterConfig


class ArgumentParser(argparse.ArgumentParser):
    """Usage mistakes end in one line on stderr and exit code 2, like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _classify(args: argparse.Namespace) -> int:
    from .classifier import classify_files
    from .model import load_bundle

    failures = 0
    for file, outcome in classify_files(load_bundle(args.model), args.files, args.jobs):
        if isinstance(outcome, str):
            print(f"ser-stream: {outcome}", file=sys.stderr, flush=True)
            failures += 1
        elif args.json:
            record = {
                "file": file,
                "label": outcome.label,
                "confidence": outcome.confidence,
                "probabilities": outcome.probabilities,
            }
            print(json.dumps(record), flush=True)
        else:
            print(f"{file}\t{outcome.label}\t{outcome.confidence:.3f}", flush=True)
    return 1 if failures else 0


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def _run(args: argparse.Namespace) -> int:
    from .capture import FileSource, MicSource
    from .classifier import Classifier
    from .daemon import Daemon, DaemonSettings
    from .model import load_bundle
    from .publisher import Publisher

    logging.basicConfig(level=logging.INFO, format="ser-stream: %(message)s", stream=sys.stderr)
    classifier = Classifier(load_bundle(args.model))
    if args.source == "mic":
        source = MicSource(args.device, sample_rate=args.capture_rate, block_ms=args.frame_ms)
    else:
        source = FileSource(args.source, sample_rate=args.capture_rate, block_ms=args.frame_ms, realtime=args.realtime)
    try:
        segmenter = SegmenterConfig(
            sample_rate=source.sample_rate,
            frame_ms=args.frame_ms,
            aggressiveness=args.vad_aggressiveness,
            pre_roll_ms=args.pre_roll_ms,
            hangover_ms=args.hangover_ms,
            min_utterance_ms=args.min_utterance_ms,
            max_utterance_ms=args.max_utterance_ms,
            gate_db=args.gate_db,
        )
    except ValueError as error:
        raise UserError(str(error)) from None
    with Publisher(args.publish) as publisher:
        settings = DaemonSettings(segmenter=segmenter, heartbeat_s=args.heartbeat_s, print_events=args.print)
        daemon = Daemon(source, classifier, publisher, settings)
        daemon.install_signal_handlers()
        if args.wait_subscriber and not publisher.wait_for_subscriber(args.wait_subscriber):
            logging.getLogger("ser_stream").warning("no subscriber after %.1f s; starting anyway", args.wait_subscriber)
        logging.getLogger("ser_stream").info(
            "model %s (%s), source %s, publishing on %s",
            classifier.bundle.name,
            classifier.bundle.sha256[:12],
            source.name,
            args.publish,
        )
        return daemon.run()


def _subscribe(args: argparse.Namespace) -> int:
    from .publisher import subscribe

    for _topic, event in subscribe(args.endpoint, args.topic or ["emotion", "status"]):
        print(json.dumps(event), flush=True)
    return 0


def _devices(args: argparse.Namespace) -> int:
    from .capture import list_input_devices

    devices = list_input_devices()
    if not devices:
        raise UserError("no audio input devices found; use `ser-stream run --source FILE` to classify a file")
    for device in devices:
        marker = "*" if device["is_default"] else " "
        print(
            f"{marker}{device['index']:3d}  {device['name']}  ({device['default_samplerate']:.0f} Hz, "
            f"{device['max_input_channels']} ch)"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .model import default_model_path

    parser = ArgumentParser(prog="ser-stream", description="Real-time speech emotion recognition daemon and tools.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    classify = commands.add_parser("classify", help="classify audio files offline, each file as one utterance")
    classify.add_argument("files", nargs="+", metavar="FILE", help="wav, flac or ogg; any rate or channels")
    classify.add_argument("--json", action="store_true", help="one JSON object per line per file")
    classify.add_argument(
        "--model",
        type=Path,
        default=default_model_path(),
        help="model bundle .joblib (manifest .json beside it); default: %(default)s",
    )
    classify.add_argument(
        "--jobs",
        type=_jobs,
        default=os.cpu_count() or 1,
        metavar="N",
        help="files classified in parallel; 1: one after another (default: all cores, %(default)s)",
    )
    classify.set_defaults(handler=_classify)

    run = commands.add_parser("run", help="the daemon: audio → utterances → emotion events on ZeroMQ")
    run.add_argument("--source", default="mic", help="'mic' (default) or an audio file to stream")
    run.add_argument("--device", type=_device, help="input device index or name (default: the system default)")
    run.add_argument(
        "--publish", default=DEFAULT_ENDPOINT, metavar="ENDPOINT", help="ZeroMQ PUB bind address (default: %(default)s)"
    )
    run.add_argument("--model", type=Path, default=default_model_path(), help="model bundle .joblib")
    run.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pace a file source like a microphone (default) or run it as fast as possible",
    )
    run.add_argument("--print", action="store_true", help="also write every event as a JSON line on stdout")
    run.add_argument(
        "--capture-rate",
        type=int,
        choices=(16000, 48000),
        default=16000,
        help="capture and VAD rate in Hz (default: %(default)s)",
    )
    vad = SegmenterConfig()  # the flags' defaults are the segmenter's, which the model was trained with
    run.add_argument("--frame-ms", type=int, choices=(10, 20, 30), default=vad.frame_ms, help="VAD frame (default: 30)")
    run.add_argument(
        "--vad-aggressiveness",
        type=int,
        choices=range(4),
        default=vad.aggressiveness,
        help="webrtcvad aggressiveness 0-3 (default: %(default)s)",
    )
    run.add_argument(
        "--pre-roll-ms", type=int, default=vad.pre_roll_ms, help="audio kept before speech onset (default: %(default)s)"
    )
    run.add_argument(
        "--hangover-ms",
        type=int,
        default=vad.hangover_ms,
        help="non-speech that ends an utterance (default: %(default)s)",
    )
    run.add_argument(
        "--min-utterance-ms",
        type=int,
        default=vad.min_utterance_ms,
        help="shorter ones are dropped (default: %(default)s)",
    )
    run.add_argument(
        "--max-utterance-ms",
        type=int,
        default=vad.max_utterance_ms,
        help="longer speech is cut into windows of this length (default: %(default)s)",
    )
    run.add_argument(
        "--gate-db",
        type=float,
        default=vad.gate_db,
        help="frames this far below the utterance's loudest count as non-speech; 0 = off (default: %(default)s)",
    )
    run.add_argument(
        "--wait-subscriber",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before streaming, wait up to this long for a first subscriber (default: 0, don't wait)",
    )
    run.add_argument("--heartbeat-s", type=float, default=5.0, help="status heartbeat period (default: 5)")
    run.set_defaults(handler=_run)

    sub = commands.add_parser("subscribe", help="print the events of a running daemon as JSON lines")
    sub.add_argument("endpoint", nargs="?", default=DEFAULT_ENDPOINT, help="default: %(default)s")
    sub.add_argument(
        "--topic", action="append", choices=("emotion", "status"), help="topic to print; repeatable (default: both)"
    )
    sub.set_defaults(handler=_subscribe)

    devices = commands.add_parser("devices", help="list audio input devices")
    devices.set_defaults(handler=_devices)
    return parser


def _device(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"ser-stream: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
