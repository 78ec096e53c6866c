"""The model: a data-only bundle (``bundle``), the MLP's forward pass in numpy (``mlp``), and the
``Classifier`` that takes an utterance at any sample rate (``classifier``).

Importing this package costs nothing (no numpy): settings take `default_model_path` from here,
and the names below load their submodule on first use, so ``from ser_stream.model import
load_bundle`` works as it reads.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bundle import (
        MANIFEST_FORMAT,
        ModelBundle,
        load_bundle,
        manifest_path,
        save_bundle,
        sha256_of,
        trim_differences,
    )
    from .classifier import Classifier, NotClassifiable, Prediction, classify_files, single_threaded_blas
    from .mlp import MLP

#: The shipped bundle, in the repository's ``models/`` folder.
DEFAULT_MODEL = Path(__file__).resolve().parent.parent.parent / "models" / "ser-mlp.npz"

_SUBMODULE = {
    "MANIFEST_FORMAT": "bundle",
    "ModelBundle": "bundle",
    "load_bundle": "bundle",
    "manifest_path": "bundle",
    "save_bundle": "bundle",
    "sha256_of": "bundle",
    "trim_differences": "bundle",
    "Classifier": "classifier",
    "NotClassifiable": "classifier",
    "Prediction": "classifier",
    "classify_files": "classifier",
    "single_threaded_blas": "classifier",
    "MLP": "mlp",
}
__all__ = [  # noqa: RUF022 - in the order above
    "DEFAULT_MODEL",
    "default_model_path",
    "MANIFEST_FORMAT",
    "ModelBundle",
    "load_bundle",
    "manifest_path",
    "save_bundle",
    "sha256_of",
    "trim_differences",
    "Classifier",
    "NotClassifiable",
    "Prediction",
    "classify_files",
    "single_threaded_blas",
    "MLP",
]


def default_model_path() -> Path:
    """``$SER_STREAM_MODEL`` if set, else the shipped bundle."""
    return Path(os.environ.get("SER_STREAM_MODEL", DEFAULT_MODEL))


def __getattr__(name: str) -> Any:
    if name not in _SUBMODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_SUBMODULE[name]}", __name__), name)
