"""Model bundles: arrays and a manifest, never a pickle; every defect is one clear ModelError line."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import subprocess
import sys
import time
import zipfile

import joblib
import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ser_stream.audio import load_audio
from ser_stream.errors import ModelError
from ser_stream.features import SEED_PARAMS, FeatureParams
from ser_stream.model import (
    MANIFEST_FORMAT,
    Classifier,
    load_bundle,
    manifest_path,
    save_bundle,
    sha256_of,
    trim_differences,
)
from ser_stream.model import bundle as bundle_module
from ser_stream.segmenter import SegmenterConfig
from ser_stream.voice import VOICE_STATISTICS
from testkit.live import REPO, clip_path, free_endpoint
from tests.conftest import SHIPPED_MODEL, run_cli
from train.experiments import SHIPPED_MEMBERS, quiet_training
from train.pipeline import shipped_row
from train.ravdess import EMOTIONS
from train.rooms import babble, mix_at_snr

#: A calibration section's covariates: T doubles per standard deviation the harmonics-to-noise ratio falls.
COVARIATES = {"features": ["hnr_mean_db"], "mean": [10.0], "scale": [4.0], "weights": [-0.69]}
LABELS = ["calm", "happy", "fearful"]


def fitted(labels=LABELS, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(labels, 20)
    n = len(labels)
    X = rng.standard_normal((20 * n, SEED_PARAMS.n_features)) + 3 * np.repeat(np.eye(n, SEED_PARAMS.n_features), 20, 0)
    with quiet_training():
        return make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=50, random_state=0)).fit(X, y), X


def save(model, tmp_path, labels=LABELS, name="tiny", **manifest):
    return save_bundle(model, {"labels": labels, "features": SEED_PARAMS.to_dict(), **manifest}, tmp_path, name)


@pytest.fixture
def model():
    return fitted()[0]


@pytest.fixture
def bundle_path(model, tmp_path):
    return save(model, tmp_path)


def edit_manifest(bundle_path, **changes):
    path = manifest_path(bundle_path)
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    for key, value in changes.items():
        if value is None:
            del manifest[key]
    path.write_text(json.dumps(manifest))


def rewrite_arrays(bundle_path, change, **arrays_kwargs):
    """The bundle's arrays changed by ``change(dict)`` and written back, re-hashed into the manifest as
    anyone who can write the folder can: what the hash cannot stop, the format must."""
    with np.load(bundle_path) as npz:
        arrays = dict(npz)
    change(arrays)
    np.savez(bundle_path, **arrays, **arrays_kwargs)
    edit_manifest(bundle_path, sha256=sha256_of(bundle_path))


def refusal(bundle_path) -> str:
    with pytest.raises(ModelError) as caught:
        load_bundle(bundle_path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"model {bundle_path}: ")
    return message


class RunsACommand:
    """A pickle payload: unpickling it runs ``touch MARKER``."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


def test_round_trip(bundle_path, model):
    bundle = load_bundle(bundle_path)
    assert bundle.name == "tiny" and bundle.labels == LABELS
    assert bundle.sha256 == sha256_of(bundle_path)
    assert bundle.feature_params == SEED_PARAMS
    X = np.random.default_rng(1).normal(0, 2, (5, SEED_PARAMS.n_features))
    for row, expected in zip(X, model.predict_proba(X), strict=True):
        assert bundle.predict_proba(row) == pytest.approx(dict(zip(model.classes_, expected, strict=True)), abs=1e-12)
    manifest = json.loads(manifest_path(bundle_path).read_text())
    assert manifest["format"] == MANIFEST_FORMAT
    assert manifest["network"] == {"activation": "relu", "out_activation": "softmax", "layers": 2}
    assert manifest["extra_arrays"] == []
    assert all(bundle.section(name) is None for name in ("adaptation", "calibration", "abstention", "intensity"))
    with np.load(bundle_path, allow_pickle=False) as npz:
        assert npz["labels"].dtype.kind == "U" and all(npz[name].dtype.kind != "O" for name in npz.files)


def test_the_same_model_gives_the_same_bytes_whenever_it_is_saved(model, tmp_path, monkeypatch):
    first = save(model, tmp_path / "one")
    later = time.time() + 400 * 86400
    monkeypatch.setattr(time, "time", lambda: later)  # zip entries would carry this date
    second = save(model, tmp_path / "two")
    assert first.read_bytes() == second.read_bytes()
    assert manifest_path(first).read_text() == manifest_path(second).read_text()
    assert not list((tmp_path / "one").glob("*.tmp"))


