"""The seed's experiments and ours, each scored under two protocols.

(a) ``split``: the seed's random stratified 75/25 split, repeated over seeds;
(b) ``actor``: speaker-independent GroupKFold by actor, which model selection uses
    because the product meets voices it never heard.

Every experiment is a `Design`: a matrix, its labels and the splits of its rows, so the
searches and the scores run the same way on the plain features and on per-fold views of them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from math import ceil, floor, log
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import ClassifierMixin, clone
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, GroupKFold, ParameterGrid, train_test_split
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
#: Successive halving (the shipped model's search): a third of the candidates go on to each next rung,
#: which trains on three times as many clips; the last rung on all of them.
HALVING_FACTOR = 3


def mlp(params: dict[str, Any], seed: int, scaled: bool) -> ClassifierMixin:
    """An MLP with explicit params, behind a StandardScaler when ``scaled``."""
    model = MLPClassifier(**{**DATAFLAIR_PARAMS, **params}, random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("mlp", model)]) if scaled else model


def dummy(seed: int) -> ClassifierMixin:
    return DummyClassifier(strategy="stratified", random_state=seed)


@dataclass
class Score:
    """Accuracy per repeat with the pooled true and predicted labels (empty when taken from a search)."""

    scores: list[float]
    y_true: list[str] = field(default_factory=list, repr=False)
    y_pred: list[str] = field(default_factory=list, repr=False)
    curves: list[list[float]] = field(default_factory=list, repr=False)  # each fit's training loss per epoch
    then: list[Any] = field(default_factory=list, repr=False)  # what an Experiment's ``then`` made of each fit

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


@dataclass(frozen=True)
class Design:
    """What an experiment fits and scores: a feature matrix, its labels, and (train, test) rows per split.

    Training rows are all copies of the training clips; test rows are original clips only.
    """

    X: np.ndarray
    y: np.ndarray
    clip: np.ndarray  # clip per row: the searches subsample training clips with all their copies
    splits: list[tuple[np.ndarray, np.ndarray]]


def split_clips(data: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Protocol (a)'s clips for one seed: a random stratified 75/25 split."""
    clips = np.arange(data.n_clips)
    train, test = train_test_split(clips, test_size=TEST_SIZE, stratify=data.labels, random_state=seed)
    return np.sort(train), np.sort(test)


