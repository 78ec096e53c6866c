"""What a trained bundle carries beside its network: a calibration, an abstention threshold and an
intensity head, with the manifest sections and arrays that hold them and the figures for the report.

All three come from the shipped recipe's protocol (b): its out-of-fold probabilities (each held-out
actor's clips standardised by that actor's statistics, as the recipe's (b) scores them) and its
folds of rows; the calibration also from protocol (c)'s streams and protocol (d)'s rooms its fits
played (the held-out actors as a device hears them, in quiet and in noisy rooms), each weighing as
much as (b). The intensity head's final fit takes every training row, standardised by the bundle's
adapter and scaler as serving does (`ser_stream.model.ModelBundle.intensity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ser_stream.model import MLP
from ser_stream.model.calibration import Calibration as Fitted

from . import calibration as cal
from .adaptation import MIXES, Played
from .experiments import Design, Score
from .ravdess import Clip
from .room_protocol import RoomPlayed
from .rooms import PROTOCOL_ROOMS

#: Where the calibration and the threshold come from, for the manifest and the report.
FITTED_ON = (
    "out-of-fold probabilities of the shipped recipe under protocol (b) (GroupKFold by actor): each "
    "held-out actor's clips, standardised by that actor's statistics when the recipe adapts; the "
    "temperature and its covariates on those and, each weighing as much, protocol (c)'s streamed predictions "
    "(each utterance with the statistics heard before it, every mix) and protocol (d)'s (every utterance "
    "found in every room), when the recipe was played so; the threshold on (b)'s"
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
    oof: Score,
    horizon: float | None,
    design: Design,
    strong: np.ndarray,
    final: Any,
    X: np.ndarray,
    clip: np.ndarray,
    raw: np.ndarray,
    columns: np.ndarray,
) -> Heads:
    """``oof``: the shipped recipe's protocol (b) score (with its probabilities, and protocol (c)'s
    streams and (d)'s rooms played by its fits, at the adapter's ``horizon``); ``design``: its (b)
    design; ``strong``: per clip; ``final``, ``X``, ``clip``: the bundle's fitted estimator, the rows it
    was fitted on and their clips; ``raw``: the dataset's features before any adapter (``design``'s
    rows index it modulo its length), whose voice statistics the calibration follows, at ``columns``."""
    proba, truth = cal.pooled_oof(oof.proba, oof.y_true, oof.classes)
    voice = cal.voice_of(raw[np.concatenate([test % len(raw) for _, test in design.splits])])
    played = [p for fold in oof.then if fold for p in fold if isinstance(p, Played) and p.horizon == horizon]
    heard = [p for fold in oof.then if fold for p in fold if isinstance(p, RoomPlayed)]
    rooms = [p for p in heard if p.room in {room.name for room in PROTOCOL_ROOMS}]
    others = [streamed_oof(played, oof.classes)] if played else []
    others += [rooms_oof(rooms, oof.classes)] if rooms else []
    calibration = cal.calibrate((proba, truth, voice), others, columns)
    threshold = calibration.abstention["min_confidence"]
    streamed = stream_check(played, calibration.fitted, threshold)
    in_rooms = room_check(heard, calibration, threshold, oof.classes)
    neutral = design.y == "neutral"
    intensity = cal.intensity_folds(design.X, strong[design.clip], design.splits, neutral)
    coef, intercept = cal.fit_intensity(MLP.from_estimator(final).standardise(X), strong[clip])
    sections = {
        "calibration": {
            **calibration.fitted.section(),
            "fitted_on": FITTED_ON,
            "predictions": calibration.n,
            "ece_bins": cal.ECE_BINS,
            "ece_before": calibration.before["ece"],
            "ece_after": calibration.after["ece"],
            "ece_streamed": {mix: {k: v[k] for k in ("before", "after")} for mix, v in streamed.items()},
            "ece_rooms": {room: {k: v[k] for k in ("before", "constant", "after")} for room, v in in_rooms.items()},
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
        "calibration": {"fitted_on": FITTED_ON, **calibration.to_dict(), "streamed": streamed, "rooms": in_rooms},
        "intensity": {"neutral": NEUTRAL, "protocol_b": intensity},
    }
    return Heads(sections, arrays, metrics)


def streamed_oof(played: list[Played], classes: list[str]) -> cal.Predictions:
    """Protocol (c)'s scored predictions, every mix and order: probabilities, truth as column indices and
    voice statistics."""
    proba = np.concatenate([p.proba[~np.isnan(p.excluding)] for p in played])
    labels = np.concatenate([p.labels[~np.isnan(p.excluding)] for p in played])
    voice = np.concatenate([p.voice[~np.isnan(p.excluding)] for p in played])
    return (*cal.pooled_oof([proba], labels, classes), voice)


def rooms_oof(rooms: list[RoomPlayed], classes: list[str]) -> cal.Predictions:
    """Protocol (d)'s (or (e)'s) predictions of every utterance that overlaps a clip of the model's emotions."""
    scored = [np.isin(p.labels, classes) for p in rooms]
    proba = np.concatenate([p.proba[s] for p, s in zip(rooms, scored, strict=True)])
    labels = np.concatenate([p.labels[s] for p, s in zip(rooms, scored, strict=True)])
    voice = np.concatenate([p.voice[s] for p, s in zip(rooms, scored, strict=True)])
    return (*cal.pooled_oof([proba], labels, classes), voice)


