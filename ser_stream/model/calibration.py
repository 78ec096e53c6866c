"""The calibration a bundle carries: how sure the model may say it is, given how the utterance sounds.

Temperature scaling divides the logits by T before the softmax (the top label never changes, only
its confidence). One T fitted on quiet rooms leaves the model as sure of itself among other voices
as in a quiet room, where it is right far less often; the utterance itself says much of what makes
it hard: other voices and noise lower its harmonics-to-noise ratio, fill its pauses with voicing,
flatten its level. So a bundle may make T a function of a few of the utterance's raw (unadapted)
voice statistics, ``covariates``:

    T(x) = temperature · exp(Σ wᵢ (xᵢ − meanᵢ) / scaleᵢ)

bounded to ``TEMPERATURE_BOUNDS``; without covariates T is the one number, as before. Numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..features import FeatureParams
from ..voice import VOICE_STATISTICS

#: The one family of calibration this version applies.
METHOD = "temperature"
#: T is kept within these: the network's confidence is neither sharpened nor flattened beyond them.
TEMPERATURE_BOUNDS = (1.0 / 50.0, 50.0)
#: The covariates' fields in a bundle's ``calibration`` section.
COVARIATE_FIELDS = ("features", "mean", "scale", "weights")


@dataclass(frozen=True)
class Calibration:
    """``temperature`` at the covariates' means (or everywhere, without covariates), and how T moves with them."""

    temperature: float = 1.0
    names: tuple[str, ...] = ()  # voice statistics (``ser_stream.voice.VOICE_STATISTICS``)
    columns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # their places in the features
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def temperature_for(self, features: np.ndarray) -> float:
        """T for one utterance's raw feature vector (before any adapter)."""
        if not self.names:
            return self.temperature
        return float(self.temperature_of(np.asarray(features, dtype=np.float64).reshape(-1)[self.columns]))

    def temperature_of(self, covariates: np.ndarray) -> np.ndarray:
        """T for rows of the covariates' values (..., len(names)), as `temperature_for` reads them."""
        shift = ((np.asarray(covariates, dtype=np.float64) - self.mean) / self.scale) @ self.weights
        return np.clip(self.temperature * np.exp(shift), *TEMPERATURE_BOUNDS)

    def section(self) -> dict[str, Any]:
        """The manifest's ``calibration`` numbers (the caller adds what it was fitted on)."""
        section: dict[str, Any] = {"method": METHOD, "temperature": self.temperature}
        if self.names:
            section["covariates"] = {
                "features": list(self.names),
                "mean": self.mean.tolist(),
                "scale": self.scale.tolist(),
                "weights": self.weights.tolist(),
            }
        return section

    @classmethod
    def from_section(cls, section: Mapping[str, Any], params: FeatureParams) -> Calibration:
        """The calibration a bundle's section describes for features of ``params``; ValueError saying what
        does not fit."""
        temperature = section.get("temperature")
        if section.get("method") != METHOD or isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise ValueError(f"calibration {dict(section)} is not one this version applies ({METHOD})")
        if not 0 < temperature < float("inf"):
            raise ValueError(f"calibration temperature must be a positive number, got {temperature!r}")
        covariates = section.get("covariates")
        if covariates is None:
            return cls(float(temperature))
        if not isinstance(covariates, Mapping) or any(key not in covariates for key in COVARIATE_FIELDS):
            raise ValueError(f"calibration covariates need {', '.join(COVARIATE_FIELDS)}")
        names = covariates["features"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError("calibration covariates' features must be a list of names")
        try:
            numbers = [np.asarray(covariates[key], dtype=np.float64) for key in COVARIATE_FIELDS[1:]]
        except (TypeError, ValueError):
            raise ValueError("calibration covariates' mean, scale and weights must be lists of numbers") from None
        if any(a.shape != (len(names),) or not np.isfinite(a).all() for a in numbers) or not (numbers[1] > 0).all():
            raise ValueError(f"calibration covariates need {len(names)} finite numbers each, the scales positive")
        return cls(float(temperature), tuple(names), voice_columns(params, names), *numbers)


def voice_columns(params: FeatureParams, names: Sequence[str]) -> np.ndarray:
    """Where the voice statistics ``names`` sit in a feature vector of ``params`` (they come last); ValueError
    when the features have none or a name is not one."""
    unknown = [name for name in names if name not in VOICE_STATISTICS]
    if not params.voice or unknown:
        raise ValueError(f"the features have no voice statistics {unknown or list(names)}")
    first = params.n_features - len(VOICE_STATISTICS)
    return np.array([first + VOICE_STATISTICS.index(name) for name in names])
