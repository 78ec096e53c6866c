"""The `ser-stream` command line."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config import add_flags, flag_values
from .errors import ArgumentParser, DeviceError, UserError
from .events import TOPICS
from .logs import error_line
from .model import default_model_path
from .settings import DEFAULT_ENDPOINT, MAX_WAIT_S, ProxySettings, RunSettings


def _classify(args: argparse.Namespace) -> int:
    from .events import prediction_extras
    from .logs import setup_logging
    from .model import classify_files, load_bundle

    setup_logging("warning")
    failures = 0
    bundle = load_bundle(args.model)
    for file, outcome in classify_files(bundle, args.files, args.jobs, adapt=args.adapt):
        if isinstance(outcome, str):
            print(error_line(outcome), file=sys.stderr, flush=True)
            failures += 1
        elif args.json:
            record = {
                "file": file,
                "label": outcome.label,
                "confidence": outcome.confidence,
                "probabilities": outcome.probabilities,
                **prediction_extras(
                    adapted_on=outcome.adapted_on,
                    uncertain=outcome.uncertain(bundle.min_confidence),
                    intensity=outcome.intensity,
                ),
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
    from .service import run_service

    return run_service(args.config, flag_values(args, RunSettings), reset_adaptation=args.reset_adaptation)


def _subscribe(args: argparse.Namespace) -> int:
    from .logs import setup_logging
    from .publisher import subscribe
    from .settings import curve_client

    setup_logging("info")
    curve = curve_client(args.curve_server_key, args.curve_secret_key, ("--curve-server-key", "--curve-secret-key"))
    topics = args.topic or ["emotion", "status"]
    for _topic, event in subscribe(args.endpoint, topics, curve=curve, timeout_s=args.timeout):
        print(json.dumps(event), flush=True)
    return 0


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_WAIT_S:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: must be a number of seconds above 0, at most {MAX_WAIT_S:g}")
    return seconds


def _keygen(args: argparse.Namespace) -> int:
    from .security import keygen

    public, secret = keygen(args.directory, args.name)
    print(f"public key (hand it out): {public}\nsecret key (keep it):     {secret}")
    return 0


def _proxy(args: argparse.Namespace) -> int:
    from .proxy import run_proxy

    return run_proxy(args.config, flag_values(args, ProxySettings))


def _devices(args: argparse.Namespace) -> int:
    from .capture import list_input_devices

    devices = list_input_devices()
    if not devices:
        raise DeviceError("no audio input devices found; use `ser-stream run --source FILE` to classify a file")
    for device in devices:
        marker = "*" if device["is_default"] else " "
        print(
            f"{marker}{device['index']:3d}  {device['name']}  ({device['default_samplerate']:.0f} Hz, "
            f"{device['max_input_channels']} ch)"
        )
    return 0


def _configured(
    commands: argparse._SubParsersAction,
    name: str,
    settings: type[RunSettings | ProxySettings],
    example: str,
    help: str,
) -> argparse.ArgumentParser:
    """A command whose every flag is also a key of its TOML config file."""
    key = example.removeprefix("--").replace("-", "_")
    parser = commands.add_parser(
        name,
        help=help,
        description=f"Every flag is also a key of the config file ({example} is {key}); flags win.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"TOML config file (default: {settings.DEFAULT_FILE} if it exists)",
    )
    add_flags(parser, settings)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="ser-stream", description="Real-time speech emotion recognition daemon and tools.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    classify = commands.add_parser("classify", help="classify audio files offline, each file as one utterance")
    classify.add_argument("files", nargs="+", metavar="FILE", help="wav, flac or ogg; any rate or channels")
    classify.add_argument("--json", action="store_true", help="one JSON object per line per file")
    classify.add_argument(
        "--adapt",
        action="store_true",
        help="the files are one voice: classify each with feature statistics over all of them (two passes)",
    )
    classify.add_argument(
        "--model",
        type=Path,
        default=default_model_path(),
        help="model bundle .npz (manifest .json beside it); default: %(default)s",
    )
    classify.add_argument(
        "--jobs",
        type=_jobs,
        default=os.cpu_count() or 1,
        metavar="N",
        help="files classified in parallel; 1: one after another (default: all cores, %(default)s)",
    )
    classify.set_defaults(handler=_classify)

    run = _configured(
        commands, "run", RunSettings, "--hangover-ms", help="the daemon: audio → utterances → emotion events on ZeroMQ"
    )
    run.add_argument(
        "--reset-adaptation",
        action="store_true",
        help="forget what adaptation learned (a new owner, a new room): removes the state file at start",
    )
    run.set_defaults(handler=_run)

    sub = commands.add_parser("subscribe", help="print the events of a running daemon as JSON lines")
    sub.add_argument("endpoint", nargs="?", default=DEFAULT_ENDPOINT, help="default: %(default)s")
    sub.add_argument(
        "--topic",
        action="append",
        choices=TOPICS,
        help="topic to print; repeatable (default: emotion and status)",
    )
    sub.add_argument(
        "--timeout",
        type=_timeout,
        metavar="SECONDS",
        help="exit (status 75) when this long passes without an event, at the start or since the last one",
    )
    sub.add_argument("--curve-server-key", type=Path, metavar="FILE", help="CURVE: the publisher's public key (.key)")
    sub.add_argument("--curve-secret-key", type=Path, metavar="FILE", help="CURVE: this subscriber's .key_secret")
    sub.set_defaults(handler=_subscribe)

    keygen = commands.add_parser("keygen", help="write a CURVE key pair (NAME.key public, NAME.key_secret) into DIR")
    keygen.add_argument("directory", type=Path, metavar="DIR")
    keygen.add_argument("--name", default="server", help="file name of the pair (default: %(default)s)")
    keygen.set_defaults(handler=_keygen)

    proxy = _configured(
        commands,
        "proxy",
        ProxySettings,
        "--heartbeat-s",
        help="forward the events of many daemons (run --publish-connect) to one endpoint for subscribers",
    )
    proxy.set_defaults(handler=_proxy)

    devices = commands.add_parser("devices", help="list audio input devices")
    devices.set_defaults(handler=_devices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(error_line(str(error)), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
