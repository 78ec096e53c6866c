"""Calibration, abstention and the intensity head, fitted on out-of-fold predictions: the pure math.

Temperature scaling divides the network's output logits by T, fitted to minimise the negative
log-likelihood of held-out predictions: the top label never changes, only how sure the model says it
is. T is one number times a function of a few of the utterance's raw voice statistics
(``COVARIATES``, `ser_stream.model.calibration`), so that an utterance heard among other voices or in
noise is said to be as uncertain as it is. Serving applies it (`ser_stream.model.calibration`); the
abstention threshold is a quantile of the calibrated confidences; the intensity head is a logistic
regression on the standardised input of the network's first layer (`ser_stream.model.intensity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from ser_stream.model.calibration import Calibration as Fitted
from ser_stream.voice import VOICE_STATISTICS

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
#: The voice statistics the temperature follows: what other voices and noise change in an utterance
#: (its harmonics-to-noise ratio and its spread, the swing of its level, the share of it voiced, its
#: pitch's spread, jitter and shimmer) whatever the emotion.
COVARIATES = (
    "hnr_mean_db",
    "hnr_std_db",
    "level_std_db",
    "voiced_share",
    "pitch_std_st",
    "jitter_mean",
    "shimmer_mean_db",
)
#: L2 penalty on the covariates' weights (per standardised unit): keeps T tame where they tell little.
COVARIATE_PENALTY = 1e-2
#: RAVDESS's intensity codes (the fourth field of a file name).
NORMAL, STRONG = 1, 2
#: The intensity head's regularisation (scikit-learn's default strength), not tuned.
INTENSITY_C = 1.0


def logits_of(proba: np.ndarray) -> np.ndarray:
    """Logits up to a constant per row, which softmax ignores: log p (softmax(log p / T) = softmax(z / T))."""
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), SMALLEST, None))


def apply_temperature(proba: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """The probabilities as a bundle calibrated with ``temperature`` (one, or one per row) gives them."""
    return np.exp(log_softmax(logits_of(proba) / np.reshape(temperature, (-1, 1)), axis=1))


def voice_of(X: np.ndarray) -> np.ndarray:
    """The voice statistics of rows of the shipped features, which end with them."""
    return X[..., -len(VOICE_STATISTICS) :]


def covariates_of(voice: np.ndarray) -> np.ndarray:
    """The ``COVARIATES`` of rows of voice statistics."""
    return voice[..., [VOICE_STATISTICS.index(name) for name in COVARIATES]]


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


def fit_calibration(
    proba: np.ndarray, truth: np.ndarray, voice: np.ndarray, weight: np.ndarray, columns: np.ndarray
) -> Fitted:
    """T(x) = T0 · exp(w · standardised covariates of x) minimising the ``weight``-ed NLL (plus
    ``COVARIATE_PENALTY`` · |w|²) of ``softmax(log proba / T(x))``; ``voice``: each row's voice statistics.
    The covariates are standardised by their weighted mean and spread, so T0 is T at the mean; ``columns``:
    where they sit in the feature vector (`ser_stream.model.calibration.voice_columns`)."""
    logits, rows = logits_of(proba), np.arange(len(truth))
    weight = np.asarray(weight) / np.sum(weight)
    covariates = covariates_of(np.asarray(voice, dtype=np.float64))
    mean = weight @ covariates
    scale = np.sqrt(weight @ (covariates - mean) ** 2)
    scale[scale == 0] = 1.0
    z = (covariates - mean) / scale

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        log_t = theta[0] + z @ theta[1:]
        scaled = logits / np.exp(log_t)[:, None]
        log_p = log_softmax(scaled, axis=1)
        p = np.exp(log_p)
        value = -np.sum(weight * log_p[rows, truth]) + COVARIATE_PENALTY * theta[1:] @ theta[1:]
        # d(-log p_truth) / d(log T) = s_truth - sum_k p_k s_k, s the scaled logits
        d_log_t = weight * (scaled[rows, truth] - np.sum(p * scaled, axis=1))
        gradient = np.concatenate([[d_log_t.sum()], z.T @ d_log_t + 2 * COVARIATE_PENALTY * theta[1:]])
        return float(value), gradient

    start = np.zeros(1 + len(COVARIATES))
    bounds = [LOG_T_BOUNDS] + [(None, None)] * len(COVARIATES)
    theta = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds).x
    return Fitted(float(np.exp(theta[0])), COVARIATES, np.asarray(columns), mean, scale, theta[1:])


def temperatures(fitted: Fitted, voice: np.ndarray) -> np.ndarray:
    """T of each row of voice statistics, as serving computes it."""
    return fitted.temperature_of(covariates_of(np.asarray(voice, dtype=np.float64)))


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


#: A set of out-of-fold predictions: probabilities, truth (column indices) and each row's voice statistics.
Predictions = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Calibration:
    """A calibration fitted on out-of-fold probabilities, with what it did to them."""

    fitted: Fitted  # what the bundle carries
    constant: float  # the one temperature fitted on the same predictions, for comparison
    before: dict[str, Any]  # summary(): ece, nll, accuracy, mean confidence, reliability
    after: dict[str, Any]
    abstention: dict[str, float]  # share, min_confidence, and what abstaining at it does to the predictions
    coverage: list[dict]  # coverage_table of the calibrated probabilities
    n: int

    @property
    def temperature(self) -> float:
        return self.fitted.temperature

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.fitted.section(),
            "constant_temperature": self.constant,
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
    held_out: Predictions, others: Sequence[Predictions], columns: np.ndarray, share: float = ABSTAIN_SHARE
) -> Calibration:
    """The calibration, abstention threshold and the before/after figures, from out-of-fold predictions.

    ``held_out``: protocol (b)'s; ``others``: more sets as a device meets them (protocol (c)'s streams,
    protocol (d)'s rooms: each utterance classified with the statistics heard before it), each weighing
    as much as ``held_out`` in the fit. The threshold and the figures are those of ``held_out``.
    """
    proba, truth, voice = held_out
    sets = [held_out, *others]
    weight = np.concatenate([np.full(len(t), 1.0 / len(t)) for _, t, _ in sets])
    pooled_proba, pooled_truth, pooled_voice = (np.concatenate(parts) for parts in zip(*sets, strict=True))
    fitted = fit_calibration(pooled_proba, pooled_truth, pooled_voice, weight, columns)
    constant = fit_temperature(pooled_proba, pooled_truth, weight)
    calibrated = apply_temperature(proba, temperatures(fitted, voice))
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
    before, after = summary(proba, truth), summary(calibrated, truth)
    return Calibration(fitted, constant, before, after, abstention, coverage, len(truth))


def pooled_oof(
    probas: Sequence[np.ndarray], y_true: Sequence[str], classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Every fold's test probabilities stacked, and the true labels as their column indices."""
    index = {label: i for i, label in enumerate(classes)}
    return np.concatenate(probas), np.array([index[label] for label in y_true])


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
