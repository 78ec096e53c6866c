"""The voices and the room a device hears: running feature statistics, blended with a population prior.

A model trained on some voices meets others, through another microphone. Standardising each
voice's features by that voice's own statistics removes much of the difference, and needs no
labels. `VoiceAdapter` keeps those statistics for whatever the device has heard, one update per
utterance, and hands the classifier features standardised by them.

- **Forgetting**: past utterances are weighted by ``(1 - 1/horizon)`` per utterance since, so the
  statistics follow a new owner or a new room: after a change, the new voice holds half of the
  weight after about ``0.69 · horizon`` utterances and 90 % after ``2.3 · horizon``.
- **Prior**: the bundle's population mean and within-voice variance count as ``prior_weight``
  pseudo-utterances, so a cold start (nothing heard) is exactly the prior, and the first few
  utterances move the statistics only part of the way.
- **Floor**: the variance never drops below ``var_floor`` times the prior's, so a feature that is
  constant for this voice (a silent band) is not divided by zero.

The update is West's weighted form of Welford's algorithm (numerically stable, no sum of squares).
Training (`python -m train`, protocol (c)) and serving use this one class. Numpy only, no I/O:
`state()` and `from_state()` give plain arrays and numbers for whoever persists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Defaults of a bundle's ``adaptation`` section (training chooses and records its own).
DEFAULT_PRIOR_WEIGHT = 4.0
DEFAULT_HORIZON = 50.0
DEFAULT_VAR_FLOOR = 0.05
#: Below any real feature variance: keeps a prior of exactly constant features finite.
ABSOLUTE_VAR_FLOOR = 1e-12


@dataclass(frozen=True)
class AdapterPrior:
    """The population statistics a bundle carries and how much they count."""

    mean: np.ndarray  # per feature
    var: np.ndarray  # per feature: the mean within-voice variance of the training voices
    weight: float = DEFAULT_PRIOR_WEIGHT  # in pseudo-utterances
    horizon: float = DEFAULT_HORIZON  # utterances: the forgetting time constant
    var_floor: float = DEFAULT_VAR_FLOOR  # fraction of the prior's variance

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        var = np.asarray(self.var, dtype=np.float64)
        if mean.ndim != 1 or mean.shape != var.shape:
            raise ValueError(f"prior mean and variance must be vectors of one length, got {mean.shape}, {var.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(var >= 0)):
            raise ValueError("prior mean and variance must be finite, the variance non-negative")
        if not (self.weight >= 0 and self.horizon >= 1 and 0 < self.var_floor <= 1):
            raise ValueError(
                f"need prior weight ≥ 0, horizon ≥ 1 and 0 < var_floor ≤ 1, "
                f"got {self.weight}, {self.horizon}, {self.var_floor}"
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "var", var)

    @property
    def n_features(self) -> int:
        return self.mean.size

    @property
    def floor(self) -> np.ndarray:
        return np.maximum(self.var_floor * self.var, ABSOLUTE_VAR_FLOOR)

    def settings(self) -> dict[str, float]:
        """The numbers of a manifest's ``adaptation`` section (the arrays travel separately)."""
        return {"prior_weight": self.weight, "horizon": self.horizon, "var_floor": self.var_floor}

    @classmethod
    def from_section(cls, section: Mapping[str, Any], mean: np.ndarray, var: np.ndarray) -> AdapterPrior:
        """The prior a bundle's ``adaptation`` section (`settings`) and arrays describe; ValueError if they do not."""
        try:
            numbers = [float(section[key]) for key in ("prior_weight", "horizon", "var_floor")]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"adaptation section {dict(section)!r} lacks or garbles {error}") from None
        return cls(mean, var, *numbers)


class VoiceAdapter:
    """Running per-feature mean and variance of the utterances heard, blended with a prior.

    With ``voices``, the statistics of that many voices heard in lockstep, one utterance each per
    update (rows): training replays many orders of a stream so, each voice's numbers exactly those of
    an adapter of its own, for a Python step per position instead of per utterance.
    """

    def __init__(self, prior: AdapterPrior, voices: int | None = None) -> None:
        self.prior = prior
        self._keep = 1.0 - 1.0 / prior.horizon
        self.heard = 0  # utterances ever added (the events' ``adapted_on``)
        self._weight = 0.0  # their forgetting-weighted count: tends to ``horizon``
        shape = (prior.n_features,) if voices is None else (voices, prior.n_features)
        self._mean = np.zeros(shape)
        self._sq_dev = np.zeros(shape)  # weighted sum of squared deviations from _mean

    def update(self, features: np.ndarray) -> None:
        """Add one utterance's features (call once per utterance, after or before classifying it); with
        ``voices``, a row of one utterance of each voice."""
        x = np.asarray(features, dtype=np.float64)
        if x.size != self._mean.size or not np.all(np.isfinite(x)):
            raise ValueError(f"need {self._mean.size} finite features, got {x.size}")
        x = x.reshape(self._mean.shape)
        self._weight = self._keep * self._weight + 1.0
        self._sq_dev *= self._keep
        delta = x - self._mean
        self._mean += delta / self._weight
        self._sq_dev += delta * (x - self._mean)
        self.heard += 1

    @property
    def mean(self) -> np.ndarray:
        """The blend: the prior counts ``prior.weight``, what was heard its forgetting-weighted count."""
        k, w = self.prior.weight, self._weight
        if k + w == 0:
            return self.prior.mean.copy()
        return (k * self.prior.mean + w * self._mean) / (k + w)

    @property
    def var(self) -> np.ndarray:
        k, w = self.prior.weight, self._weight
        blended = self.prior.var.copy() if k + w == 0 else (k * self.prior.var + self._sq_dev) / (k + w)
        return np.maximum(blended, self.prior.floor)

    def normalise(self, features: np.ndarray) -> np.ndarray:
        """``features`` (one vector, or rows) standardised by the current statistics: what the classifier sees."""
        return (np.asarray(features, dtype=np.float64) - self.mean) / np.sqrt(self.var)

    def hear(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` (utterances, in the order heard) each standardised by the statistics of those before
        it, then added to them: a stream as a device classifies it."""
        out = np.empty(np.shape(rows), dtype=np.float64)
        for i, row in enumerate(rows):
            out[i] = self.normalise(row)
            self.update(row)
        return out

    def state(self) -> dict[str, np.ndarray | float | int]:
        """Everything that changes as utterances are heard (the prior belongs to the bundle)."""
        return {"heard": self.heard, "weight": self._weight, "mean": self._mean.copy(), "sq_dev": self._sq_dev.copy()}

    @classmethod
    def from_state(cls, prior: AdapterPrior, state: dict[str, np.ndarray | float | int]) -> VoiceAdapter:
        """An adapter as `state()` left it; ValueError when the state does not fit ``prior``."""
        adapter = cls(prior)
        mean = np.asarray(state["mean"], dtype=np.float64)
        sq_dev = np.asarray(state["sq_dev"], dtype=np.float64)
        weight, heard = float(state["weight"]), int(state["heard"])
        if mean.shape != (prior.n_features,) or sq_dev.shape != mean.shape:
            raise ValueError(f"state has {mean.shape} statistics, the prior {prior.n_features} features")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(sq_dev)) and np.all(sq_dev >= 0)):
            raise ValueError("state statistics must be finite, the squared deviations non-negative")
        if not (0 <= weight <= prior.horizon and heard >= 0):
            raise ValueError(f"state weight {weight} is outside 0 … {prior.horizon}, or heard {heard} is negative")
        adapter.heard, adapter._weight, adapter._mean, adapter._sq_dev = heard, weight, mean, sq_dev
        return adapter
