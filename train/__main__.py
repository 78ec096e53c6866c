"""`python -m train`: reproduce the seed's experiments, beat them, write the model bundle."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ser_stream.errors import ArgumentParser, UserError

from .adaptation import RECIPES
from .experiments import SHIPPED_MEMBERS
from .ravdess import EMOTIONS, SEED_EMOTIONS
from .room_augment import ROOM_COPIES

#: Modules of the `train` extra in pyproject.toml.
TRAIN_EXTRA = ("tqdm", "matplotlib")
#: Modules of the `dask` extra, needed only with --dask.
DASK_EXTRA = ("dask", "distributed")


def missing_modules(names: Sequence[str]) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def parse_emotions(text: str) -> tuple[str, ...]:
    if text == "all":
        return tuple(EMOTIONS.values())
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in EMOTIONS.values()]
    if unknown or len(names) < 2:
        raise argparse.ArgumentTypeError(f"need two or more of {', '.join(EMOTIONS.values())} (or 'all'), got {text!r}")
    return names


def parse_actors(text: str) -> set[int]:
    actors: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            actors.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"actors are numbers or ranges like 1-4,7; got {text!r}") from None
    if not actors or min(actors) < 1 or max(actors) > 24:
        raise argparse.ArgumentTypeError(f"actors must be within 1-24, got {text!r}")
    return actors


def build_parser() -> argparse.ArgumentParser:
    from .dataset import default_cache_dir

    parser = ArgumentParser(
        prog="python -m train",
        description="Train and evaluate the ser-stream emotion model on RAVDESS.",
    )
    parser.add_argument("--data", type=Path, required=True, help="RAVDESS folder with Actor_XX/ subfolders")
    parser.add_argument(
        "--emotions",
        type=parse_emotions,
        default=SEED_EMOTIONS,
        help="comma-separated emotions or 'all' (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=Path("models"), help="bundle folder (default: models/)")
    parser.add_argument(
        "--name",
        help="bundle name (default: ser-mlp for the seed's four emotions, ser-mlp-8 for all, else ser-mlp-<emotions>)",
    )
    parser.add_argument("--report", type=Path, help="report folder (default: reports/<name>/)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel jobs (default: all cores)")
    parser.add_argument("--seed", type=int, default=0, help="first random seed (default: 0)")
    parser.add_argument("--repeats", type=int, default=3, help="seeds for protocol (a) (default: 3, minimum 2)")
    parser.add_argument("--actors", type=parse_actors, help="only these actors, e.g. 1-6 (default: all)")
    parser.add_argument("--cache", type=Path, default=default_cache_dir(), help="feature cache (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny grids, for tests and smoke runs")
    parser.add_argument(
        "--adaptation",
        choices=("auto", *RECIPES),
        default="auto",
        help="the shipped recipe: 'auto' (default) ships the variant best under protocol (c); 'none' a model "
        "without the voice adapter; 'full' or 'online' one trained on voice-standardised features",
    )
    parser.add_argument(
        "--rooms",
        type=int,
        default=ROOM_COPIES,
        metavar="N",
        help="training copies per clip heard in a random room (noise, babble, reverberation; default: %(default)s, "
        "0: none)",
    )
    parser.add_argument(
        "--members",
        type=int,
        default=SHIPPED_MEMBERS,
        metavar="N",
        help="networks in the shipped model, each from its own random seed, their probabilities averaged "
        "(default: %(default)s; 1: one network)",
    )
    parser.add_argument(
        "--dask",
        metavar="SCHEDULER_ADDRESS",
        help="run the grid searches and repeated-seed evaluations on this Dask cluster, e.g. tcp://host:8786 "
        "(feature extraction stays local; needs the dask extra)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    missing = missing_modules(TRAIN_EXTRA)
    if missing:  # the daemon's install leaves them out
        print(
            f"python -m train: {', '.join(missing)} missing: install the training extra with "
            "`.venv/bin/pip install -e '.[train]'` (scripts/setup --dev does)",
            file=sys.stderr,
        )
        return 2
    args = build_parser().parse_args(argv)
    if args.jobs < 1 or args.repeats < 2 or args.rooms < 0 or args.members < 1:
        print("python -m train: --jobs must be ≥ 1, --repeats ≥ 2, --rooms ≥ 0 and --members ≥ 1", file=sys.stderr)
        return 2
    missing = missing_modules(DASK_EXTRA) if args.dask else []
    if missing:
        print(
            f"python -m train: --dask needs {', '.join(missing)}: install the dask extra with "
            "`.venv/bin/pip install -e '.[dask]'` (scripts/setup --dev does)",
            file=sys.stderr,
        )
        return 2
    try:
        from .pipeline import run

        run(args)
    except UserError as error:
        print(f"python -m train: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
