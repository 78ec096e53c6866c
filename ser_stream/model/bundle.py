"""The model bundle: ``NAME.npz`` (arrays only) and its JSON manifest ``NAME.json``: load, verify, save.

Loading a bundle can never run code: the arrays are read with ``allow_pickle=False``, so an object
array (a pickle in disguise) is refused, not unpickled, and a pickle file (``.joblib``) is refused
by name before it is opened. The manifest's SHA-256 of the ``.npz`` detects corruption and
accidental change; it proves nothing about who wrote the pair (whoever can write one file can
rewrite both).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..adapter import AdapterPrior
from ..errors import ModelError
from ..features import FeatureParams
from ..segmenter import SegmenterConfig
from .calibration import Calibration
from .intensity import IntensityHead
from .mlp import MLP, array_names

log = logging.getLogger("ser_stream")

#: The manifest format this code reads and writes (1 was a joblib pickle's manifest).
MANIFEST_FORMAT = "ser-stream.model/2"
#: Where the caller's extra arrays live in the .npz, apart from the network's.
EXTRA_PREFIX = "extra."
#: Files that are pickles: never opened, whatever their manifest says.
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
#: Bounds on what a bundle may make the loader read: a small MLP is a few MB.
MAX_ARRAYS_BYTES = 256 << 20
MAX_MANIFEST_BYTES = 1 << 20
#: Zip entries' timestamp, fixed so the same arrays give the same bytes (and SHA-256).
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: Manifest sections a bundle may carry; absent means the bundle has none.
OPTIONAL_SECTIONS = ("adaptation", "calibration", "abstention", "intensity")
#: The arrays the "adaptation" section needs, stored as extra arrays.
ADAPTATION_ARRAYS = ("adaptation_mean", "adaptation_var")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(npz_path: Path) -> Path:
    return npz_path.with_suffix(".json")


@dataclass(frozen=True)
class ModelBundle:
    """A verified, loaded network with what it needs to be fed correctly."""

    mlp: MLP
    manifest: dict[str, Any]
    path: Path
    extras: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    prior: AdapterPrior | None = field(default=None, repr=False)  # its ``adaptation`` section, if any
    intensity_head: IntensityHead | None = field(default=None, repr=False)  # its ``intensity`` section, if any
    calibration: Calibration = field(default_factory=Calibration, repr=False)  # its ``calibration`` section

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

    def section(self, name: str) -> dict[str, Any] | None:
        """An optional manifest section (`OPTIONAL_SECTIONS`), None when the bundle has none."""
        return self.manifest.get(name)

    def extra(self, name: str) -> np.ndarray | None:
        """An array saved with ``save_bundle(extra_arrays=...)``, None when the bundle has none of that name."""
        return self.extras.get(name)

    @property
    def min_confidence(self) -> float | None:
        """The ``abstention`` section's threshold: a prediction less confident than this is uncertain."""
        abstention = self.section("abstention")
        return None if abstention is None else float(abstention["min_confidence"])

    def predict_proba(self, features: np.ndarray, temperature: float | None = None) -> dict[str, float]:
        """Label → probability for one feature vector (as the network takes it: adapted, if the bundle
        adapts), in manifest label order, calibrated with ``temperature`` (by default the bundle's
        base temperature; `temperature_for` gives the utterance's own)."""
        features = np.asarray(features, dtype=np.float64).reshape(1, -1)
        proba = self.mlp.predict_proba(features, temperature)[0]
        by_class = dict(zip(self.mlp.classes, proba, strict=True))
        return {label: float(by_class[label]) for label in self.labels}

    def temperature_for(self, raw_features: np.ndarray) -> float:
        """The calibration's temperature for one utterance, from its raw features (before any adapter)."""
        return self.calibration.temperature_for(raw_features)

    def intensity(self, features: np.ndarray) -> float | None:
        """The probability that the emotion is expressed strongly, None without an ``intensity`` section."""
        head = self.intensity_head
        return None if head is None else head.probability(self.mlp.standardise(features))