def test_extra_arrays_and_optional_sections_round_trip(model, tmp_path):
    n = SEED_PARAMS.n_features
    extras = {
        "adaptation_mean": np.arange(float(n)),
        "adaptation_var": np.ones(n),
        "intensity_coef": np.linspace(-1, 1, n),
        "intensity_intercept": np.array([0.5]),
        "anything": np.eye(2),
    }
    sections = {
        "adaptation": {"prior_weight": 20, "horizon": 100, "var_floor": 0.05},
        "abstention": {"min_confidence": 0.55, "share": 0.25},
        "intensity": {"method": "logistic", "classes": ["normal", "strong"]},
    }
    path = save_bundle(
        model, {"labels": LABELS, "features": SEED_PARAMS.to_dict(), **sections}, tmp_path, "extra", extras
    )
    bundle = load_bundle(path)
    for name, array in extras.items():
        np.testing.assert_array_equal(bundle.extra(name), array)
    assert bundle.extra("nothing") is None
    assert bundle.manifest["extra_arrays"] == sorted(extras)
    for name, section in sections.items():
        assert bundle.section(name) == section
    assert bundle.section("calibration") is None


def test_an_object_array_is_never_saved(model, tmp_path):
    with pytest.raises(ValueError, match="Object arrays cannot be saved"):
        save_bundle(model, {"labels": LABELS}, tmp_path, "x", {"objects": np.array([{}], dtype=object)})
    assert list(tmp_path.iterdir()) == []


def test_adaptation_needs_its_arrays(model, tmp_path):
    path = save_bundle(
        model,
        {"labels": LABELS, "features": SEED_PARAMS.to_dict(), "adaptation": {}},
        tmp_path,
        "adapted",
        {"adaptation_mean": np.zeros(3)},
    )
    assert "adaptation section needs the arrays adaptation_var" in refusal(path)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("labels", [LABELS, ["calm", "happy"]])  # softmax, and the binary logistic output
def test_a_calibration_temperature_divides_the_logits(tmp_path, labels):
    model, X = fitted(labels)
    raw = model.predict_proba(X)
    path = save(model, tmp_path, labels, calibration={"method": "temperature", "temperature": 1.7})
    calibrated = load_bundle(path).mlp.predict_proba(X)
    if len(labels) == 2:  # the logit of p is the output unit's input
        logit = np.log(raw[:, 1] / raw[:, 0])
        expected = np.column_stack([1 - 1 / (1 + np.exp(-logit / 1.7)), 1 / (1 + np.exp(-logit / 1.7))])
    else:  # log p is the logits up to a constant per row, which softmax ignores
        expected = softmax(np.log(raw) / 1.7)
    np.testing.assert_allclose(calibrated, expected, rtol=0, atol=1e-9)
    assert calibrated.max(axis=1).mean() < raw.max(axis=1).mean()  # T > 1 softens


@pytest.mark.parametrize(
    "calibration,message",
    [
        ({"method": "isotonic"}, "is not one this version applies"),
        ({"method": "temperature", "temperature": 0}, "must be a positive number"),
        ({"method": "temperature", "temperature": "hot"}, "is not one this version applies"),
        (  # the seed's features have no voice statistics to follow
            {"method": "temperature", "temperature": 1.5, "covariates": COVARIATES},
            "the features have no voice statistics",
        ),
        (
            {"method": "temperature", "temperature": 1.5, "covariates": {"features": ["hnr_mean_db"]}},
            "calibration covariates need features, mean, scale, weights",
        ),
        ([1.7], "calibration section is not an object"),
    ],
)
def test_a_calibration_it_cannot_apply_is_refused(bundle_path, calibration, message):
    edit_manifest(bundle_path, calibration=calibration)
    assert message in refusal(bundle_path)


def test_a_calibration_with_covariates_gives_each_utterance_its_own_temperature(tmp_path):
    params = FeatureParams(voice=True)
    rng = np.random.default_rng(0)
    y = np.repeat(LABELS, 20)
    X = rng.standard_normal((60, params.n_features)) + 3 * np.repeat(np.eye(3, params.n_features), 20, 0)
    with quiet_training():
        model = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=50, random_state=0)).fit(X, y)
    calibration = {"method": "temperature", "temperature": 1.5, "covariates": COVARIATES}
    path = save_bundle(
        model, {"labels": LABELS, "features": params.to_dict(), "calibration": calibration}, tmp_path, "t"
    )
    bundle = load_bundle(path)
    hnr = params.n_features - len(VOICE_STATISTICS) + VOICE_STATISTICS.index("hnr_mean_db")
    clear, noisy = X[0].copy(), X[0].copy()
    clear[hnr], noisy[hnr] = 14.0, 6.0  # one standard deviation either side of the mean
    assert bundle.temperature_for(clear) == pytest.approx(1.5 / 2, rel=0.01)
    assert bundle.temperature_for(noisy) == pytest.approx(1.5 * 2, rel=0.01)
    raw = model.predict_proba(noisy[None])
    served = Classifier(bundle).predict(noisy)  # the raw features decide T (this bundle does not adapt)
    expected = softmax(np.log(raw) / bundle.temperature_for(noisy))[0]
    assert list(served.probabilities.values()) == pytest.approx(
        list(expected[[list(model.classes_).index(label) for label in LABELS]])
    )
    assert Classifier(bundle).predict(clear).confidence > served.confidence


