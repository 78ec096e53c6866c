"""`python -m train.convert OLD.joblib`: a trusted pickle bundle becomes a data-only one with the same predictions."""

from __future__ import annotations

import json
import subprocess
import sys

import joblib
import numpy as np
import pytest

from ser_stream.features import SEED_PARAMS
from ser_stream.model import load_bundle, manifest_path, sha256_of
from testkit.live import REPO, clip_path
from tests.conftest import run_cli
from tests.test_model import LABELS, fitted


def convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "train.convert", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


@pytest.fixture
def pickle_bundle(tmp_path):
    """A bundle as `train` wrote it before: a joblib pickle and a format-1 manifest."""
    model, X = fitted()
    path = tmp_path / "old.joblib"
    joblib.dump(model, path, compress=3)
    manifest = {"format": "ser-stream.model/1", "name": "old", "labels": LABELS, "features": SEED_PARAMS.to_dict()}
    manifest_path(path).write_text(json.dumps({**manifest, "metrics": {"m": 0.5}, "sha256": sha256_of(path)}))
    return path, model, X


def test_a_converted_bundle_predicts_as_the_pickle_did(pickle_bundle, ravdess):
    path, model, X = pickle_bundle
    old_sha = sha256_of(path)
    result = convert(str(path))
    assert result.returncode == 0, result.stderr
    new = path.with_suffix(".npz")
    assert result.stdout.startswith(f"wrote {new} and {manifest_path(new)}")
    bundle = load_bundle(new)
    probe = np.vstack([X, np.random.default_rng(3).normal(0, 20, X.shape)])
    np.testing.assert_allclose(bundle.mlp.predict_proba(probe), model.predict_proba(probe), rtol=0, atol=1e-9)
    assert bundle.labels == LABELS and bundle.manifest["metrics"] == {"m": 0.5}
    assert bundle.manifest["converted_from"] == {"file": "old.joblib", "sha256": old_sha}

    refused = run_cli("classify", str(clip_path(ravdess, 2, 1)), "--model", str(path))
    assert refused.returncode == 3 and len(refused.stderr.splitlines()) == 1
    assert f"or use {new}, which is beside it" in refused.stderr


@pytest.mark.parametrize("damage", ["tamper", "no manifest", "a new bundle", "missing"])
def test_what_cannot_be_converted_is_one_line(pickle_bundle, damage):
    path = pickle_bundle[0]
    if damage == "tamper":
        path.write_bytes(path.read_bytes() + b"\0")
    elif damage == "no manifest":
        manifest_path(path).unlink()
    elif damage == "a new bundle":
        assert convert(str(path)).returncode == 0
        path = path.with_suffix(".npz")
    else:
        path.unlink()
    before = sorted(path.parent.iterdir())
    result = convert(str(path))
    assert result.returncode in (2, 3) and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("python -m train.convert: ") and "Traceback" not in result.stderr
    assert sorted(path.parent.iterdir()) == before
