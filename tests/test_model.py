"""Model bundles are verified (SHA-256) before unpickling; every defect is a clear ModelError."""

from __future__ import annotations

import importlib.metadata
import json
import logging

import joblib
import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ser_stream.errors import ModelError
from ser_stream.features import SEED_PARAMS
from ser_stream.model import MANIFEST_FORMAT, load_bundle, save_bundle, sha256_of
from tests.conftest import SHIPPED_MODEL
from train.experiments import quiet_training

LABELS = ["calm", "happy", "fearful"]


@pytest.fixture
def bundle_path(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(LABELS, 20)
    X = rng.standard_normal((60, SEED_PARAMS.n_features)) + 3 * np.repeat(np.eye(3, SEED_PARAMS.n_features), 20, axis=0)
    with quiet_training():
        model = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=50, random_state=0)).fit(X, y)
    return save_bundle(model, {"labels": LABELS, "features": SEED_PARAMS.to_dict()}, tmp_path, "tiny")


def test_round_trip(bundle_path):
    bundle = load_bundle(bundle_path)
    assert bundle.name == "tiny" and bundle.labels == LABELS
    assert bundle.sha256 == sha256_of(bundle_path)
    assert bundle.feature_params == SEED_PARAMS
    proba = bundle.predict_proba(np.zeros(SEED_PARAMS.n_features))
    assert list(proba) == LABELS and abs(sum(proba.values()) - 1) < 1e-9
    manifest = json.loads(bundle_path.with_suffix(".json").read_text())
    assert manifest["format"] == MANIFEST_FORMAT


def test_tampered_joblib_is_refused_before_unpickling(bundle_path, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    joblib.dump(Evil(), bundle_path)
    with pytest.raises(ModelError, match="does not match the manifest"):
        load_bundle(bundle_path)
    assert not marker.exists()


def test_one_flipped_byte_is_refused(bundle_path):
    data = bytearray(bundle_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bundle_path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        load_bundle(bundle_path)


def edit_manifest(bundle_path, **changes):
    path = bundle_path.with_suffix(".json")
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    for key, value in changes.items():
        if value is None:
            del manifest[key]
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"format": "ser-stream.model/99"}, "is not 'ser-stream.model/1'"),
        ({"labels": ["calm", "happy", "angry"]}, "differ from the manifest"),
        ({"features": {"n_mfcc": "forty", "statistics": ["median"]}}, "feature or trim parameters are invalid"),
        ({"sha256": None}, "lacks 'sha256'"),
    ],
)
def test_bad_manifests(bundle_path, changes, message):
    edit_manifest(bundle_path, **changes)
    with pytest.raises(ModelError, match=message):
        load_bundle(bundle_path)


def test_missing_files(bundle_path, tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        load_bundle(tmp_path / "nope.joblib")
    bundle_path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        load_bundle(bundle_path)
    bundle_path.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match=r"manifest tiny\.json is missing"):
        load_bundle(bundle_path)


def test_shipped_bundle_is_complete():
    bundle = load_bundle(SHIPPED_MODEL)
    manifest = bundle.manifest
    assert bundle.labels == ["calm", "happy", "fearful", "disgust"]
    assert bundle.sample_rate == 16000
    assert manifest["training_data"]["licence"] == "CC BY-NC-SA 4.0"
    assert len(manifest["training_data"]["fingerprint_sha256"]) == 64
    assert {"scikit_learn", "librosa"} <= set(manifest["versions"])
    for row in ("dummy (stratified)", "DataFlair MLP", "article's tuned MLP (logistic, (250, 150))"):
        assert set(manifest["metrics"][row]) == {"split", "actor"}
    shipped = next(m for name, m in manifest["metrics"].items() if name.startswith("shipped"))
    assert shipped["split"]["mean"] > manifest["metrics"]["DataFlair MLP"]["split"]["mean"]
    assert shipped["actor"]["mean"] > manifest["metrics"]["DataFlair MLP"]["actor"]["mean"]
    assert "CC BY-NC-SA 4.0" in (SHIPPED_MODEL.parent / "README.md").read_text()


def test_truncated_joblib_is_refused(bundle_path):
    data = bundle_path.read_bytes()
    bundle_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="SHA-256"):
        load_bundle(bundle_path)


def test_a_model_trained_with_another_scikit_learn_loads_with_a_warning(bundle_path, caplog):
    installed = importlib.metadata.version("scikit-learn")
    manifest = json.loads(bundle_path.with_suffix(".json").read_text())
    edit_manifest(bundle_path, versions={**manifest.get("versions", {}), "scikit_learn": "0.24.2"})
    with caplog.at_level(logging.WARNING, logger="ser_stream"):
        load_bundle(bundle_path)
    assert [r.getMessage() for r in caplog.records] == [
        f"model {bundle_path} was trained with scikit-learn 0.24.2, this machine has {installed}: "
        "its measured accuracy was for 0.24.2"
    ]
    caplog.clear()
    edit_manifest(bundle_path, versions={**manifest.get("versions", {}), "scikit_learn": installed})
    load_bundle(bundle_path)
    assert caplog.records == []
    for versions in (None, "1.5", []):  # the manifest is not hashed: any JSON may stand there
        edit_manifest(bundle_path, versions=versions)
        load_bundle(bundle_path)
    assert caplog.records == []
