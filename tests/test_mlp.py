"""The numpy forward pass gives scikit-learn's own probabilities (1e-9), without scikit-learn."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ser_stream.model import MLP, load_bundle, save_bundle
from testkit.live import REPO
from train.calibration import apply_temperature
from train.experiments import SeedEnsemble, quiet_training

#: Modules the serving path must not import: the reason it is fast to start, small, and runs no pickle.
HEAVY = ("sklearn", "scipy", "librosa", "numba", "llvmlite", "joblib")


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


@pytest.mark.parametrize(
    "model,n_classes",
    [
        (make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=60, random_state=0)), 4),
        (make_pipeline(StandardScaler(with_mean=False), MLPClassifier((8, 6), "tanh", max_iter=60, random_state=1)), 3),
        (MLPClassifier((10,), "logistic", max_iter=60, random_state=2), 2),  # binary: one logistic output
        (make_pipeline(StandardScaler(), MLPClassifier((5,), "identity", max_iter=60, random_state=3)), 2),
        (make_pipeline(StandardScaler(), SeedEnsemble(MLPClassifier((16, 8), max_iter=60, random_state=4), 3)), 4),
        (SeedEnsemble(MLPClassifier((6,), "logistic", max_iter=60, random_state=5), 2), 2),  # binary, unscaled
    ],
)
def test_mlp_pipelines_equal_scikit_learn(tmp_path, model, n_classes):
    X, y = toy_data(n_classes)
    model, path = fit_and_save(model, X, y, tmp_path)
    mlp = load_bundle(path).mlp
    probe = np.vstack([X, np.random.default_rng(9).normal(0, 20, (30, X.shape[1]))])
    np.testing.assert_allclose(mlp.predict_proba(probe), model.predict_proba(probe), rtol=0, atol=1e-9)
    assert list(mlp.classes) == list(model.classes_)


@pytest.mark.parametrize("n_classes", [4, 2])  # softmax outputs, and the binary logistic one
def test_several_networks_average_their_probabilities_then_calibrate_them(tmp_path, n_classes):
    X, y = toy_data(n_classes)
    model = make_pipeline(StandardScaler(), SeedEnsemble(MLPClassifier((12,), max_iter=40, random_state=7), 3))
    model, path = fit_and_save(model, X, y, tmp_path)
    members = model[-1].estimators_
    assert [m.random_state for m in members] == [7, 8, 9]  # each network from its own seed
    scaled = model[0].transform(X)
    each = [m.predict_proba(scaled) for m in members]
    assert not np.allclose(each[0], each[1])  # networks that differ, averaged
    np.testing.assert_allclose(model.predict_proba(X), np.mean(each, axis=0), rtol=0, atol=1e-12)

    bundle = load_bundle(path)
    assert bundle.mlp.members == bundle.manifest["network"]["members"] == 3
    assert bundle.mlp.coefs[0].shape == (3, X.shape[1], 12)
    with np.load(path) as arrays:  # stacked in the file: one network each on the first axis
        assert arrays["coef_1"].shape == (3, 12, 1 if n_classes == 2 else n_classes)
    calibrated = MLP(**{**bundle.mlp.__dict__, "temperature": 1.7}).predict_proba(X)
    np.testing.assert_allclose(calibrated, apply_temperature(model.predict_proba(X), 1.7), rtol=0, atol=1e-9)


def test_one_network_is_stored_as_scikit_learn_holds_it(tmp_path):
    X, y = toy_data(3)
    _, path = fit_and_save(make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=20)), X, y, tmp_path)
    bundle = load_bundle(path)
    assert bundle.mlp.members == 1 and "members" not in bundle.manifest["network"]
    with np.load(path) as arrays:  # the format bundles had before several networks: they load as they were
        assert arrays["coef_0"].shape == (X.shape[1], 8) and arrays["intercept_0"].shape == (8,)


@pytest.mark.parametrize(
    "model",
    [
        make_pipeline(StandardScaler(), LogisticRegression()),
        make_pipeline(StandardScaler(), StandardScaler(), MLPClassifier((4,), max_iter=20)),
        make_pipeline(StandardScaler(), SeedEnsemble(LogisticRegression(random_state=0), 2)),
    ],
)
def test_only_a_scaled_mlp_is_saved(tmp_path, model):
    X, y = toy_data(3)
    with pytest.raises(TypeError, match="a bundle holds a StandardScaler and an MLPClassifier, not"):
        fit_and_save(model, X, y, tmp_path)
    assert not list(tmp_path.iterdir())


def test_serving_imports_none_of_the_heavy_libraries():
    code = (
        "import sys\n"
        "import ser_stream.cli, ser_stream.service, ser_stream.pipeline, ser_stream.capture\n"
        "from ser_stream.model import Classifier, default_model_path, load_bundle\n"
        "Classifier(load_bundle(default_model_path())).warm_up()\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []
