"""train.calibration and train.heads on synthetic predictions: temperature, ECE, abstention, intensity."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import roc_auc_score

from ser_stream.model import MLP, load_bundle
from ser_stream.model.calibration import Calibration as Fitted
from ser_stream.model.calibration import voice_columns
from ser_stream.voice import VOICE_STATISTICS
from tests.conftest import run_cli, run_train
from tests.test_experiments import make, synthetic
from train import adaptation as ad
from train import calibration as cal
from train import experiments as ex
from train.heads import fit_heads, streamed_oof
from train.pipeline import SHIPPED_FEATURES, default_name
from train.ravdess import EMOTIONS, SEED_EMOTIONS, parse_name

#: Where the covariates sit in the shipped features.
COLUMNS = voice_columns(SHIPPED_FEATURES, cal.COVARIATES)


def overconfident(temperature: float, n: int = 20000, classes: int = 4, seed: int = 0):
    """Probabilities softmax(z) of logits z whose labels were drawn from softmax(z / temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (n, classes))
    logits[np.arange(n), rng.integers(0, classes, n)] += 4.0  # a favourite per row, as a trained network has
    true = softmax(logits / temperature, axis=1)
    truth = np.array([rng.choice(classes, p=p) for p in true])
    return softmax(logits, axis=1), truth


@pytest.mark.parametrize("temperature", [0.7, 1.0, 2.5])
def test_temperature_fitting_recovers_the_temperature_the_labels_were_drawn_with(temperature):
    proba, truth = overconfident(temperature)
    assert cal.fit_temperature(proba, truth) == pytest.approx(temperature, rel=0.05)


def test_the_temperature_applied_to_probabilities_is_the_one_serving_applies_to_logits():
    data = synthetic()
    model = ex.fit(make({}), data.X, data.y)
    network = MLP.from_estimator(model)
    proba = model.predict_proba(data.X)
    for temperature in (0.5, 2.0):
        served = MLP(**{**network.__dict__, "temperature": temperature}).predict_proba(data.X)
        assert np.allclose(cal.apply_temperature(proba, temperature), served, atol=1e-6)


def test_a_perfectly_calibrated_set_has_an_ece_of_about_zero_and_an_overconfident_one_does_not():
    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.full(5, 0.3), 50000)
    truth = np.array([rng.choice(5, p=p) for p in proba])  # each label drawn with the probability stated
    assert cal.ece(proba, truth) < 0.01
    sharpened = cal.apply_temperature(proba, 0.5)
    assert cal.ece(sharpened, truth) > 0.05
    assert cal.ece(cal.apply_temperature(sharpened, cal.fit_temperature(sharpened, truth)), truth) < 0.01


def test_a_weighted_temperature_fit_is_the_fit_of_the_rows_repeated_by_their_weights():
    proba, truth = overconfident(2.0, n=3000)
    other, other_truth = overconfident(0.8, n=1000, seed=1)
    repeated = cal.fit_temperature(np.concatenate([proba, *[other] * 3]), np.concatenate([truth, *[other_truth] * 3]))
    stacked, labels = np.concatenate([proba, other]), np.concatenate([truth, other_truth])
    weight = np.concatenate([np.full(len(truth), 1 / len(truth)), np.full(len(other_truth), 1 / len(other_truth))])
    assert cal.fit_temperature(stacked, labels, weight) == pytest.approx(repeated, rel=1e-4)
    weighted, plain = cal.fit_temperature(stacked, labels, weight), cal.fit_temperature(stacked, labels)
    assert weighted < plain  # the sharper set weighs more


def test_ece_weighs_each_bin_by_its_share():
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    truth = np.array([0, 0, 0, 1])  # bin of 0.9: all right (gap 0.1); bin of 0.6: half right (gap 0.1)
    assert cal.ece(proba, truth) == pytest.approx(0.1)
    bins = cal.reliability(proba, truth)
    assert [(b["count"], b["accuracy"]) for b in bins] == [(2, 0.5), (2, 1.0)]


def voice_statistics(n: int, seed: int = 0) -> np.ndarray:
    """Rows of made-up voice statistics (what the calibration's covariates are read from)."""
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, len(VOICE_STATISTICS)))


def test_the_abstention_threshold_leaves_the_chosen_share_below_it():
    proba, truth = overconfident(2.0, n=4001)
    voice = voice_statistics(len(truth))
    calibration = cal.calibrate((proba, truth, voice), [], COLUMNS, share=0.25)
    calibrated = cal.apply_temperature(proba, cal.temperatures(calibration.fitted, voice))
    confidence = calibrated.max(axis=1)
    below = np.mean(confidence < calibration.abstention["min_confidence"])
    assert abs(below - 0.25) <= 1 / len(truth)
    assert calibration.abstention["abstained"] == pytest.approx(below)
    kept = confidence >= calibration.abstention["min_confidence"]
    right = calibrated.argmax(axis=1) == truth
    assert calibration.abstention["accuracy_kept"] == pytest.approx(right[kept].mean())
    assert calibration.abstention["accuracy_kept"] > calibration.abstention["accuracy_all"] + 0.05
    assert calibration.after["ece"] < calibration.before["ece"]


