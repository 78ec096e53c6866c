"""The MLP's forward pass in numpy: a StandardScaler, then scikit-learn's MLPClassifier, from plain arrays.

At prediction time a scaled MLP is a subtraction, a division and a few matrix products; serving
runs them here on the bundle's arrays, so it needs neither scikit-learn (0.6 s and 90 MB to import)
nor a pickle. The arithmetic is scikit-learn's, in its order, so the probabilities equal
``predict_proba``'s (the tests hold them to 1e-9).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


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


#: scikit-learn's in-place hidden-layer activations (sklearn.neural_network._base.ACTIVATIONS).
ACTIVATIONS: dict[str, Callable[[np.ndarray], None]] = {
    "identity": _identity,
    "relu": _relu,
    "tanh": _tanh,
    "logistic": _logistic,
}
#: A classifier's output activations: softmax over the classes, or one logistic unit for two classes.
OUTPUT_ACTIVATIONS: dict[str, Callable[[np.ndarray], None]] = {"softmax": _softmax, "logistic": _logistic}
#: More weight layers than a manifest may name: a bound, not a design limit (the shipped MLP has 2).
MAX_LAYERS = 64


def array_names(structure: Any) -> set[str]:
    """The arrays the network a manifest's ``network`` section describes is stored as; ValueError
    saying what is wrong with the section."""
    if not isinstance(structure, dict):
        raise ValueError("its network section is not an object")
    activation, out_activation, layers = (structure.get(k) for k in ("activation", "out_activation", "layers"))
    if activation not in ACTIVATIONS or out_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            f"network activations {activation!r} → {out_activation!r} are not among "
            f"{sorted(ACTIVATIONS)} → {sorted(OUTPUT_ACTIVATIONS)}"
        )
    if not isinstance(layers, int) or isinstance(layers, bool) or not 1 <= layers <= MAX_LAYERS:
        raise ValueError(f"network layers must be a whole number from 1 to {MAX_LAYERS}, got {layers!r}")
    weights = {f"{kind}_{i}" for kind in ("coef", "intercept") for i in range(layers)}
    return {"labels", "scaler_mean", "scaler_scale", *weights}


@dataclass(frozen=True)
class MLP:
    """StandardScaler, then an MLPClassifier: `predict_proba` as scikit-learn computes it.

    ``temperature`` divides the output layer's logits before its activation (softmax(z / T)):
    a calibration fitted after training; 1 leaves the network's probabilities as they are.
    """

    classes: np.ndarray  # labels in the order of the output columns
    mean: np.ndarray
    scale: np.ndarray
    coefs: tuple[np.ndarray, ...]
    intercepts: tuple[np.ndarray, ...]
    activation: str
    out_activation: str
    temperature: float = 1.0

    @property
    def n_features(self) -> int:
        return self.mean.shape[0]

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """(samples, features) as the network's first layer takes them: the scaler applied, to a copy."""
        x = np.array(features, dtype=np.float64, ndmin=2)
        x -= self.mean
        x /= self.scale
        return x

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(samples, classes) probabilities, columns in ``classes`` order."""
        x = self.standardise(features)
        last = len(self.coefs) - 1
        for layer, (coef, intercept) in enumerate(zip(self.coefs, self.intercepts, strict=True)):
            x = x @ coef
            x += intercept
            if layer < last:
                ACTIVATIONS[self.activation](x)
        x /= self.temperature
        OUTPUT_ACTIVATIONS[self.out_activation](x)
        if x.shape[1] == 1:  # two classes: the one output is the second class's probability
            return np.hstack([1 - x, x])
        return x

    def structure(self) -> dict[str, Any]:
        """What the arrays do not say, for the manifest's ``network`` section."""
        return {"activation": self.activation, "out_activation": self.out_activation, "layers": len(self.coefs)}

    def arrays(self) -> dict[str, np.ndarray]:
        """Name → array, as the bundle stores them (`array_names`)."""
        weights = {f"coef_{i}": c for i, c in enumerate(self.coefs)}
        weights.update({f"intercept_{i}": b for i, b in enumerate(self.intercepts)})
        return {"labels": self.classes, "scaler_mean": self.mean, "scaler_scale": self.scale, **weights}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], structure: dict[str, Any], temperature: float = 1.0) -> MLP:
        """The network of a bundle's arrays (all of `array_names`) and ``network`` section; ValueError
        saying what does not fit."""
        layers = structure["layers"]
        mlp = cls(
            classes=arrays["labels"],
            mean=arrays["scaler_mean"],
            scale=arrays["scaler_scale"],
            coefs=tuple(arrays[f"coef_{i}"] for i in range(layers)),
            intercepts=tuple(arrays[f"intercept_{i}"] for i in range(layers)),
            activation=structure["activation"],
            out_activation=structure["out_activation"],
            temperature=temperature,
        )
        mlp._check()
        return mlp

    def _check(self) -> None:
        """Shapes that chain, numbers that are finite, labels that are text: ValueError otherwise."""
        if self.classes.ndim != 1 or self.classes.dtype.kind != "U" or len(set(self.classes)) != self.classes.size:
            raise ValueError("its labels are not distinct text (a 1-D unicode array)")
        numbers = {"scaler_mean": self.mean, "scaler_scale": self.scale, **self.arrays()}
        del numbers["labels"]
        for name, array in numbers.items():
            if array.dtype.kind != "f" or not np.isfinite(array).all():
                raise ValueError(f"its array {name} is not finite floating-point numbers")
        width = self.mean.shape[0] if self.mean.ndim == 1 else -1
        if self.scale.shape != (width,) or width < 1 or not (self.scale > 0).all():
            raise ValueError("its scaler's mean and scale are not two vectors of one length, the scale positive")
        for i, (coef, intercept) in enumerate(zip(self.coefs, self.intercepts, strict=True)):
            if coef.ndim != 2 or coef.shape[0] != width or intercept.shape != (coef.shape[1],):
                raise ValueError(f"its layer {i} (coef_{i}, intercept_{i}) does not take the previous one's output")
            width = coef.shape[1]
        outputs = 1 if self.out_activation == "logistic" else self.classes.size
        if width != outputs or (self.out_activation == "logistic" and self.classes.size != 2):
            raise ValueError(
                f"its output layer has {width} units for {self.classes.size} labels ({self.out_activation})"
            )

    @classmethod
    def from_estimator(cls, estimator: Any) -> MLP:
        """The arrays of a fitted scikit-learn ``Pipeline([StandardScaler, MLPClassifier])`` or bare
        MLPClassifier, read from their fitted attributes (no scikit-learn import needed)."""
        steps = [step for _, step in estimator.steps] if hasattr(estimator, "steps") else [estimator]
        *scalers, mlp = steps
        names = [type(step).__name__ for step in steps]
        if type(mlp).__name__ != "MLPClassifier" or len(scalers) > 1 or any(n != "StandardScaler" for n in names[:-1]):
            raise TypeError(f"a bundle holds a StandardScaler and an MLPClassifier, not {' → '.join(names)}")
        n_features = mlp.coefs_[0].shape[0]
        mean, scale = np.zeros(n_features), np.ones(n_features)  # subtracting 0 and dividing by 1 are exact
        if scalers:
            mean = scalers[0].mean_ if scalers[0].with_mean else mean
            scale = scalers[0].scale_ if scalers[0].with_std else scale
        network = cls(
            classes=np.asarray(mlp.classes_).astype(str),
            mean=np.asarray(mean, dtype=np.float64),
            scale=np.asarray(scale, dtype=np.float64),
            coefs=tuple(mlp.coefs_),
            intercepts=tuple(mlp.intercepts_),
            activation=mlp.activation,
            out_activation=mlp.out_activation_,
        )
        network._check()
        return network