def load_bundle(path: str | Path) -> ModelBundle:
    """Load ``NAME.npz`` after checking it against ``NAME.json``; ModelError (one line) on any problem."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError(_pickle_refusal(path))
    if not path.is_file():
        raise ModelError(f"model {path}: no such file (train one with `python -m train`)")
    if path.suffix.lower() != ".npz":
        raise ModelError(f"model {path}: not a bundle (NAME.npz with NAME.json beside it)")
    manifest = _read_manifest(path)
    actual = sha256_of(path)
    if actual != manifest["sha256"]:
        raise ModelError(
            f"model {path}: SHA-256 {actual[:12]}… does not match the manifest's "
            f"{str(manifest['sha256'])[:12]}…: the file is damaged or was changed after training"
        )
    extras = manifest.get("extra_arrays", [])
    if not isinstance(extras, list) or not all(isinstance(name, str) for name in extras):
        raise ModelError(f"model {path}: manifest's extra_arrays is not a list of names")
    try:
        expected = array_names(manifest["network"]) | {EXTRA_PREFIX + name for name in extras}
    except ValueError as error:
        raise ModelError(f"model {path}: manifest: {error}") from None
    calibration = _calibration(path, manifest)
    arrays = _read_arrays(path)
    for problem, names in (("lacks", expected - set(arrays)), ("holds unnamed", set(arrays) - expected)):
        if names:
            raise ModelError(f"model {path}: {problem} arrays (by its manifest): {', '.join(sorted(names))}")
    try:
        mlp = MLP.from_arrays(arrays, manifest["network"], calibration.temperature)
    except ValueError as error:
        raise ModelError(f"model {path}: {error}") from None
    if set(mlp.classes) != set(manifest["labels"]) or len(manifest["labels"]) != mlp.classes.size:
        raise ModelError(
            f"model {path}: classifier labels {sorted(mlp.classes)} differ from the manifest's {manifest['labels']}"
        )
    n_features = FeatureParams.from_dict(manifest["features"]).n_features
    if mlp.n_features != n_features:
        raise ModelError(
            f"model {path}: the network takes {mlp.n_features} features, the manifest's recipe makes {n_features}"
        )
    extra = {name: arrays[EXTRA_PREFIX + name] for name in extras}
    try:
        prior, head = _prior(manifest, extra, n_features), _intensity_head(manifest, extra, n_features)
        _check_abstention(manifest)
    except ValueError as error:
        raise ModelError(f"model {path}: {error}") from None
    _warn_if_trained_elsewhere(path, manifest)
    return ModelBundle(mlp, manifest, path, extra, prior, head, calibration)


def _prior(manifest: dict[str, Any], extra: Mapping[str, np.ndarray], n_features: int) -> AdapterPrior | None:
    """The adaptation prior of the ``adaptation`` section and its arrays; ValueError if they do not make one."""
    section = manifest.get("adaptation")
    if section is None:
        return None
    missing = [name for name in ADAPTATION_ARRAYS if name not in extra]
    if missing:
        raise ValueError(f"its adaptation section needs the arrays {', '.join(missing)}")
    mean, var = (extra[name] for name in ADAPTATION_ARRAYS)
    if mean.dtype.kind != "f" or var.dtype.kind != "f":
        raise ValueError("its adaptation arrays are not floating-point numbers")
    prior = AdapterPrior.from_section(section, mean, var)
    if prior.n_features != n_features:
        raise ValueError(f"its adaptation prior has {prior.n_features} features, the network takes {n_features}")
    return prior


def _intensity_head(manifest: dict[str, Any], extra: Mapping[str, np.ndarray], n_features: int) -> IntensityHead | None:
    section = manifest.get("intensity")
    return None if section is None else IntensityHead.from_section(section, extra, n_features)


def _check_abstention(manifest: dict[str, Any]) -> None:
    """An ``abstention`` section's threshold is a probability; ValueError otherwise."""
    section = manifest.get("abstention")
    if section is None:
        return
    threshold = section.get("min_confidence")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ValueError(f"its abstention min_confidence must be a number from 0 to 1, got {threshold!r}")