def test_the_temperature_follows_a_covariate_that_says_how_hard_an_utterance_is():
    """Half of the predictions were drawn at T 1 and half at T 3; the harmonics-to-noise ratio tells them
    apart: the fitted T rises where it is low, and each half ends up calibrated, where one T serves neither."""
    easy, easy_truth = overconfident(1.0, n=6000)
    hard, hard_truth = overconfident(3.0, n=6000, seed=1)
    proba, truth = np.concatenate([easy, hard]), np.concatenate([easy_truth, hard_truth])
    voice = voice_statistics(len(truth))
    voice[:, VOICE_STATISTICS.index("hnr_mean_db")] = np.repeat([15.0, 5.0], 6000) + voice[:, 0]
    calibration = cal.calibrate((proba, truth, voice), [], COLUMNS)
    temperature = cal.temperatures(calibration.fitted, voice)
    assert np.median(temperature[:6000]) == pytest.approx(1.0, rel=0.15)
    assert np.median(temperature[6000:]) == pytest.approx(3.0, rel=0.15)
    weights = dict(zip(cal.COVARIATES, calibration.fitted.weights, strict=True))
    assert weights["hnr_mean_db"] < 0 and max(abs(w) for n, w in weights.items() if n != "hnr_mean_db") < 0.1
    calibrated = cal.apply_temperature(proba, temperature)
    constant = cal.apply_temperature(proba, calibration.constant)
    for half in (slice(0, 6000), slice(6000, None)):
        assert cal.ece(calibrated[half], truth[half]) < 0.03 < cal.ece(constant[half], truth[half])
    served = load_section(calibration.fitted)  # a bundle's section read back gives the same T per utterance
    features = np.zeros((len(truth), SHIPPED_FEATURES.n_features))
    features[:, COLUMNS] = cal.covariates_of(voice)
    assert [served.temperature_for(f) for f in features[::500]] == pytest.approx(list(temperature[::500]))


def test_coverage_keeps_the_most_confident_first():
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    truth = np.array([0, 0, 1, 1])
    rows = {row["coverage"]: row for row in cal.coverage_table(proba, truth, (1.0, 0.5, 0.25))}
    assert [rows[c]["accuracy"] for c in (1.0, 0.5, 0.25)] == [0.5, 1.0, 1.0]
    assert rows[0.5]["min_confidence"] == 0.8


def load_section(fitted: Fitted) -> Fitted:
    return Fitted.from_section(json.loads(json.dumps(fitted.section())), SHIPPED_FEATURES)


def test_the_heads_come_from_the_out_of_fold_probabilities_and_the_bundles_standardised_rows():
    plain = synthetic()  # with made-up voice statistics last, as the shipped features end with them
    data = replace(plain, X=np.hstack([plain.X, voice_statistics(len(plain.X)).astype(plain.X.dtype)]))
    design = ex.actor_design(data)
    streams = ad.fold_streams(data, None, ["a", "b", "c"], 0)
    prior = ad.population_prior(data.X, ad.voices_of(data), 4.0, 50.0, 0.05)
    then = [partial(ad.play_all, fold, prior) for fold in streams]  # protocol (c), through an adapter
    (oof,) = ex.score_all([ex.Experiment(lambda s: make({}), design, [0] * len(design.splits), then)], 1)
    assert [len(p) for p in oof.proba] == [len(test) for _, test in design.splits] and oof.classes == ["a", "b", "c"]
    strong = data.X[data.original][:, 0] > np.median(data.X[data.original][:, 0])  # a learnable "intensity"
    final = ex.fit(make({}), data.X, data.y)
    columns = np.arange(plain.X.shape[1], data.X.shape[1])[[VOICE_STATISTICS.index(n) for n in cal.COVARIATES]]
    heads = fit_heads(oof, prior.horizon, design, strong, final, data.X, data.clip, data.X, columns)

    proba, truth = cal.pooled_oof(oof.proba, oof.y_true, oof.classes)
    voice = cal.voice_of(data.X[np.concatenate([test for _, test in design.splits])])
    played = [p for fold in oof.then for p in fold if isinstance(p, ad.Played) and p.horizon == prior.horizon]
    streamed = streamed_oof(played, oof.classes)
    right = np.concatenate([p.excluding[~np.isnan(p.excluding)] for p in played])
    assert len(streamed[1]) == len(right) >= len(data.groups) * ad.STREAM_ORDERS  # every scored utterance, every mix
    assert np.mean(streamed[0].argmax(axis=1) == streamed[1]) == pytest.approx(right.mean())  # truth as played
    both = cal.calibrate((proba, truth, voice), [streamed], columns).fitted
    section = heads.sections["calibration"]
    assert section["temperature"] == pytest.approx(both.temperature)
    assert section["covariates"]["weights"] == pytest.approx(list(both.weights))
    assert section["covariates"]["features"] == list(cal.COVARIATES)
    assert both.temperature != pytest.approx(cal.calibrate((proba, truth, voice), [], columns).temperature, rel=1e-3)
    assert section["method"] == "temperature"
    assert heads.sections["abstention"]["share"] == cal.ABSTAIN_SHARE
    coef, intercept = heads.arrays["intensity_coef"], heads.arrays["intensity_intercept"]
    assert coef.shape == (data.X.shape[1],) and intercept.shape == (1,)
    z = MLP.from_estimator(final).standardise(data.X) @ coef + intercept[0]
    assert np.mean((z > 0) == strong[data.clip]) > 0.9  # fitted on the network's standardised input
    streamed = heads.metrics["calibration"]["streamed"]["balanced"]  # what a device publishes, checked under (c)
    summary = ad.summarise(played, prior.horizon)["balanced"]
    assert streamed["accuracy_all"] == pytest.approx(summary["overall"])
    assert streamed["predictions"] == len(data.groups) * ad.STREAM_ORDERS
    assert heads.sections["calibration"]["ece_streamed"]["balanced"]["after"] == streamed["after"]
    intensity = heads.metrics["intensity"]["protocol_b"]
    assert len(intensity["roc_auc"]["scores"]) == len(design.splits) and intensity["roc_auc"]["mean"] > 0.8
    assert "roc_auc_without_neutral" not in intensity  # no neutral here