def split_rows(data: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Protocol (a)'s rows for one seed."""
    return data.rows(*split_clips(data, seed))


def actor_folds(data: Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """Protocol (b)'s folds of clips: GroupKFold by actor (at most 5 folds), no voice on both sides."""
    clips = np.arange(data.n_clips)
    folds = GroupKFold(n_splits=min(5, len(np.unique(data.groups))))
    return list(folds.split(clips, data.labels, data.groups))


def split_design(data: Dataset, seeds: Sequence[int]) -> Design:
    return Design(data.X, data.y, data.clip, [split_rows(data, s) for s in seeds])


def actor_design(data: Dataset) -> Design:
    return Design(data.X, data.y, data.clip, [data.rows(train, test) for train, test in actor_folds(data)])


def _fit_predict(
    model: ClassifierMixin,
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    then: Callable[[ClassifierMixin], Any] | None,
):
    """One fit, its test predictions, and what ``then`` makes of the fitted model; X and y are arrays,
    not the Dataset, so joblib's dask backend recognises them as large and sends them to the workers
    once per call, not once per task."""
    with quiet_training():
        model.fit(X[train], y[train])
    curve = list(getattr(final_step(model), "loss_curve_", []))
    return y[test], model.predict(X[test]), curve, then(model) if then else None


def _pooled(results) -> Score:
    scores = [float(np.mean(t == p)) for t, p, _, _ in results]
    return Score(
        scores,
        [str(v) for t, _, _, _ in results for v in t],
        [str(v) for _, p, _, _ in results for v in p],
        [curve for _, _, curve, _ in results],
        [after for _, _, _, after in results],
    )


@dataclass(frozen=True)
class Experiment:
    """A model scored on every split of a design: split i's model seeded with ``seeds[i]``; ``then[i]``,
    a picklable callable, is given split i's fitted model where it was fitted (protocol (c) plays its
    streams so)."""

    make: Callable[[int], ClassifierMixin]
    design: Design
    seeds: Sequence[int]
    then: Sequence[Callable[[ClassifierMixin], Any] | None] | None = None


def score_all(experiments: Sequence[Experiment], jobs: int) -> list[Score]:
    """Every split of every experiment in one parallel batch, so no core idles between experiments."""
    tasks, owners = [], []
    for i, e in enumerate(experiments):
        then = e.then or [None] * len(e.design.splits)
        for s, (train, test), after in zip(e.seeds, e.design.splits, then, strict=True):
            tasks.append(delayed(_fit_predict)(e.make(s), e.design.X, e.design.y, train, test, after))
            owners.append(i)
    results = Parallel(n_jobs=jobs)(tasks)
    return [_pooled([r for r, o in zip(results, owners, strict=True) if o == i]) for i in range(len(experiments))]


def split_experiment(make: Callable[[int], ClassifierMixin], data: Dataset, seeds: Sequence[int]) -> Experiment:
    """Protocol (a), once per seed; the model is seeded the same as the split."""
    return Experiment(make, split_design(data, seeds), seeds)


def actor_experiment(make: Callable[[int], ClassifierMixin], data: Dataset, seed: int) -> Experiment:
    """Protocol (b)."""
    design = actor_design(data)
    return Experiment(make, design, [seed] * len(design.splits))


@dataclass
class SearchResult:
    best_params: dict[str, Any]
    best_score: float
    stages: list[list[dict[str, Any]]]  # per stage: params and mean accuracy of every candidate (per rung)
    #: every fitted candidate's accuracy per split of the full training rows, by its estimator's parameters
    split_scores: list[tuple[dict[str, Any], list[float]]] = field(default_factory=list, repr=False)

    def score_of(self, model: ClassifierMixin) -> Score | None:
        """The search's own per-split accuracies of ``model``, if it fitted exactly that estimator on the
        same splits (same parameters, same seed): protocol (b) of it then costs no fit."""
        params = estimator_params(model)
        return next((Score(list(s)) for p, s in self.split_scores if p == params), None)


def estimator_params(model: ClassifierMixin) -> dict[str, dict[str, Any]]:
    """Every step's own parameters (plain values), by step: equal exactly when two estimators fit alike."""
    steps = model.steps if isinstance(model, Pipeline) else [("model", model)]
    return {name: {"class": type(step).__name__, **step.get_params(deep=False)} for name, step in steps}


def _stage(
    base: ClassifierMixin, candidates: list[dict[str, Any]], design: Design, jobs: int
) -> tuple[list[float], list[list[float]]]:
    """GridSearchCV over ``candidates`` (in their order): mean accuracy and per-split accuracies of each."""
    search = GridSearchCV(
        base,
        [{k: [v] for k, v in c.items()} for c in candidates],
        cv=design.splits,
        n_jobs=jobs,
        error_score="raise",
        refit=False,  # only the scores are used: no extra fit on all rows
    )
    with quiet_training():
        search.fit(design.X, design.y)
    results = search.cv_results_
    per_split = np.column_stack([results[f"split{i}_test_score"] for i in range(len(design.splits))])
    return [float(m) for m in results["mean_test_score"]], per_split.tolist()


def _subsample(design: Design, fraction: float, seed: int) -> Design:
    """``design`` with each split's training clips (all their copies) cut to ``fraction``; test rows whole."""
    rng = np.random.default_rng(seed)
    splits = []
    for train, test in design.splits:
        clips = np.unique(design.clip[train])
        kept = rng.choice(clips, size=max(1, round(fraction * clips.size)), replace=False)
        splits.append((train[np.isin(design.clip[train], kept)], test))
    return Design(design.X, design.y, design.clip, splits)


def grid_search(
    make: Callable[[dict[str, Any]], ClassifierMixin],
    design: Design,
    grids: tuple[dict[str, list[Any]], ...],
    seed: int,
    jobs: int,
    prefix: str = "",
    halving: bool = False,
) -> SearchResult:
    """Staged search under ``design``'s splits; each stage starts from the previous best.

    Exhaustive (GridSearchCV, the seed's way) by default. With ``halving``, successive halving:
    every candidate is first trained on a fraction of each split's training clips, and the best
    third goes on to three times as many, up to all of them. Unlike scikit-learn's
    HalvingGridSearchCV, the test folds stay whole at every rung: with a fraction of a fold's
    clips, ranking candidates a point apart would be a coin toss.
    """
    best: dict[str, Any] = {}
    stages, best_score, split_scores = [], float("nan"), []
    for grid in grids:
        if best.get("solver", "adam") != "sgd":  # learning_rate only schedules sgd
            grid = {k: v for k, v in grid.items() if k != "learning_rate"}
        candidates = [{k.removeprefix(prefix): v for k, v in c.items()} for c in ParameterGrid(grid)]
        base = make(best)
        rungs = 1 + floor(log(len(candidates), HALVING_FACTOR)) if halving else 1
        records = []
        for rung in range(rungs):
            fraction = float(HALVING_FACTOR ** (rung + 1 - rungs))
            rung_design = design if fraction == 1 else _subsample(design, fraction, seed + rung)
            means, per_split = _stage(
                base, [{prefix + k: v for k, v in c.items()} for c in candidates], rung_design, jobs
            )
            records += [
                {"params": c, "accuracy": m, **({"rung": rung, "train_fraction": fraction} if halving else {})}
                for c, m in zip(candidates, means, strict=True)
            ]
            if fraction == 1:
                split_scores += [
                    (estimator_params(clone(base).set_params(**{prefix + k: v for k, v in c.items()})), s)
                    for c, s in zip(candidates, per_split, strict=True)
                ]
            ranked = sorted(range(len(candidates)), key=lambda i: -means[i])  # stable: ties keep grid order
            survivors = ranked[: ceil(len(candidates) / HALVING_FACTOR)] if rung + 1 < rungs else ranked[:1]
            candidates, best_score = [candidates[i] for i in survivors], means[ranked[0]]
        best.update(candidates[0])
        stages.append(records)
    return SearchResult(best, best_score, stages, split_scores)


def final_step(model: ClassifierMixin) -> ClassifierMixin:
    """The classifier itself, behind any scaler."""
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def fit(model: ClassifierMixin, X: np.ndarray, y: np.ndarray) -> ClassifierMixin:
    """A fresh copy of ``model`` fitted on every row."""
    with quiet_training():
        return clone(model).fit(X, y)