def test_a_pickle_bundle_that_runs_a_command_is_refused_and_never_runs_it(tmp_path, ravdess):
    """Re-hashed into its manifest, as anyone who can write the model folder can; by the library
    and by both commands."""
    marker = tmp_path / "it-ran"
    pickled = tmp_path / "old.joblib"
    joblib.dump(RunsACommand(marker), pickled)
    manifest = {"format": "ser-stream.model/1", "name": "old", "labels": LABELS, "features": {}}
    manifest_path(pickled).write_text(json.dumps({**manifest, "sha256": sha256_of(pickled)}))
    disguised = tmp_path / "disguised.npz"  # the same pickle, named as a bundle
    disguised.write_bytes(pickled.read_bytes())
    network = {"activation": "relu", "out_activation": "softmax", "layers": 2}
    manifest_path(disguised).write_text(
        json.dumps({**manifest, "format": MANIFEST_FORMAT, "network": network, "sha256": sha256_of(disguised)})
    )

    message = refusal(pickled)
    assert "a pickle, which can run any code when loaded" in message
    assert f"python -m train.convert {pickled}" in message
    assert "would need unpickling, which is never done" in refusal(disguised)

    clip = str(clip_path(ravdess, 2, 1))
    for command in (["classify", clip], ["run", "--source", clip, "--no-realtime"]):
        for model in (pickled, disguised):
            result = run_cli(*command, "--model", str(model))
            assert result.returncode == 3 and len(result.stderr.splitlines()) == 1, result.stderr
            assert "Traceback" not in result.stderr and result.stdout == ""
    assert not marker.exists()


def test_an_object_array_is_refused_and_never_unpickled(bundle_path, tmp_path):
    marker = tmp_path / "it-ran"

    def smuggle(arrays):
        arrays["coef_1"] = np.array([RunsACommand(marker)], dtype=object)

    rewrite_arrays(bundle_path, smuggle)
    assert "an object array" in refusal(bundle_path)
    assert not marker.exists()


def test_an_old_pickle_path_names_the_bundle_beside_it(bundle_path):
    old = bundle_path.with_suffix(".joblib")
    assert refusal(old) == f"model {old}: no such file (bundles are NAME.npz now; pickles are not read); " + (
        f"or use {bundle_path}, which is beside it"
    )
    old.write_bytes(b"not even read")
    message = refusal(old)
    assert "a pickle, which can run any code" in message
    assert message.endswith(f"or use {bundle_path}, which is beside it")


def test_one_flipped_byte_is_refused(bundle_path):
    data = bytearray(bundle_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bundle_path.write_bytes(bytes(data))
    assert "does not match the manifest's" in refusal(bundle_path)


def test_a_truncated_bundle_is_refused(bundle_path):
    bundle_path.write_bytes(bundle_path.read_bytes()[:1000])
    assert "does not match the manifest's" in refusal(bundle_path)
    edit_manifest(bundle_path, sha256=sha256_of(bundle_path))  # also when re-hashed
    assert "unreadable arrays" in refusal(bundle_path)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: a.pop("coef_1"), "lacks arrays (by its manifest): coef_1"),
        (lambda a: a.pop("labels"), "lacks arrays (by its manifest): labels"),
        (lambda a: a.update(bonus=np.zeros(2)), "holds unnamed arrays (by its manifest): bonus"),
        (lambda a: a.update(coef_1=a["coef_1"][:, :2], intercept_1=a["intercept_1"][:2]), "output layer has 2 units"),
        (lambda a: a.update(coef_0=a["coef_0"][:10]), "layer 0 (coef_0, intercept_0) does not take"),
        (lambda a: a.update(intercept_0=np.full_like(a["intercept_0"], np.nan)), "intercept_0 is not finite"),
        (lambda a: a.update(scaler_scale=np.zeros_like(a["scaler_scale"])), "the scale positive"),
        (lambda a: a.update(labels=np.array([1, 2, 3])), "labels are not distinct text"),
        (lambda a: a.update(labels=np.array(["calm", "calm", "happy"])), "labels are not distinct text"),
    ],
)
def test_arrays_that_do_not_make_the_network_are_refused(bundle_path, change, message):
    rewrite_arrays(bundle_path, change)
    assert message in refusal(bundle_path)


