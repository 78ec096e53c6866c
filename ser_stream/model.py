"""The model bundle: a joblib file and its JSON manifest, verified before unpickling.

A pickle runs code when loaded, so the manifest's SHA-256 of the joblib file is
checked first and a mismatch is refused.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from .errors import ModelError
from .features import FeatureParams
from .mlp import lean_load
from .segmenter import SegmenterConfig

log = logging.getLogger("ser_stream")

#: The manifest format this code reads and writes.
MANIFEST_FORMAT = "ser-stream.model/1"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(joblib_path: Path) -> Path:
    return joblib_path.with_suffix(".json")


@dataclass(frozen=True)
class ModelBundle:
    """A verified, loaded classifier with what it needs to be fed correctly."""

    estimator: Any  # predict_proba and classes_: a LeanMLP, or any scikit-learn classifier
    manifest: dict[str, Any]
    path: Path

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def feature_params(self) -> FeatureParams:
        return FeatureParams.from_dict(self.manifest["features"])

    @property
    def trim(self) -> SegmenterConfig | None:
        """The segmenter settings training cut its clips with (None: whole clips)."""
        return SegmenterConfig(**self.manifest["trim"]) if self.manifest.get("trim") else None

    @property
    def sample_rate(self) -> int:
        return self.feature_params.sample_rate

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def sha256(self) -> str:
        return str(self.manifest["sha256"])

    def predict_proba(self, features: np.ndarray) -> dict[str, float]:
        """Label → probability for one feature vector, in manifest label order."""
        row = np.asarray(features, dtype=np.float64).reshape(1, -1)
        proba = self.estimator.predict_proba(row)[0]
        by_class = dict(zip(self.estimator.classes_, proba, strict=True))
        return {label: float(by_class[label]) for label in self.labels}


def load_bundle(path: str | Path) -> ModelBundle:
    """Load ``NAME.joblib`` after checking it against ``NAME.json``; ModelError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model {path}: no such file (train one with `python -m train`)")
    manifest_file = manifest_path(path)
    try:
        manifest = json.loads(manifest_file.read_text())
    except FileNotFoundError:
        raise ModelError(f"model {path}: manifest {manifest_file.name} is missing beside it") from None
    except (OSError, ValueError) as error:
        raise ModelError(f"model {path}: manifest {manifest_file.name} is unreadable ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelError(f"model {path}: manifest format {found!r} is not {MANIFEST_FORMAT!r}")
    for key in ("name", "labels", "features", "sha256"):
        if key not in manifest:
            raise ModelError(f"model {path}: manifest lacks {key!r}")
    try:
        FeatureParams.from_dict(manifest["features"])
        SegmenterConfig(**manifest.get("trim") or {})
    except (TypeError, ValueError) as error:
        raise ModelError(f"model {path}: manifest feature or trim parameters are invalid ({error})") from None
    actual = sha256_of(path)
    if actual != manifest["sha256"]:
        raise ModelError(
            f"model {path}: SHA-256 {actual[:12]}… does not match the manifest's "
            f"{str(manifest['sha256'])[:12]}…; refusing to load a file that may have been tampered with"
        )
    try:
        estimator = lean_load(path)  # scikit-learn's MLP pipelines: without importing scikit-learn
        if estimator is None:
            estimator = joblib.load(path)
    except Exception as error:  # a verified file that still fails is reported, not raised raw
        raise ModelError(f"model {path}: cannot be loaded ({type(error).__name__}: {error})") from None
    classes = {str(c) for c in getattr(estimator, "classes_", [])}
    if classes != set(manifest["labels"]):
        raise ModelError(
            f"model {path}: classifier labels {sorted(classes)} differ from the manifest's {manifest['labels']}"
        )
    _warn_if_trained_elsewhere(path, manifest)
    return ModelBundle(estimator=estimator, manifest=manifest, path=path)


def _warn_if_trained_elsewhere(path: Path, manifest: dict[str, Any]) -> None:
    """A model is verified (metrics, tests) with the scikit-learn it was trained with; say so when this
    machine has another.  A warning, not a refusal: the MLP's arithmetic has not changed in years."""
    versions = manifest.get("versions")  # not covered by the hash: any JSON may stand here
    trained = str(versions.get("scikit_learn", "")) if isinstance(versions, dict) else ""
    try:
        installed = importlib.metadata.version("scikit-learn")  # the version only: importing it costs 0.6 s
    except importlib.metadata.PackageNotFoundError:
        return
    if trained and trained.split(".")[:2] != installed.split(".")[:2]:
        log.warning(
            "model %s was trained with scikit-learn %s, this machine has %s: its measured accuracy was for %s",
            path,
            trained,
            installed,
            trained,
        )


def save_bundle(estimator: Any, manifest: dict[str, Any], out_dir: str | Path, name: str) -> Path:
    """Write ``out_dir/name.joblib`` and its manifest (with format, name and SHA-256 filled in)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    joblib_path = out_dir / f"{name}.joblib"
    joblib.dump(estimator, joblib_path, compress=3)
    manifest = {"format": MANIFEST_FORMAT, "name": name, **manifest, "sha256": sha256_of(joblib_path)}
    manifest_path(joblib_path).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return joblib_path
