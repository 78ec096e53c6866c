"""A voice adapter's state on disk: one small ``.npz``, replaced atomically, read without unpickling.

The file records which model (the bundle's SHA-256) and how many features its statistics are for,
so statistics of another model or feature recipe are refused rather than misapplied.  A save
writes a temporary file beside the state file, flushes it to the disk, then renames it over the
old one: a process killed at any moment leaves either the old file or the new one, whole.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from .adapter import AdapterPrior, VoiceAdapter
from .files import read_bounded

#: The state file's name in the state directory.
STATE_FILE = "adaptation.npz"
#: What the file says it is, so that another ``.npz`` put there is not taken for one.
STATE_FORMAT = "ser-stream.adaptation/1"
#: A state file is a few kB (two vectors of the model's features): anything this big is not one.
MAX_STATE_BYTES = 1 << 20


class StateRefused(ValueError):
    """A state file that cannot be used: the reason, in words."""


def save_state(path: Path, adapter: VoiceAdapter, model_sha256: str) -> None:
    """Write ``adapter``'s state to ``path`` atomically (temporary file, fsync, rename, fsync of the folder);
    OSError if it cannot, with the previous file, if any, left as it was."""
    state = adapter.state()
    arrays = {
        "format": np.array(STATE_FORMAT),
        "model_sha256": np.array(model_sha256),
        "n_features": np.array(adapter.prior.n_features),
        "heard": np.array(state["heard"]),
        "weight": np.array(state["weight"], dtype=np.float64),
        "mean": np.asarray(state["mean"], dtype=np.float64),
        "sq_dev": np.asarray(state["sq_dev"], dtype=np.float64),
    }
    staging = path.with_name(path.name + ".tmp")
    try:
        with open(staging, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)


def load_state(path: Path, prior: AdapterPrior, model_sha256: str) -> VoiceAdapter:
    """The adapter ``path`` holds for this model; StateRefused saying why it cannot be used (absent,
    unreadable, corrupt or truncated, another model's, another feature count, impossible numbers)."""
    try:
        data = read_bounded(path, MAX_STATE_BYTES, what="a state file")
    except ValueError as error:
        raise StateRefused(str(error)) from None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise StateRefused(f"unreadable ({type(error).__name__}: {error})") from None
    try:
        if str(arrays["format"]) != STATE_FORMAT:
            raise StateRefused(f"not a state file of this version ({str(arrays['format'])[:40]!r})")
        if str(arrays["model_sha256"]) != model_sha256:
            raise StateRefused(f"made for another model (SHA-256 {str(arrays['model_sha256'])[:12]}…)")
        if int(arrays["n_features"]) != prior.n_features:
            raise StateRefused(f"made for {int(arrays['n_features'])} features, the model has {prior.n_features}")
        state = {name: arrays[name] for name in ("heard", "weight", "mean", "sq_dev")}
        return VoiceAdapter.from_state(prior, state)
    except StateRefused:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise StateRefused(f"corrupt ({type(error).__name__}: {error})") from None
