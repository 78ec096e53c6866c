"""The `ser-stream` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__
from .errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """Usage mistakes end in one line on stderr and exit code 2, like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _classify(args: argparse.Namespace) -> int:
    from .audio import load_audio
    from .classifier import Classifier
    from .model import load_bundle

    classifier = Classifier(load_bundle(args.model))
    failures = 0
    for file in args.files:
        try:
            prediction = classifier.classify(load_audio(file, classifier.sample_rate))
        except UserError as error:
            print(f"ser-stream: {error}", file=sys.stderr)
            failures += 1
            continue
        if args.json:
            record = {
                "file": file,
                "label": prediction.label,
                "confidence": prediction.confidence,
                "probabilities": prediction.probabilities,
            }
            print(json.dumps(record), flush=True)
        else:
            print(f"{file}\t{prediction.label}\t{prediction.confidence:.3f}", flush=True)
    return 1 if failures else 0


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
    classify.set_defaults(handler=_classify)
    return parser


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
