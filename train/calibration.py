"""Calibration, abstention and the intensity head, fitted on out-of-fold predictions: the pure math.

Temperature scaling divides the network's output logits by one number T, fitted to minimise the
negative log-likelihood of held-out predictions: the top label never changes, only how sure the
model says it is. Serving applies it (`ser_stream.model.mlp.MLP`); the abstention threshold is a
quantile of the calibrated confidences; the intensity head is a logistic regression on the
standardised input of the network's first layer (`ser_stream.model.intensity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

#: Equal-width confidence bins of the expected calibration error (top label), as is usual.
ECE_BINS = 15
#: log T is searched within these bounds: T from 1/50 to 50.
LOG_T_BOUNDS = (-np.log(50.0), np.log(50.0))
#: A probability of exactly 0 (the float32 network's underflow) as a logit: float32's smallest number.
SMALLEST = 1e-45
#: The share of predictions that abstain by default: the issue's target is stated for the 75 % most
#: confident, and a quarter of events marked uncertain leaves a subscriber most of what it hears.
ABSTAIN_SHARE = 0.25
#: Coverage (share of predictions kept, the most confident first) at which accuracy is measured.
COVERAGES = tuple(round(1.0 - 0.05 * i, 2) for i in range(20))
#: RAVDESS's intensity codes (the fourth field of a file name).
NORMAL, STRONG = 1, 2
#: The intensity head's regularisation (scikit-learn's default strength), not tuned.
INTENSITY_C = 1.0


def logits_of(proba: np.ndarray) -> np.ndarray:
    """Logits up to a constant per row, which softmax ignores: log p (softmax(log p / T) = softmax(z / T))."""
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), SMALLEST, None))


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities as a bundle calibrated with ``temperature`` gives them."""
    return np.exp(log_softmax(logits_of(proba) / temperature, axis=1))


def nll(proba: np.ndarray, truth: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes (``truth``: column indices)."""
    return float(-np.mean(logits_of(proba)[np.arange(len(truth)), truth]))


def fit_temperature(proba: np.ndarray, truth: np.ndarray, weight: np.ndarray | None = None) -> float:
    """The T that minimises the (``weight``-ed) NLL of ``softmax(log proba / T)``, searched over log T (bounded)."""
    logits = logits_of(proba)
    rows = np.arange(len(truth))
    weight = np.full(len(truth), 1.0 / len(truth)) if weight is None else np.asarray(weight) / np.sum(weight)

    def loss(log_t: float) -> float:
        return float(-np.sum(weight * log_softmax(logits / np.exp(log_t), axis=1)[rows, truth]))

    result = minimize_scalar(loss, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def ece(proba: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top label: |accuracy − confidence| per equal-width confidence
    bin, weighted by the bin's share of predictions."""
    return ece_of(*top_label(proba, truth), bins)


def ece_of(confidence: np.ndarray, right: np.ndarray, bins: int = ECE_BINS) -> float:
    """`ece` from each prediction's top confidence and whether it was right (1 or 0)."""
    which = bin_of(confidence, bins)
    gap = 0.0
    for b in np.unique(which):
        inside = which == b
        gap += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    return float(gap)


def bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Each confidence's equal-width bin: (0, 1/bins] is bin 0, 1.0 the last."""
    return np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)


def reliability(proba: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per non-empty bin: its bounds, mean confidence, accuracy and count (the reliability diagram)."""
    confidence, right = top_label(proba, truth)
    which = bin_of(confidence, bins)
    return [
        {
            "low": b / bins,
            "high": (b + 1) / bins,
            "confidence": float(confidence[which == b].mean()),
            "accuracy": float(right[which == b].mean()),
            "count": int((which == b).sum()),
        }
        for b in np.unique(which)
    ]


def top_label(proba: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each prediction's confidence (its top probability) and whether its top label is the truth."""
    proba = np.asarray(proba, dtype=np.float64)
    return proba.max(axis=1), (proba.argmax(axis=1) == truth).astype(float)


def min_confidence(confidence: np.ndarray, share: float) -> float:
    """The threshold below which ``share`` of ``confidence`` falls (abstains): its ``share`` quantile."""
    return float(np.quantile(confidence, share, method="inverted_cdf"))


def coverage_table(proba: np.ndarray, truth: np.ndarray, coverages: Sequence[float] = COVERAGES) -> list[dict]:
    """Accuracy of the most confident predictions, for each share of them kept."""
    confidence, right = top_label(proba, truth)
    order = np.argsort(-confidence, kind="stable")
    rows = []
    for coverage in coverages:
        kept = order[: max(1, round(coverage * len(order)))]
        rows.append(
            {"coverage": coverage, "accuracy": float(right[kept].mean()), "min_confidence": float(confidence[kept[-1]])}
        )
    return rows


@dataclass(frozen=True)
class Calibration:
    """A temperature fitted on out-of-fold probabilities, with what it did to them."""

    temperature: float
    before: dict[str, Any]  # summary(): ece, nll, accuracy, mean confidence, reliability
    after: dict[str, Any]
    abstention: dict[str, float]  # share, min_confidence, and what abstaining at it does to the predictions
    coverage: list[dict]  # coverage_table of the calibrated probabilities
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "n_predictions": self.n,
            "ece_bins": ECE_BINS,
            "before": self.before,
            "after": self.after,
            "abstention": self.abstention,
            "coverage": self.coverage,
        }


