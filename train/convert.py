"""`python -m train.convert OLD.joblib`: an earlier pickle bundle as a data-only bundle.

Unpickling runs whatever the file says, which is why serving never reads a pickle. Run this once,
on a file you trust (one `python -m train` wrote): it checks the file against its manifest (which
catches corruption, not a hostile file), unpickles it with joblib, writes ``OLD.npz`` and a new
``OLD.json`` in its place, and checks that the new bundle's probabilities equal the pickle's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import joblib
import numpy as np

from ser_stream.errors import ArgumentParser, ModelError, UserError
from ser_stream.model import load_bundle, manifest_path, save_bundle, sha256_of

#: The manifest format of the pickle bundles this converts.
PICKLE_FORMAT = "ser-stream.model/1"
#: Manifest keys the new bundle's writer fills in itself.
REWRITTEN = ("format", "name", "sha256")


def convert(old: Path, out_dir: Path) -> Path:
    """Write ``out_dir/OLD.npz`` and its manifest from the verified pickle bundle ``old``; the .npz path."""
    try:
        manifest = json.loads(manifest_path(old).read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"{old}: its manifest {manifest_path(old).name} is unreadable ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PICKLE_FORMAT:
        raise ModelError(f"{old}: manifest {manifest_path(old).name} is not a pickle bundle's ({PICKLE_FORMAT})")
    digest = sha256_of(old)
    if digest != manifest.get("sha256"):
        raise ModelError(f"{old}: SHA-256 {digest[:12]}… does not match its manifest's: damaged or changed")
    try:
        estimator = joblib.load(old)
        fields = {key: value for key, value in manifest.items() if key not in REWRITTEN}
        new = save_bundle(
            estimator, {**fields, "converted_from": {"file": old.name, "sha256": digest}}, out_dir, old.stem
        )
    except Exception as error:  # a verified file that still fails is reported, not raised raw
        raise ModelError(f"{old}: cannot be converted ({type(error).__name__}: {error})") from None
    probe = np.random.default_rng(0).normal(0.0, 3.0, (64, estimator.n_features_in_))
    if not np.allclose(load_bundle(new).mlp.predict_proba(probe), estimator.predict_proba(probe), rtol=0, atol=1e-9):
        raise ModelError(f"{old}: the converted bundle {new} does not predict as the pickle does")
    return new


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m train.convert", description=__doc__.split("\n")[0])
    parser.add_argument(
        "bundle", type=Path, metavar="OLD.joblib", help="a pickle bundle you trust, its .json beside it"
    )
    parser.add_argument("--out", type=Path, metavar="DIR", help="where NAME.npz and NAME.json go (default: beside it)")
    args = parser.parse_args(argv)
    if not args.bundle.is_file():
        print(f"python -m train.convert: {args.bundle}: no such file", file=sys.stderr)
        return 2
    try:
        new = convert(args.bundle, args.out or args.bundle.parent)
    except UserError as error:
        print(f"python -m train.convert: {error}", file=sys.stderr)
        return error.exit_code
    print(f"wrote {new} and {manifest_path(new)}; serve {new}, not {args.bundle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
