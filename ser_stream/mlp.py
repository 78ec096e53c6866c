"""scikit-learn's MLP pipelines served by numpy alone: read from the bundle's pickle, predicted as scikit-learn does.

Importing scikit-learn costs about 0.6 s and 90 MB (scipy.sparse, scipy.stats, ...) for what is,
at prediction time, a scaling and two matrix products.  The unpickler here reads the classes
`python -m train` writes (Pipeline, StandardScaler, MLPClassifier and what it keeps) as
plain bags of their pickled attributes, without importing scikit-learn, and `LeanMLP` runs
scikit-learn's forward pass on those very weights.  A bundle holding anything else is left to
joblib and scikit-learn (`lean_load` returns None).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from joblib.numpy_pickle import NumpyUnpickler

try:  # joblib >= 1.5 opens compressed files with it; private, so a joblib that moves it means no lean path
    from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap
except ImportError:  # pragma: no cover - depends on the installed joblib
    _validate_fileobject_and_memmap = None

#: The scikit-learn classes read without scikit-learn (by name: their modules are private and move).
LEAN_CLASSES = frozenset(
    {"Pipeline", "StandardScaler", "MLPClassifier", "LabelBinarizer", "AdamOptimizer", "SGDOptimizer"}
)


def _identity(x: np.ndarray) -> None:
    pass


def _relu(x: np.ndarray) -> None:
    np.maximum(x, 0, out=x)


def _tanh(x: np.ndarray) -> None:
    np.tanh(x, out=x)


def _logistic(x: np.ndarray) -> None:
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += 1
    np.reciprocal(x, out=x)


def _softmax(x: np.ndarray) -> None:
    np.exp(x - x.max(axis=1, keepdims=True), out=x)
    x /= x.sum(axis=1, keepdims=True)


#: scikit-learn's in-place activations (sklearn.neural_network._base.ACTIVATIONS).
ACTIVATIONS: dict[str, Callable[[np.ndarray], None]] = {
    "identity": _identity,
    "relu": _relu,
    "tanh": _tanh,
    "logistic": _logistic,
    "softmax": _softmax,
}


class _Pickled:
    """A scikit-learn object's pickled attributes, under its class name."""


class _NeedsScikitLearn(Exception):
    """The pickle holds a scikit-learn class this module does not read."""


@functools.cache
def _stand_in(name: str) -> type:
    return type(name, (_Pickled,), {})


class _LeanUnpickler(NumpyUnpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] != "sklearn":
            return super().find_class(module, name)
        if name not in LEAN_CLASSES:
            raise _NeedsScikitLearn(f"{module}.{name}")
        return _stand_in(name)


@dataclass(frozen=True)
class LeanMLP:
    """StandardScaler steps, then an MLPClassifier: `predict_proba` as scikit-learn computes it."""

    classes_: np.ndarray
    scalers: tuple[tuple[np.ndarray | None, np.ndarray | None], ...]  # (mean or None, scale or None) each
    coefs: tuple[np.ndarray, ...]
    intercepts: tuple[np.ndarray, ...]
    activation: str
    out_activation: str

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(samples, classes) probabilities, columns in ``classes_`` order."""
        x = np.array(features, dtype=np.float64, ndmin=2)  # a copy: scaled in place
        for mean, scale in self.scalers:
            if mean is not None:
                x -= mean
            if scale is not None:
                x /= scale
        last = len(self.coefs) - 1
        for layer, (coef, intercept) in enumerate(zip(self.coefs, self.intercepts, strict=True)):
            x = x @ coef
            x += intercept
            ACTIVATIONS[self.activation if layer < last else self.out_activation](x)
        if x.shape[1] == 1:  # binary: the one output is the second class's probability
            return np.hstack([1 - x, x])
        return x


def _from_pickled(estimator: Any) -> LeanMLP | None:
    """The forward pass of [StandardScaler, ...] + fitted MLPClassifier, else None."""
    if not isinstance(estimator, _Pickled):
        return None
    steps = [step for _, step in estimator.steps] if type(estimator).__name__ == "Pipeline" else [estimator]
    *scalers, mlp = steps
    if type(mlp).__name__ != "MLPClassifier" or any(type(s).__name__ != "StandardScaler" for s in scalers):
        return None
    if not hasattr(mlp, "coefs_") or {mlp.activation, mlp.out_activation_} - set(ACTIVATIONS):
        return None
    return LeanMLP(
        classes_=np.asarray(mlp.classes_),
        scalers=tuple((s.mean_ if s.with_mean else None, s.scale_ if s.with_std else None) for s in scalers),
        coefs=tuple(mlp.coefs_),
        intercepts=tuple(mlp.intercepts_),
        activation=mlp.activation,
        out_activation=mlp.out_activation_,
    )


def lean_load(path: Path) -> LeanMLP | None:
    """The joblib file's MLP pipeline without scikit-learn, or None if it holds anything else.

    Like any unpickling this runs what the file says: call it on verified files only.
    """
    if _validate_fileobject_and_memmap is None:
        return None
    with open(path, "rb") as handle, _validate_fileobject_and_memmap(handle, str(path)) as (stream, _):
        try:
            estimator = _LeanUnpickler(str(path), stream, ensure_native_byte_order=True).load()
        except _NeedsScikitLearn:
            return None
    return _from_pickled(estimator)
