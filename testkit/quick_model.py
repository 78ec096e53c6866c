"""A small model bundle with every optional section, made in seconds from a few RAVDESS actors
(and a tiny one of random weights, without RAVDESS).

For tests and benchmarks of serving (adaptation, calibration, abstention, intensity) that cannot
wait for, and must not depend on, the shipped bundle.  Trained the way `train` trains an adapted
bundle, far smaller: the shipped bundle's features and trim (computed by serving's own
`Classifier.recording_features`), each actor's rows standardised by that actor's own statistics
(`VoiceAdapter`, unlabelled), a scaler and a small MLP over the emotions, and a logistic regression
on the same standardised input for RAVDESS's intensity (normal / strong).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ser_stream.adapter import AdapterPrior, VoiceAdapter
from ser_stream.audio import load_audio
from ser_stream.features import SEED_PARAMS
from ser_stream.model import DEFAULT_MODEL, Classifier, load_bundle, save_bundle
from train.ravdess import SEED_EMOTIONS, scan

#: The actors the quick model learns from; tests stream the others (13-20) as unseen voices.
TRAINING_ACTORS = tuple(range(1, 13))


@dataclass(frozen=True)
class Clips:
    """Features of RAVDESS clips, as serving computes them, with their labels."""

    X: np.ndarray
    emotion: np.ndarray
    strong: np.ndarray  # intensity 02
    actor: np.ndarray
    paths: list[Path]


def clip_features(ravdess: Path, actors: tuple[int, ...], emotions: tuple[str, ...] = SEED_EMOTIONS) -> Clips:
    """Every speech clip of ``actors`` and ``emotions``, cut and featurised as `classify` does with the
    shipped bundle's recipe."""
    classifier = Classifier(load_bundle(DEFAULT_MODEL))
    rate = classifier.sample_rate
    clips = sorted(scan(ravdess, emotions, set(actors)).clips, key=lambda clip: clip.path.name)
    rows = [classifier.recording_features(load_audio(str(clip.path), rate), rate) for clip in clips]
    return Clips(
        X=np.stack(rows),
        emotion=np.array([clip.emotion for clip in clips]),
        strong=np.array([clip.intensity == 2 for clip in clips]),
        actor=np.array([clip.actor for clip in clips]),
        paths=[clip.path for clip in clips],
    )


def population_prior(clips: Clips) -> AdapterPrior:
    """The mean over all rows and the mean of each actor's own variance, as `train` makes it."""
    within = np.mean([clips.X[clips.actor == a].var(axis=0) for a in np.unique(clips.actor)], axis=0)
    return AdapterPrior(clips.X.mean(axis=0), within)


def per_voice(clips: Clips, prior: AdapterPrior) -> np.ndarray:
    """Each actor's rows standardised by the statistics of all of that actor's rows."""
    out = np.empty_like(clips.X)
    for actor in np.unique(clips.actor):
        rows = np.flatnonzero(clips.actor == actor)
        adapter = VoiceAdapter(prior)
        for row in rows:
            adapter.update(clips.X[row])
        out[rows] = adapter.normalise(clips.X[rows])
    return out


def fit(clips: Clips, prior: AdapterPrior | None, seed: int = 0) -> tuple[Pipeline, LogisticRegression]:
    """The emotion network and the intensity head, on per-voice rows (raw rows without a prior)."""
    X = clips.X if prior is None else per_voice(clips, prior)
    with (
        warnings.catch_warnings(),
        threadpool_limits(limits=1, user_api="blas"),
    ):  # BLAS threads: 10× slower on 2 busy cores
        warnings.simplefilter("ignore", ConvergenceWarning)
        network = make_pipeline(StandardScaler(), MLPClassifier((64,), alpha=1.0, max_iter=300, random_state=seed))
        network.fit(X, clips.emotion)
        intensity = LogisticRegression(C=0.05, max_iter=2000).fit(network[0].transform(X), clips.strong)
    return network, intensity


def quick_bundle(
    ravdess: Path,
    out_dir: Path,
    name: str = "quick",
    *,
    adapt: bool = True,
    temperature: float | None = None,
    min_confidence: float | None = None,
    clips: Clips | None = None,
    seed: int = 0,
) -> Path:
    """Train and save a bundle on TRAINING_ACTORS (the network's ``seed``): with an adaptation prior
    (``adapt``), an intensity head, and, if given, a calibration temperature and an abstention
    threshold.  Returns its ``.npz``."""
    clips = clips if clips is not None else clip_features(ravdess, TRAINING_ACTORS)
    shipped = load_bundle(DEFAULT_MODEL).manifest
    prior = population_prior(clips) if adapt else None
    network, intensity = fit(clips, prior, seed)
    manifest = {
        "labels": sorted(set(clips.emotion)),
        "sample_rate": shipped["sample_rate"],
        "features": shipped["features"],
        "trim": shipped["trim"],
        "intensity": {"method": "logistic", "classes": ["normal", "strong"]},
    }
    arrays = {"intensity_coef": intensity.coef_[0], "intensity_intercept": intensity.intercept_}
    if prior is not None:
        manifest["adaptation"] = prior.settings()
        arrays |= {"adaptation_mean": prior.mean, "adaptation_var": prior.var}
    if temperature is not None:
        manifest["calibration"] = {"method": "temperature", "temperature": temperature}
    if min_confidence is not None:
        manifest["abstention"] = {"min_confidence": min_confidence}
    return save_bundle(network, manifest, out_dir, name, extra_arrays=arrays)


def tiny_bundle(folder: Path, name: str = "tiny", seed: int = 0, prior: bool = True) -> Path:
    """A bundle of random weights on the seed's 180 features (no RAVDESS, a second to make), with an
    adaptation prior unless ``prior`` is False: for what needs a model that adapts, not a good one."""
    rng = np.random.default_rng(seed)
    n = SEED_PARAMS.n_features
    X, y = rng.standard_normal((40, n)), np.repeat(["calm", "happy"], 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = make_pipeline(StandardScaler(), MLPClassifier((4,), max_iter=20, random_state=seed)).fit(X, y)
    manifest: dict = {"labels": ["calm", "happy"], "features": SEED_PARAMS.to_dict()}
    arrays = None
    if prior:
        manifest["adaptation"] = AdapterPrior(X.mean(axis=0), X.var(axis=0)).settings()
        arrays = {"adaptation_mean": X.mean(axis=0), "adaptation_var": X.var(axis=0)}
    return save_bundle(model, manifest, folder, name, extra_arrays=arrays)
