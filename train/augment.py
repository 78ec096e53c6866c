"""Speed perturbation of training audio (Ko et al. 2015, as in Kaldi recipes).

Only training rows are augmented; every score is measured on original clips.
"""

from __future__ import annotations

import numpy as np
import soxr

#: Speed factors of the shipped model's extra training copies.
SPEEDS = (0.9, 0.95, 1.05, 1.1)


def speed_perturb(samples: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """Play ``samples`` ``factor`` times faster (tempo and pitch together), at the same rate."""
    return soxr.resample(samples, round(rate * factor), rate).astype(np.float32, copy=False)