def test_an_extra_array_the_manifest_names_must_be_there(model, tmp_path):
    path = save_bundle(
        model, {"labels": LABELS, "features": SEED_PARAMS.to_dict()}, tmp_path, "x", {"prior": np.ones(2)}
    )
    rewrite_arrays(path, lambda a: a.pop("extra.prior"))
    assert "lacks arrays (by its manifest): extra.prior" in refusal(path)


def test_arrays_too_large_to_be_a_model_are_refused_before_they_are_read(model, tmp_path, monkeypatch):
    path = save_bundle(
        model, {"labels": LABELS, "features": SEED_PARAMS.to_dict()}, tmp_path, "big", {"big": np.zeros(300_000)}
    )
    with zipfile.ZipFile(path) as archive:  # uncompressed sizes, as a deflated zip bomb would declare them
        assert sum(info.file_size for info in archive.infolist()) > 2 << 20
    monkeypatch.setattr(bundle_module, "MAX_ARRAYS_BYTES", 2 << 20)
    assert "more than 2 MB" in refusal(path)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"format": "ser-stream.model/99"}, "is not 'ser-stream.model/2'"),
        ({"labels": ["calm", "happy", "angry"]}, "differ from the manifest"),
        ({"labels": "calm"}, "labels are not a list of names"),
        ({"features": {"n_mfcc": "forty", "statistics": ["median"]}}, "feature or trim parameters are invalid"),
        ({"features": {**SEED_PARAMS.to_dict(), "n_mfcc": 20}}, "the network takes 180 features, the manifest's"),
        ({"trim": {"frame_ms": 25}}, "feature or trim parameters are invalid"),
        ({"sha256": None}, "lacks 'sha256'"),
        ({"network": None}, "lacks 'network'"),
        ({"network": {"activation": "relu", "out_activation": "softmax", "layers": 3}}, "lacks arrays"),
        ({"network": {"activation": "gelu", "out_activation": "softmax", "layers": 2}}, "are not among"),
        ({"network": {"activation": "relu", "out_activation": "softmax", "layers": 10**9}}, "from 1 to 64"),
        ({"network": {"activation": "relu", "out_activation": "softmax", "layers": 2, "members": 0}}, "from 1 to 16"),
        (
            {"network": {"activation": "relu", "out_activation": "softmax", "layers": 2, "members": 3}},
            "its weights are not 3 network(s) of 2 layer(s)",
        ),
        ({"extra_arrays": "prior"}, "extra_arrays is not a list of names"),
        ({"sample_rate": 22050}, "sample rates disagree (sample_rate 22050, features.sample_rate 16000)"),
        ({"trim": {"sample_rate": 8000}}, "features.sample_rate 16000, trim.sample_rate 8000)"),
        ({"abstention": 0.5}, "abstention section is not an object"),
    ],
)
def test_bad_manifests(bundle_path, changes, message):
    edit_manifest(bundle_path, **changes)
    assert message in refusal(bundle_path)


def test_agreeing_sample_rates_load(bundle_path):
    edit_manifest(bundle_path, sample_rate=16000, trim={"sample_rate": 16000})
    assert load_bundle(bundle_path).sample_rate == 16000


def test_missing_files(bundle_path, tmp_path):
    assert "no such file" in refusal(tmp_path / "nope.npz")
    assert "not a bundle (NAME.npz" in refusal(manifest_path(bundle_path))
    manifest_path(bundle_path).write_text("{not json")
    assert "unreadable" in refusal(bundle_path)
    manifest_path(bundle_path).write_text("[" * 100_000 + "]" * 100_000)
    assert "unreadable" in refusal(bundle_path)
    manifest_path(bundle_path).unlink()
    assert "manifest tiny.json is missing" in refusal(bundle_path)