def summary(proba: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    confidence, right = top_label(proba, truth)
    return {
        "ece": ece(proba, truth),
        "nll": nll(proba, truth),
        "accuracy": float(right.mean()),
        "mean_confidence": float(confidence.mean()),
        "reliability": reliability(proba, truth),
    }


def calibrate(
    proba: np.ndarray,
    truth: np.ndarray,
    streamed: tuple[np.ndarray, np.ndarray] | None = None,
    share: float = ABSTAIN_SHARE,
) -> Calibration:
    """Temperature, abstention threshold and the before/after figures, from out-of-fold probabilities.

    With ``streamed`` (probabilities and truth of protocol (c)'s streams, each utterance classified with
    the statistics heard before it, as a device publishes them), the temperature is fitted on both, each
    weighing half: a device's early utterances are less sure than a voice's clips standardised by all of
    them, and its confidence should say so. The threshold and the figures are those of ``proba``.
    """
    sets = [(proba, truth)] + ([streamed] if streamed else [])
    temperature = fit_temperature(*pooled_halves(*sets))
    calibrated = apply_temperature(proba, temperature)
    confidence, right = top_label(calibrated, truth)
    threshold = min_confidence(confidence, share)
    kept = confidence >= threshold
    abstention = {
        "share": share,
        "min_confidence": threshold,
        "abstained": float(1.0 - kept.mean()),
        "accuracy_all": float(right.mean()),
        "accuracy_kept": float(right[kept].mean()),
    }
    coverage = coverage_table(calibrated, truth)
    return Calibration(temperature, summary(proba, truth), summary(calibrated, truth), abstention, coverage, len(truth))


def pooled_oof(
    probas: Sequence[np.ndarray], y_true: Sequence[str], classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Every fold's test probabilities stacked, and the true labels as their column indices."""
    index = {label: i for i, label in enumerate(classes)}
    return np.concatenate(probas), np.array([index[label] for label in y_true])


def pooled_halves(*sets: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sets of (probabilities, truth) stacked, with weights that give each set the same total."""
    weight = np.concatenate([np.full(len(truth), 1.0 / len(truth)) for _, truth in sets])
    return np.concatenate([proba for proba, _ in sets]), np.concatenate([truth for _, truth in sets]), weight


def intensity_head() -> LogisticRegression:
    return LogisticRegression(C=INTENSITY_C, max_iter=2000)


def fit_intensity(standardised: np.ndarray, strong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head's ``intensity_coef`` (features,) and ``intensity_intercept`` (1,) on rows as the
    network's first layer takes them."""
    head = intensity_head().fit(standardised, strong)
    return head.coef_[0].astype(np.float64), head.intercept_.astype(np.float64)


def intensity_folds(
    X: np.ndarray, strong: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]], neutral: np.ndarray
) -> dict[str, Any]:
    """The head under protocol (b): per fold, a scaler and the head fitted on the training rows (the
    scaler is the one the fold's network would have), accuracy and ROC AUC on the held-out actors;
    with ``neutral`` rows (always normal, so easy), the AUC without them too."""
    scores: dict[str, list[float]] = {"accuracy": [], "roc_auc": [], "roc_auc_without_neutral": []}
    for train, test in splits:
        scaler = StandardScaler().fit(X[train])
        head = intensity_head().fit(scaler.transform(X[train]), strong[train])
        p = head.predict_proba(scaler.transform(X[test]))[:, 1]
        scores["accuracy"].append(float(np.mean((p > 0.5) == strong[test])))
        scores["roc_auc"].append(float(roc_auc_score(strong[test], p)))
        if neutral[test].any():
            emotional = ~neutral[test]
            scores["roc_auc_without_neutral"].append(float(roc_auc_score(strong[test][emotional], p[emotional])))
    return {
        **{
            key: {"mean": float(np.mean(values)), "sd": float(np.std(values)), "scores": values}
            for key, values in scores.items()
            if values
        },
        "strong_share": float(np.mean(strong)),
    }