def _pickle_refusal(path: Path) -> str:
    """Why a pickle path is refused, and what to use instead: the .npz beside it, or a conversion."""
    beside = path.with_suffix(".npz")
    instead = f"; or use {beside}, which is beside it" if beside.is_file() else ""
    if not path.exists():
        return f"model {path}: no such file (bundles are NAME.npz now; pickles are not read){instead}"
    return (
        f"model {path}: a pickle, which can run any code when loaded, so ser-stream does not read it; "
        f"if you trust the file, convert it once with `python -m train.convert {path}` "
        f"(writes {beside.name} and its manifest){instead}"
    )


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest beside ``path``, with its required keys and consistent parameters; ModelError otherwise."""
    manifest_file = manifest_path(path)
    if not manifest_file.is_file():
        raise ModelError(f"model {path}: manifest {manifest_file.name} is missing beside it")
    try:
        if manifest_file.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"larger than {MAX_MANIFEST_BYTES >> 20} MB")
        manifest = json.loads(manifest_file.read_bytes())
    except (OSError, ValueError, RecursionError) as error:
        raise ModelError(f"model {path}: manifest {manifest_file.name} is unreadable ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelError(f"model {path}: manifest format {found!r} is not {MANIFEST_FORMAT!r}")
    for key in ("name", "labels", "features", "network", "sha256"):
        if key not in manifest:
            raise ModelError(f"model {path}: manifest lacks {key!r}")
    if not isinstance(manifest["labels"], list) or not all(isinstance(label, str) for label in manifest["labels"]):
        raise ModelError(f"model {path}: manifest's labels are not a list of names")
    try:
        features = FeatureParams.from_dict(manifest["features"])
        if features.n_features < 1:  # also where a parameter of the wrong type fails
            raise ValueError("no features")
        trim = SegmenterConfig(**manifest["trim"]) if manifest.get("trim") else None
    except (TypeError, ValueError) as error:
        raise ModelError(f"model {path}: manifest feature or trim parameters are invalid ({error})") from None
    rates = {"sample_rate": manifest.get("sample_rate"), "features.sample_rate": features.sample_rate}
    if trim is not None:
        rates["trim.sample_rate"] = trim.sample_rate
    given = {key: rate for key, rate in rates.items() if rate is not None}
    if len(set(given.values())) > 1:
        listed = ", ".join(f"{key} {rate}" for key, rate in given.items())
        raise ModelError(f"model {path}: manifest's sample rates disagree ({listed})")
    for section in OPTIONAL_SECTIONS:
        if manifest.get(section) is not None and not isinstance(manifest[section], dict):
            raise ModelError(f"model {path}: manifest's {section} section is not an object")
    return manifest


def _calibration(path: Path, manifest: dict[str, Any]) -> Calibration:
    """The ``calibration`` section (T = 1 without one). Another method, or covariates that do not fit
    the features, are refused: serving them would mis-state confidence."""
    section = manifest.get("calibration")
    if section is None:
        return Calibration()
    try:
        return Calibration.from_section(section, FeatureParams.from_dict(manifest["features"]))
    except ValueError as error:
        raise ModelError(f"model {path}: {error}") from None


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz, never unpickling; ModelError naming what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            size = sum(info.file_size for info in npz.zip.infolist())
            if size > MAX_ARRAYS_BYTES:
                raise ValueError(f"its arrays would take {size >> 20} MB, more than {MAX_ARRAYS_BYTES >> 20} MB")
            return {name: npz[name] for name in npz.files}
    except ValueError as error:
        reason = str(error)
        if "allow_pickle" in reason:  # numpy's words for an object array, or a file that is no .npz or .npy
            reason = "an object array or not an .npz: either would need unpickling, which is never done"
        raise ModelError(f"model {path}: unreadable arrays ({reason})") from None
    except (OSError, EOFError, MemoryError, zipfile.BadZipFile) as error:
        raise ModelError(f"model {path}: unreadable arrays ({type(error).__name__}: {error})") from None


def _warn_if_trained_elsewhere(path: Path, manifest: dict[str, Any]) -> None:
    """A model is verified (metrics, tests) with the scikit-learn it was trained with; say so when this
    machine has another.  A warning, not a refusal: the MLP's arithmetic has not changed in years."""
    versions = manifest.get("versions")  # any JSON may stand here
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


def trim_differences(bundle: ModelBundle, segmenter: SegmenterConfig) -> list[str]:
    """The live VAD settings that differ from those the model's training clips were cut with, as
    ``"hangover_ms 800 (trained with 500)"``; empty when they agree or the bundle was not trimmed.
    The sample rate is left out: the live VAD runs at the capture rate, which may differ."""
    trim = bundle.trim
    if trim is None:
        return []
    return [
        f"{f.name} {getattr(segmenter, f.name)} (trained with {getattr(trim, f.name)})"
        for f in dataclasses.fields(SegmenterConfig)
        if f.name != "sample_rate" and getattr(segmenter, f.name) != getattr(trim, f.name)
    ]


def save_bundle(
    estimator: Any,
    manifest: dict[str, Any],
    out_dir: str | Path,
    name: str,
    extra_arrays: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write ``out_dir/name.npz`` and ``name.json``; returns the .npz path.

    ``estimator`` is a fitted scikit-learn ``Pipeline([StandardScaler, MLPClassifier])`` (or a bare
    MLPClassifier); its arrays are stored, not the object. ``extra_arrays`` are stored beside them and
    read back with `ModelBundle.extra`. The manifest gets its format, name, network structure,
    extra array names and the .npz's SHA-256. The same inputs give the same bytes.
    """
    mlp = MLP.from_estimator(estimator)
    extras = {key: np.asarray(value) for key, value in (extra_arrays or {}).items()}
    arrays = {**mlp.arrays(), **{EXTRA_PREFIX + key: value for key, value in extras.items()}}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    npz_path = out_dir / f"{name}.npz"
    staging = npz_path.with_suffix(".npz.tmp")
    try:
        _write_npz(staging, arrays)
    except BaseException:  # an object array: nothing half-written is left behind
        staging.unlink(missing_ok=True)
        raise
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        **manifest,
        "network": mlp.structure(),
        "extra_arrays": sorted(extras),
        "sha256": sha256_of(staging),
    }
    manifest_staging = manifest_path(npz_path).with_suffix(".json.tmp")
    manifest_staging.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(staging, npz_path)  # a daemon reloading meanwhile sees a mismatch and keeps its model
    os.replace(manifest_staging, manifest_path(npz_path))
    return npz_path


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """What ``np.savez`` writes, with the entries' order and date fixed here rather than left to numpy's
    internals (the same arrays, the same bytes), and an object array refused rather than pickled."""
    with zipfile.ZipFile(path, "w") as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_EPOCH), buffer.getvalue())
