"""The intensity head: how strongly the emotion is expressed, as the probability of "strong".

RAVDESS labels every clip normal or strong.  A bundle may carry a second, small head for it beside
the emotion network: a logistic regression on the same input the network's first layer takes (the
features, standardised by the adapter if the bundle adapts, then by the bundle's scaler), stored as
two extra arrays.  Numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The extra arrays of a bundle's ``intensity`` section: weights (features,) and bias (1,).
INTENSITY_ARRAYS = ("intensity_coef", "intensity_intercept")
#: The one head this version computes.
METHOD = "logistic"


@dataclass(frozen=True)
class IntensityHead:
    """P(strong) = 1 / (1 + exp(-(x · coef + intercept))), x as the network's first layer takes it."""

    coef: np.ndarray
    intercept: float

    def probability(self, standardised: np.ndarray) -> float:
        z = float(np.asarray(standardised, dtype=np.float64).reshape(-1) @ self.coef) + self.intercept
        return float(np.exp(-np.logaddexp(0.0, -z)))  # the logistic function, without overflow

    @classmethod
    def from_section(
        cls, section: Mapping[str, Any], arrays: Mapping[str, np.ndarray], n_features: int
    ) -> IntensityHead:
        """The head a bundle's ``intensity`` section and extra arrays describe; ValueError saying what does not fit."""
        if section.get("method") != METHOD:
            raise ValueError(f"intensity method {section.get('method')!r} is not one this version computes ({METHOD})")
        missing = [name for name in INTENSITY_ARRAYS if name not in arrays]
        if missing:
            raise ValueError(f"its intensity section needs the arrays {', '.join(missing)}")
        coef, intercept = (np.asarray(arrays[name]) for name in INTENSITY_ARRAYS)
        if coef.shape != (n_features,) or intercept.size != 1:
            raise ValueError(
                f"intensity arrays of shapes {coef.shape} and {intercept.shape} do not fit {n_features} features"
            )
        if coef.dtype.kind != "f" or intercept.dtype.kind != "f" or not np.isfinite([*coef, *intercept.flat]).all():
            raise ValueError("intensity arrays are not finite floating-point numbers")
        return cls(coef.astype(np.float64), float(intercept.reshape(-1)[0]))