def test_default_names():
    assert default_name(SEED_EMOTIONS) == "ser-mlp"
    assert default_name(tuple(EMOTIONS.values())) == "ser-mlp-8"
    assert default_name(("neutral", "happy", "sad")) == "ser-mlp-neutral-happy-sad"


@pytest.mark.slow
def test_an_eight_emotion_run_writes_ser_mlp_8_calibrated_with_a_threshold_and_an_intensity_head(ravdess, tmp_path):
    result = run_train(
        "--data", str(ravdess), "--emotions", "all", "--actors", "1-3", "--quick", "--repeats", "2", "--jobs", "2",
        "--out", str(tmp_path / "models"), "--report", str(tmp_path / "report"), "--cache", str(tmp_path / "cache"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    path = tmp_path / "models" / "ser-mlp-8.npz"
    bundle = load_bundle(path)
    assert bundle.name == "ser-mlp-8" and sorted(bundle.labels) == sorted(EMOTIONS.values())
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    calibration = metrics["calibration"]
    assert bundle.section("calibration")["temperature"] == calibration["temperature"] == bundle.mlp.temperature
    assert bundle.mlp.temperature != 1.0
    assert calibration["n_predictions"] == 3 * 60  # every clip of the 3 actors, once, out of fold
    assert calibration["after"]["nll"] <= calibration["before"]["nll"]
    streamed = calibration["streamed"]
    assert {"balanced", "neutral-heavy"} <= set(streamed)  # checked under (c) too
    assert streamed["neutral-heavy"]["predictions"] == 3 * 24 * 20  # 12 neutral or calm + 12 others, all scored
    assert not any("unlabelled_abstained" in mix for mix in streamed.values())  # neutral is a label here
    abstention = calibration["abstention"]
    assert bundle.min_confidence == abstention["min_confidence"] and bundle.section("abstention")["share"] == 0.25
    assert abs(abstention["abstained"] - 0.25) <= 1 / calibration["n_predictions"]
    for key in ("roc_auc", "roc_auc_without_neutral"):  # one fold per held-out actor
        assert len(metrics["intensity"]["protocol_b"][key]["scores"]) == 3
    assert bundle.intensity_head is not None and bundle.section("intensity")["method"] == "logistic"
    for name in ("reliability.png", "coverage.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert "## Calibration, abstention and intensity" in (tmp_path / "report" / "report.md").read_text()

    files = sorted(str(f) for f in (ravdess / "Actor_02").glob("*.flac"))  # a voice it trained on
    classified = run_cli("classify", "--json", "--adapt", "--model", str(path), *files, timeout=300)
    assert classified.returncode == 0, classified.stderr
    events = [json.loads(line) for line in classified.stdout.splitlines()]
    assert len(events) == 60 and all(isinstance(e["uncertain"], bool) for e in events)
    strong = [parse_name(Path(e["file"])).intensity == cal.STRONG for e in events]
    assert roc_auc_score(strong, [e["intensity"] for e in events]) > 0.8  # the head sees what it was trained on
