"""Bundles are served without scikit-learn, with scikit-learn's own probabilities (1e-9)."""

from __future__ import annotations

import subprocess
import sys

import joblib
import numpy as np
import pytest
import soundfile
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ser_stream.features import extract_features
from ser_stream.mlp import LeanMLP, lean_load
from ser_stream.model import load_bundle, save_bundle
from testkit.live import REPO, clip_path
from tests.conftest import SHIPPED_MODEL
from train.experiments import quiet_training

#: Modules the serving path must not import: the reason it is fast to start and small.
HEAVY = ("sklearn", "scipy", "librosa", "numba", "llvmlite")


def toy_data(n_classes: int, n_features: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.array(["calm", "happy", "fearful", "disgust"][:n_classes])
    y = np.repeat(labels, 15)
    X = rng.normal(5.0, 3.0, (y.size, n_features)) + 4 * np.repeat(np.eye(n_classes, n_features), 15, axis=0)
    return X, y


def fit_and_save(model, X, y, tmp_path):
    with quiet_training():
        model.fit(X, y)
    features = {"n_mfcc": 4, "n_chroma": 4, "n_mels": 4}  # 12 values; only the loader reads them here
    return model, save_bundle(model, {"labels": sorted(set(y)), "features": features}, tmp_path, "toy")


def test_shipped_model_equals_scikit_learn_on_ravdess(ravdess):
    bundle = load_bundle(SHIPPED_MODEL)
    assert isinstance(bundle.estimator, LeanMLP)
    reference = joblib.load(SHIPPED_MODEL)
    clips = [clip_path(ravdess, code, actor) for code in (2, 3, 6, 7) for actor in (1, 8, 15, 20)]
    rows = [extract_features(soundfile.read(c, dtype="float32")[0], 16000, bundle.feature_params) for c in clips]
    X = np.vstack([rows, np.random.default_rng(0).normal(0, 30, (20, len(rows[0])))])
    assert list(bundle.estimator.classes_) == list(reference.classes_)
    np.testing.assert_allclose(bundle.estimator.predict_proba(X), reference.predict_proba(X), rtol=0, atol=1e-9)
    for row, expected in zip(rows, reference.predict_proba(np.vstack(rows)), strict=True):
        by_class = dict(zip(reference.classes_, expected, strict=True))
        assert bundle.predict_proba(row) == pytest.approx({k: by_class[k] for k in bundle.labels}, abs=1e-9)


@pytest.mark.parametrize(
    "model,n_classes",
    [
        (make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=60, random_state=0)), 4),
        (make_pipeline(StandardScaler(with_mean=False), MLPClassifier((8, 6), "tanh", max_iter=60, random_state=1)), 3),
        (MLPClassifier((10,), "logistic", max_iter=60, random_state=2), 2),  # binary: one logistic output
        (make_pipeline(StandardScaler(), MLPClassifier((5,), "identity", max_iter=60, random_state=3)), 2),
    ],
)
def test_mlp_pipelines_equal_scikit_learn(tmp_path, model, n_classes):
    X, y = toy_data(n_classes)
    model, path = fit_and_save(model, X, y, tmp_path)
    lean = lean_load(path)
    assert isinstance(lean, LeanMLP)
    probe = np.vstack([X, np.random.default_rng(9).normal(0, 20, (30, X.shape[1]))])
    np.testing.assert_allclose(lean.predict_proba(probe), model.predict_proba(probe), rtol=0, atol=1e-9)
    assert list(lean.classes_) == list(model.classes_)


def test_other_estimators_are_loaded_by_scikit_learn(tmp_path):
    X, y = toy_data(3)
    model, path = fit_and_save(make_pipeline(StandardScaler(), LogisticRegression()), X, y, tmp_path)
    assert lean_load(path) is None
    bundle = load_bundle(path)
    expected = dict(zip(model.classes_, model.predict_proba(X[:1])[0], strict=True))
    assert bundle.predict_proba(X[0]) == pytest.approx(expected, abs=1e-12)


def test_serving_imports_none_of_the_heavy_libraries():
    code = (
        "import sys\n"
        "import ser_stream.cli, ser_stream.service, ser_stream.daemon, ser_stream.capture\n"
        "from ser_stream.classifier import Classifier\n"
        "from ser_stream.model import load_bundle\n"
        "from ser_stream.settings import default_model_path\n"
        "Classifier(load_bundle(default_model_path())).warm_up()\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []
