"""The MLP's forward pass in numpy: a StandardScaler, then scikit-learn's MLPClassifier, from plain arrays.

At prediction time a scaled MLP is a subtraction, a division and a few matrix products; serving
runs them here on the bundle's arrays, so it needs neither scikit-learn (0.6 s and 90 MB to import)
nor a pickle. The arithmetic is scikit-learn's, in its order, so the probabilities equal
``predict_proba``'s (the tests hold them to 1e-9).

A bundle may hold several networks of one shape trained from different random seeds (``members``):
each layer's weights stacked on a first axis, one batched product per layer, and the members'
probabilities averaged (``train.experiments.SeedEnsemble``, whose probabilities these equal).
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
    np.exp(x - x.max(axis=-1, keepdims=True), out=x)
    x /= x.sum(axis=-1, keepdims=True)


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
#: More networks than a manifest may name: a bound, not a design limit (the shipped bundles hold 3).
MAX_MEMBERS = 16


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
    members = structure.get("members", 1)
    if not isinstance(members, int) or isinstance(members, bool) or not 1 <= members <= MAX_MEMBERS:
        raise ValueError(f"network members must be a whole number from 1 to {MAX_MEMBERS}, got {members!r}")
    weights = {f"{kind}_{i}" for kind in ("coef", "intercept") for i in range(layers)}
    return {"labels", "scaler_mean", "scaler_scale", *weights}


@dataclass(frozen=True)
class MLP:
    """StandardScaler, then one or more MLPClassifiers of one shape: `predict_proba` as scikit-learn
    computes it, averaged over the networks.

    Each of ``coefs`` is (members, inputs, outputs), each of ``intercepts`` (members, outputs).
    ``temperature`` T calibrates the averaged probabilities p as softmax(log p / T), fitted after
    training (`train.calibration`); for one network that is softmax(z / T) of its logits z. 1 leaves
    the probabilities as they are.
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

    @property
    def members(self) -> int:
        """How many networks' probabilities are averaged."""
        return self.coefs[0].shape[0]

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """(samples, features) as the network's first layer takes them: the scaler applied, to a copy."""
        x = np.array(features, dtype=np.float64, ndmin=2)
        x -= self.mean
        x /= self.scale
        return x

    def predict_proba(self, features: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """(samples, classes) probabilities, columns in ``classes`` order, calibrated with ``temperature``
        (by default ``self.temperature``)."""
        temperature = self.temperature if temperature is None else temperature
        x = self.standardise(features)
        last = len(self.coefs) - 1
        for layer, (coef, intercept) in enumerate(zip(self.coefs, self.intercepts, strict=True)):
            x = np.matmul(x, coef)  # (members, samples, outputs)
            x += intercept[:, np.newaxis, :]
            if layer < last:
                ACTIVATIONS[self.activation](x)
        if self.members == 1:
            x /= temperature  # softmax(z / T), which is softmax(log p / T) for one network
        OUTPUT_ACTIVATIONS[self.out_activation](x)
        if x.shape[2] == 1:  # two classes: the one output is the second class's probability
            x = np.concatenate([1 - x, x], axis=2)
        if self.members == 1:
            return x[0]
        proba = x.mean(axis=0)
        if temperature != 1:
            proba = np.log(np.maximum(proba, np.finfo(proba.dtype).tiny)) / temperature
            _softmax(proba)
        return proba

    def structure(self) -> dict[str, Any]:
        """What the arrays do not say, for the manifest's ``network`` section."""
        structure = {"activation": self.activation, "out_activation": self.out_activation, "layers": len(self.coefs)}
        return structure | ({"members": self.members} if self.members > 1 else {})

    def arrays(self) -> dict[str, np.ndarray]:
        """Name → array, as the bundle stores them (`array_names`): one network's weights as scikit-learn
        holds them, several stacked on a first axis."""
        one = self.members == 1
        weights = {f"coef_{i}": c[0] if one else c for i, c in enumerate(self.coefs)}
        weights.update({f"intercept_{i}": b[0] if one else b for i, b in enumerate(self.intercepts)})
        return {"labels": self.classes, "scaler_mean": self.mean, "scaler_scale": self.scale, **weights}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], structure: dict[str, Any], temperature: float = 1.0) -> MLP:
        """The network of a bundle's arrays (all of `array_names`) and ``network`` section; ValueError
        saying what does not fit."""
        layers, members = structure["layers"], structure.get("members", 1)
        weights = [arrays[f"{kind}_{i}"] for kind in ("coef", "intercept") for i in range(layers)]
        dims = 3 if members > 1 else 2  # a coef's: one network's as scikit-learn's, several stacked
        ok = [w.ndim == dims - (i >= layers) and (members == 1 or w.shape[0] == members) for i, w in enumerate(weights)]
        if not all(ok):
            raise ValueError(f"its weights are not {members} network(s) of {layers} layer(s) (coef_i, intercept_i)")
        if members == 1:
            weights = [w[np.newaxis] for w in weights]
        mlp = cls(
            classes=arrays["labels"],
            mean=arrays["scaler_mean"],
            scale=arrays["scaler_scale"],
            coefs=tuple(weights[:layers]),
            intercepts=tuple(weights[layers:]),
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
        members = self.coefs[0].shape[0] if self.coefs and self.coefs[0].ndim == 3 else -1
        for i, (coef, intercept) in enumerate(zip(self.coefs, self.intercepts, strict=True)):
            if coef.shape[:2] != (members, width) or coef.ndim != 3 or intercept.shape != (members, coef.shape[2]):
                raise ValueError(f"its layer {i} (coef_{i}, intercept_{i}) does not take the previous one's output")
            width = coef.shape[2]
        outputs = 1 if self.out_activation == "logistic" else self.classes.size
        if width != outputs or (self.out_activation == "logistic" and self.classes.size != 2):
            raise ValueError(
                f"its output layer has {width} units for {self.classes.size} labels ({self.out_activation})"
            )

    @classmethod
    def from_estimator(cls, estimator: Any) -> MLP:
        """The arrays of a fitted scikit-learn ``Pipeline([StandardScaler, MLPClassifier])`` or bare
        MLPClassifier (or ``SeedEnsemble`` of them), read from their fitted attributes (no scikit-learn
        import needed)."""
        steps = [step for _, step in estimator.steps] if hasattr(estimator, "steps") else [estimator]
        *scalers, last = steps
        names = [type(step).__name__ for step in steps]
        networks = list(getattr(last, "estimators_", [last])) if names[-1] == "SeedEnsemble" else [last]
        scaled = len(scalers) <= 1 and all(n == "StandardScaler" for n in names[:-1])
        if not scaled or any(type(n).__name__ != "MLPClassifier" for n in networks):
            raise TypeError(f"a bundle holds a StandardScaler and an MLPClassifier, not {' → '.join(names)}")
        if len({(n.activation, n.out_activation_, tuple(c.shape for c in n.coefs_)) for n in networks}) != 1:
            raise TypeError("a bundle's networks are of one shape: these differ")
        mlp = networks[0]
        n_features = mlp.coefs_[0].shape[0]
        mean, scale = np.zeros(n_features), np.ones(n_features)  # subtracting 0 and dividing by 1 are exact
        if scalers:
            mean = scalers[0].mean_ if scalers[0].with_mean else mean
            scale = scalers[0].scale_ if scalers[0].with_std else scale
        network = cls(
            classes=np.asarray(mlp.classes_).astype(str),
            mean=np.asarray(mean, dtype=np.float64),
            scale=np.asarray(scale, dtype=np.float64),
            coefs=tuple(np.stack(layer) for layer in zip(*(n.coefs_ for n in networks), strict=True)),
            intercepts=tuple(np.stack(layer) for layer in zip(*(n.intercepts_ for n in networks), strict=True)),
            activation=mlp.activation,
            out_activation=mlp.out_activation_,
        )
        network._check()
        return network
