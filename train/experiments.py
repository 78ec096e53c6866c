"""The seed's experiments and ours, each scored under two protocols.

(a) ``split``: the seed's random stratified 75/25 split, repeated over seeds;
(b) ``actor``: speaker-independent GroupKFold by actor, which model selection uses
    because the product meets voices it never heard.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import ClassifierMixin, clone
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, GroupKFold, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from .dataset import Dataset

#: The DataFlair tutorial's MLP.
DATAFLAIR_PARAMS: dict[str, Any] = dict(
    alpha=0.01,
    batch_size=256,
    epsilon=1e-08,
    hidden_layer_sizes=(300,),
    learning_rate="adaptive",
    max_iter=500,
)
#: The article's GridSearchCV winner on top of DataFlair's settings.
ARTICLE_TUNED_PARAMS: dict[str, Any] = {
    **DATAFLAIR_PARAMS,
    "activation": "logistic",
    "hidden_layer_sizes": (250, 150),
}
#: The article's two-stage search: architecture first, then training settings.
ARCHITECTURE_GRID: dict[str, list[Any]] = {
    "hidden_layer_sizes": [(300,), (250, 150), (512,)],
    "activation": ["relu", "logistic", "tanh"],
    "solver": ["adam", "sgd"],
}
TRAINING_GRID: dict[str, list[Any]] = {
    "alpha": [0.01, 0.3, 1.0, 3.0],
    "batch_size": [64, 256],
    "learning_rate": ["constant", "adaptive"],
}
#: A grid small enough for tests on a handful of actors.
QUICK_GRIDS: tuple[dict[str, list[Any]], dict[str, list[Any]]] = (
    {"hidden_layer_sizes": [(64,), (32, 16)], "activation": ["relu"], "solver": ["adam"]},
    {"alpha": [0.01, 1.0]},
)
TEST_SIZE = 0.25


def mlp(params: dict[str, Any], seed: int, scaled: bool) -> ClassifierMixin:
    """An MLP with explicit params, behind a StandardScaler when ``scaled``."""
    model = MLPClassifier(**{**DATAFLAIR_PARAMS, **params}, random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("mlp", model)]) if scaled else model


def dummy(seed: int) -> ClassifierMixin:
    return DummyClassifier(strategy="stratified", random_state=seed)


@dataclass
class Score:
    """Accuracy per repeat with the pooled true and predicted labels."""

    scores: list[float]
    y_true: list[str] = field(repr=False)
    y_pred: list[str] = field(repr=False)

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def sd(self) -> float:
        return float(np.std(self.scores))

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "sd": self.sd, "scores": self.scores}


@contextmanager
def quiet_training() -> Iterator[None]:
    """MLPs stopped at max_iter and batch sizes clipped on small subsets are expected here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Got `batch_size`")
        yield


def _fit_predict(model: ClassifierMixin, X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray):
    """One fit and its test predictions; X and y are arrays, not the Dataset, so joblib's dask backend
    recognises them as large and sends them to the workers once per call, not once per task."""
    with quiet_training():
        model.fit(X[train], y[train])
    return y[test], model.predict(X[test])


def _pooled(results) -> Score:
    scores = [float(np.mean(t == p)) for t, p in results]
    return Score(scores, [str(v) for t, _ in results for v in t], [str(v) for _, p in results for v in p])


def split_rows(data: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Protocol (a)'s rows for one seed: a random stratified 75/25 split of the clips."""
    clips = np.arange(data.n_clips)
    train, test = train_test_split(clips, test_size=TEST_SIZE, stratify=data.labels, random_state=seed)
    return data.rows(train, test)


def actor_rows(data: Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """Protocol (b)'s rows: GroupKFold by actor (at most 5 folds), no voice on both sides."""
    clips = np.arange(data.n_clips)
    folds = GroupKFold(n_splits=min(5, len(np.unique(data.groups))))
    return [data.rows(train, test) for train, test in folds.split(clips, data.labels, data.groups)]


def score_split(make: Callable[[int], ClassifierMixin], data: Dataset, seeds: list[int], jobs: int) -> Score:
    """Protocol (a), once per seed; the model is seeded the same as the split."""
    return _pooled(
        Parallel(n_jobs=jobs)(delayed(_fit_predict)(make(s), data.X, data.y, *split_rows(data, s)) for s in seeds)
    )


def score_actor(make: Callable[[int], ClassifierMixin], data: Dataset, seed: int, jobs: int) -> Score:
    """Protocol (b)."""
    return _pooled(
        Parallel(n_jobs=jobs)(
            delayed(_fit_predict)(make(seed), data.X, data.y, train, test) for train, test in actor_rows(data)
        )
    )


@dataclass
class SearchResult:
    best_params: dict[str, Any]
    best_score: float
    stages: list[list[dict[str, Any]]]  # per stage: params and mean actor-fold accuracy of every candidate


def grid_search(
    data: Dataset, scaled: bool, grids: tuple[dict[str, list[Any]], ...], seed: int, jobs: int
) -> SearchResult:
    """Staged GridSearchCV under protocol (b); each stage starts from the previous best."""
    best: dict[str, Any] = {}
    stages, best_score = [], float("nan")
    prefix = "mlp__" if scaled else ""
    for grid in grids:
        if best.get("solver", "adam") != "sgd":  # learning_rate only schedules sgd
            grid = {k: v for k, v in grid.items() if k != "learning_rate"}
        search = GridSearchCV(
            mlp(best, seed, scaled),
            {prefix + k: v for k, v in grid.items()},
            cv=actor_rows(data),
            n_jobs=jobs,
            error_score="raise",
            refit=False,  # only best_params_ is used: no extra fit on all rows per stage
        )
        with quiet_training():
            search.fit(data.X, data.y)
        best.update({k.removeprefix(prefix): v for k, v in search.best_params_.items()})
        best_score = float(search.best_score_)
        stages.append(
            [
                {"params": {k.removeprefix(prefix): v for k, v in p.items()}, "accuracy": float(s)}
                for p, s in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True)
            ]
        )
    return SearchResult(best, best_score, stages)


def without_optimizer_state(model: ClassifierMixin) -> ClassifierMixin:
    """Drop the MLP's adam moments (two thirds of the pickle); only warm starts use them."""
    mlp_step = model.steps[-1][1] if isinstance(model, Pipeline) else model
    mlp_step._optimizer = None
    return model


def fit(model: ClassifierMixin, data: Dataset, rows: np.ndarray | None = None) -> ClassifierMixin:
    """A fresh copy of ``model`` fitted on ``rows`` (default: every row)."""
    rows = np.arange(len(data.y)) if rows is None else rows
    with quiet_training():
        return clone(model).fit(data.X[rows], data.y[rows])