def stream_check(played: list[Played], fitted: Fitted, min_confidence: float) -> dict[str, dict[str, float | None]]:
    """The calibration and the threshold as a device meets them: protocol (c)'s predictions (each
    utterance with the statistics heard before it), per mix: ECE before and after the calibration,
    the share below ``min_confidence`` and the accuracy of all and of the rest."""
    checks = {}
    for mix in MIXES:
        runs = [p for p in played if p.mix == mix]
        if not runs:
            continue
        right = np.concatenate([p.excluding.ravel() for p in runs])
        proba = np.concatenate([p.proba.reshape(-1, p.proba.shape[-1]) for p in runs])
        voice = np.concatenate([p.voice.reshape(-1, p.voice.shape[-1]) for p in runs])
        scored = ~np.isnan(right)
        before = proba.max(axis=1)[scored]
        after = cal.apply_temperature(proba, cal.temperatures(fitted, voice)).max(axis=1)
        checks[mix] = _figures(before, after[scored], right[scored], min_confidence)
        if not scored.all():  # speech of an emotion the model has no label for (neutral for the seed's four)
            checks[mix]["unlabelled_abstained"] = float(np.mean(after[~scored] < min_confidence))
    return checks


def room_check(
    heard: list[RoomPlayed], calibration: cal.Calibration, min_confidence: float, classes: list[str]
) -> dict[str, dict[str, float | None]]:
    """The calibration in each room of protocol (d) and through each microphone of (e), over every utterance
    that overlaps a clip: ECE before, with the one temperature fitted on the same predictions
    (``constant``) and with the covariates (``after``); the mean temperature, the share below
    ``min_confidence`` and the accuracy of all and of the rest."""
    checks = {}
    for room in dict.fromkeys(p.room for p in heard):
        proba, truth, voice = rooms_oof([p for p in heard if p.room == room], classes)
        if not len(truth):
            continue
        right = (proba.argmax(axis=1) == truth).astype(float)
        temperature = cal.temperatures(calibration.fitted, voice)
        confidence = cal.apply_temperature(proba, temperature).max(axis=1)
        checks[room] = {
            **_figures(proba.max(axis=1), confidence, right, min_confidence),
            "constant": cal.ece_of(cal.apply_temperature(proba, calibration.constant).max(axis=1), right),
            "mean_temperature": float(temperature.mean()),
        }
    return checks


def _figures(
    before: np.ndarray, confidence: np.ndarray, right: np.ndarray, min_confidence: float
) -> dict[str, float | None]:
    """ECE of the confidences ``before`` and after calibration (``confidence``), the share below
    ``min_confidence``, and the accuracy of all predictions (``right``: 1 or 0) and of the rest."""
    kept = right[confidence >= min_confidence]
    return {
        "before": cal.ece_of(before, right),
        "after": cal.ece_of(confidence, right),
        "predictions": int(right.size),
        "abstained": float(np.mean(confidence < min_confidence)),
        "accuracy_all": float(right.mean()),
        "accuracy_kept": float(kept.mean()) if kept.size else None,
    }