@pytest.mark.parametrize(
    "path,labels",
    [
        (SHIPPED_MODEL, ["calm", "happy", "fearful", "disgust"]),
        (SHIPPED_MODEL.with_name("ser-mlp-8.npz"), list(EMOTIONS.values())),
    ],
    ids=["ser-mlp", "ser-mlp-8"],
)
def test_shipped_bundles_are_complete(path, labels):
    bundle = load_bundle(path)
    manifest = bundle.manifest
    assert path.suffix == ".npz" and not list(path.parent.glob("*.joblib"))
    assert bundle.labels == labels
    assert bundle.sample_rate == 16000 and bundle.trim == SegmenterConfig()
    assert manifest["training_data"]["licence"] == "CC BY-NC-SA 4.0"
    assert len(manifest["training_data"]["fingerprint_sha256"]) == 64
    assert {"scikit_learn", "librosa"} <= set(manifest["versions"])
    for row in ("dummy (stratified)", "DataFlair MLP", "article's tuned MLP (logistic, (250, 150))"):
        assert set(manifest["metrics"][row]) == {"split", "actor"}
    recipe = manifest["adaptation"]["training"]["mode"] if bundle.prior else "none"
    assert bundle.mlp.members == manifest["estimator"]["members"] == SHIPPED_MEMBERS
    shipped = manifest["metrics"][shipped_row(recipe, bundle.mlp.members)]
    assert shipped["split"]["mean"] > manifest["metrics"]["DataFlair MLP"]["split"]["mean"]
    assert shipped["actor"]["mean"] > manifest["metrics"]["DataFlair MLP"]["actor"]["mean"]
    assert bundle.prior is not None and bundle.intensity_head is not None  # the shipped recipe adapts
    assert bundle.min_confidence is not None and bundle.section("calibration")["temperature"] > 0
    assert "CC BY-NC-SA 4.0" in (path.parent / "README.md").read_text()


def test_the_shipped_model_is_less_sure_of_a_voice_heard_among_other_voices(ravdess):
    """Its calibration follows the utterance's voice statistics: the same clips with four other voices
    5 dB under them get a higher temperature, so a lower confidence, than heard alone."""
    classifier = Classifier(load_bundle(SHIPPED_MODEL))
    rng = np.random.default_rng(0)
    others = [load_audio(str(clip_path(ravdess, e, a)), 16000) for e in (3, 5) for a in (11, 12, 13, 14)]
    ratios, confidence = [], {"alone": [], "babble": []}
    for emotion in (2, 3, 6, 7):  # calm, happy, fearful, disgust
        speech = load_audio(str(clip_path(ravdess, emotion, 1, intensity=2)), 16000)
        heard = mix_at_snr(speech, babble(others, speech.size, rng), 5.0)
        alone, among = classifier.features(speech, 16000), classifier.features(heard, 16000)
        ratios.append(classifier.bundle.temperature_for(among) / classifier.bundle.temperature_for(alone))
        confidence["alone"].append(classifier.predict(alone).confidence)
        confidence["babble"].append(classifier.predict(among).confidence)
    assert np.median(ratios) > 1.2, ratios
    assert np.mean(confidence["babble"]) < np.mean(confidence["alone"]), confidence


def test_a_model_trained_with_another_scikit_learn_loads_with_a_warning(bundle_path, caplog):
    installed = importlib.metadata.version("scikit-learn")
    manifest = json.loads(manifest_path(bundle_path).read_text())
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
    for versions in (None, "1.5", []):  # any JSON may stand there
        edit_manifest(bundle_path, versions=versions)
        load_bundle(bundle_path)
    assert caplog.records == []


def test_trim_differences_name_each_vad_setting_that_differs_from_training(bundle_path):
    edit_manifest(bundle_path, trim={"sample_rate": 16000})
    bundle = load_bundle(bundle_path)
    assert trim_differences(bundle, SegmenterConfig(sample_rate=48000)) == []  # the capture rate may differ
    live = SegmenterConfig(hangover_ms=800, gate_db=0.0, frame_ms=20)
    assert trim_differences(bundle, live) == [
        "frame_ms 20 (trained with 30)",
        "hangover_ms 800 (trained with 500)",
        "gate_db 0.0 (trained with 35.0)",
    ]
    edit_manifest(bundle_path, trim=None)
    assert trim_differences(load_bundle(bundle_path), live) == []


def test_run_warns_once_at_start_when_its_vad_differs_from_the_models_training(ravdess):
    clip = str(clip_path(ravdess, 2, 1))
    result = run_cli("run", "--source", clip, "--no-realtime", "--hangover-ms", "800", "--publish", free_endpoint())
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "ser-stream: warning: VAD settings differ from the model's training, its accuracy may not hold: "
        "hangover_ms 800 (trained with 500)"
    ]


def test_importing_the_model_package_loads_nothing_heavy():
    """Settings take the default model path from it: no numpy, and never scikit-learn or joblib."""
    code = "import sys, ser_stream.model\nprint(*[m for m in ('numpy', 'sklearn', 'joblib') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []
