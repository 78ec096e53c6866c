"""What a trained bundle carries beside its network: a calibration, an abstention threshold and an
intensity head, with the manifest sections and arrays that hold them and the figures for the report.

All three come from the shipped recipe's protocol (b): its out-of-fold probabilities (each held-out
actor's clips standardised by that actor's statistics, as the recipe's (b) scores them) and its
folds of rows; the temperature also from protocol (c)'s streams its fits played (the held-out actors
as a device hears them), weighing as much as (b). The intensity head's final fit takes every training
row, standardised by the bundle's adapter and scaler as serving does (`ser_stream.model.ModelBundle.intensity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ser_stream.model import MLP

from . import calibration as cal
from .adaptation import MIXES, Played
from .experiments import Design, Score
from .ravdess import Clip

#: Where the calibration and the threshold come from, for the manifest and the report.
FITTED_ON = (
    "out-of-fold probabilities of the shipped recipe under protocol (b) (GroupKFold by actor): each "
    "held-out actor's clips, standardised by that actor's statistics when the recipe adapts; the "
    "temperature on those and, weighing as much, protocol (c)'s streamed predictions (each utterance with "
    "the statistics heard before it, every mix), when the recipe was played so; the threshold on (b)'s"
)
#: How the intensity head treats neutral, which RAVDESS records at normal intensity only.
NEUTRAL = (
    "neutral, when it is a label (RAVDESS records it at normal intensity only), is trained on as normal: "
    "speech without emotion is not strong"
)


@dataclass(frozen=True)
class Heads:
    sections: dict[str, dict[str, Any]]  # manifest: calibration, abstention, intensity
    arrays: dict[str, np.ndarray]  # the intensity head's extra arrays
    metrics: dict[str, Any]  # metrics.json's "calibration" and "intensity"


def strong_of(clips: list[Clip]) -> np.ndarray:
    """Per clip, whether RAVDESS recorded it at strong intensity."""
    return np.array([clip.intensity == cal.STRONG for clip in clips])


def fit_heads(
    oof: Score, horizon: float | None, design: Design, strong: np.ndarray, final: Any, X: np.ndarray, clip: np.ndarray
) -> Heads:
    """``oof``: the shipped recipe's protocol (b) score (with its probabilities, and protocol (c)'s
    streams played by its fits, at the adapter's ``horizon``); ``design``: its (b) design; ``strong``:
    per clip; ``final``, ``X``, ``clip``: the bundle's fitted estimator, the rows it was fitted on and
    their clips."""
    proba, truth = cal.pooled_oof(oof.proba, oof.y_true, oof.classes)
    played = [p for fold in oof.then if fold for p in fold if isinstance(p, Played) and p.horizon == horizon]
    calibration = cal.calibrate(proba, truth, streamed_oof(played, oof.classes) if played else None)
    streamed = stream_check(played, calibration.temperature, calibration.abstention["min_confidence"])
    neutral = design.y == "neutral"
    intensity = cal.intensity_folds(design.X, strong[design.clip], design.splits, neutral)
    coef, intercept = cal.fit_intensity(MLP.from_estimator(final).standardise(X), strong[clip])
    sections = {
        "calibration": {
            "method": "temperature",
            "temperature": calibration.temperature,
            "fitted_on": FITTED_ON,
            "predictions": calibration.n,
            "ece_bins": cal.ECE_BINS,
            "ece_before": calibration.before["ece"],
            "ece_after": calibration.after["ece"],
            "ece_streamed": {mix: {k: v[k] for k in ("before", "after")} for mix, v in streamed.items()},
        },
        "abstention": {
            **calibration.abstention,
            "chosen_as": "the calibrated out-of-fold confidence below which this share of predictions falls",
        },
        "intensity": {
            "method": "logistic",
            "classes": ["normal", "strong"],
            "input": "the first layer's input: features standardised by the adapter (if any), then the scaler",
            "trained_on": "every training row (speed and room copies included), label: RAVDESS intensity strong",
            "neutral": NEUTRAL,
            "protocol_b": {key: value["mean"] for key, value in intensity.items() if isinstance(value, dict)},
        },
    }
    arrays = {"intensity_coef": coef, "intensity_intercept": intercept}
    metrics = {
        "calibration": {"fitted_on": FITTED_ON, **calibration.to_dict(), "streamed": streamed},
        "intensity": {"neutral": NEUTRAL, "protocol_b": intensity},
    }
    return Heads(sections, arrays, metrics)


def streamed_oof(played: list[Played], classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Protocol (c)'s scored predictions, every mix and order: probabilities and truth as column indices."""
    proba = np.concatenate([p.proba[~np.isnan(p.excluding)] for p in played])
    labels = np.concatenate([p.labels[~np.isnan(p.excluding)] for p in played])
    return cal.pooled_oof([proba], labels, classes)


def stream_check(played: list[Played], temperature: float, min_confidence: float) -> dict[str, dict[str, float]]:
    """The calibration and the threshold as a device meets them: protocol (c)'s predictions (each
    utterance with the statistics heard before it), per mix: ECE before and after the temperature,
    the share below ``min_confidence`` and the accuracy of all and of the rest."""
    checks = {}
    for mix in MIXES:
        runs = [p for p in played if p.mix == mix]
        if not runs:
            continue
        right = np.concatenate([p.excluding.ravel() for p in runs])
        proba = np.concatenate([p.proba.reshape(-1, p.proba.shape[-1]) for p in runs])
        scored = ~np.isnan(right)
        before = proba.max(axis=1)[scored]
        after = cal.apply_temperature(proba, temperature).max(axis=1)
        confidence, right = after[scored], right[scored]
        checks[mix] = {
            "before": cal.ece_of(before, right),
            "after": cal.ece_of(confidence, right),
            "predictions": int(right.size),
            "abstained": float(np.mean(confidence < min_confidence)),
            "accuracy_all": float(right.mean()),
            "accuracy_kept": float(right[confidence >= min_confidence].mean()),
        }
        if not scored.all():  # speech of an emotion the model has no label for (neutral for the seed's four)
            checks[mix]["unlabelled_abstained"] = float(np.mean(after[~scored] < min_confidence))
    return checks
