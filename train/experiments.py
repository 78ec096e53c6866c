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
from math import ceil
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold, ParameterGrid, train_test_split
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
#: Our model's second stage: the article's, at batch 256 only. Under our training budget a batch-64
#: candidate never passed the first rung in either bundle's search (below its batch-256 twin in 7 of 8
#: cases, by up to 3.6 points under protocol (b)), while an epoch of it costs twice as much.
SHIPPED_TRAINING_GRID: dict[str, list[Any]] = {**TRAINING_GRID, "batch_size": [256]}
#: A grid small enough for tests on a handful of actors.
QUICK_GRIDS: tuple[dict[str, list[Any]], dict[str, list[Any]]] = (
    {"hidden_layer_sizes": [(64,), (32, 16)], "activation": ["relu"], "solver": ["adam"]},
    {"alpha": [0.01, 1.0]},
)
TEST_SIZE = 0.25
#: Networks in the shipped model (`SeedEnsemble`: seeds ``--seed`` on, probabilities averaged). Three
#: against one, the same recipe and hyperparameters (three seeds' mean, protocols (b) / (c) / (d)): four
#: emotions 83.5 / 78.7 / 61.1 -> 83.4 / 79.1 / 61.8 %, eight 66.1 / 60.6 / 43.3 -> 67.1 / 61.5 / 43.8 %;
#: five no better (README, "Three networks, one average"). Each network costs a fit.
SHIPPED_MEMBERS = 3
#: Successive halving (the shipped model's search): a third of the candidates go on to each next rung,
#: which trains three times as many epochs; the last rung the full budget.
HALVING_FACTOR = 3


def mlp(params: dict[str, Any], seed: int, scaled: bool, members: int = 1) -> ClassifierMixin:
    """An MLP with explicit params (``members`` > 1: that many, `SeedEnsemble`), behind a StandardScaler
    when ``scaled``."""
    model = MLPClassifier(**{**DATAFLAIR_PARAMS, **params}, random_state=seed)
    if members > 1:
        model = SeedEnsemble(model, members)
    return Pipeline([("scale", StandardScaler()), ("mlp", model)]) if scaled else model


class SeedEnsemble(ClassifierMixin, BaseEstimator):
    """``members`` copies of ``estimator`` fitted on the same rows, the k-th from random seed
    ``estimator.random_state + k``, their probabilities averaged. Networks that start from other weights
    err on other clips, so their mean holds up better on voices and rooms none of them heard (README,
    "Three networks"). Serving computes the same mean (`ser_stream.model.mlp.MLP`)."""

    def __init__(self, estimator: ClassifierMixin, members: int = 3) -> None:
        self.estimator = estimator
        self.members = members

    def fit(self, X: np.ndarray, y: np.ndarray) -> SeedEnsemble:
        seed = self.estimator.random_state
        self.estimators_ = [
            clone(self.estimator).set_params(random_state=seed + k).fit(X, y) for k in range(self.members)
        ]
        self.classes_ = self.estimators_[0].classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.mean([member.predict_proba(X) for member in self.estimators_], axis=0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    @property
    def loss_curve_(self) -> list[float]:
        """The first network's training loss per epoch (the one a single-network run would train)."""
        return self.estimators_[0].loss_curve_


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
    #: per fit, its test rows' probabilities (rows, classes), columns in the order of ``classes``
    proba: list[np.ndarray] = field(default_factory=list, repr=False)
    classes: list[str] = field(default_factory=list, repr=False)

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
    """One fit, its test predictions, what ``then`` makes of the fitted model, and the test
    probabilities with their classes (calibration is fitted on them); X and y are arrays, not the
    Dataset, so joblib's dask backend recognises them as large and sends them to the workers once
    per call, not once per task."""
    with quiet_training():
        model.fit(X[train], y[train])
    curve = list(getattr(final_step(model), "loss_curve_", []))
    predicted = model.predict(X[test])
    proba = (model.predict_proba(X[test]), [str(c) for c in model.classes_])
    return y[test], predicted, curve, then(model) if then else None, proba


def _pooled(results) -> Score:
    scores = [float(np.mean(t == p)) for t, p, *_ in results]
    return Score(
        scores,
        [str(v) for t, *_ in results for v in t],
        [str(v) for _, p, *_ in results for v in p],
        [curve for _, _, curve, *_ in results],
        [after for _, _, _, after, _ in results],
        [proba for *_, (proba, _) in results],
        results[0][-1][1] if results else [],
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
    return score_and_fit(experiments, [], jobs)[0]


def score_and_fit(
    experiments: Sequence[Experiment], fits: Sequence[tuple[ClassifierMixin, np.ndarray, np.ndarray]], jobs: int
) -> tuple[list[Score], list[ClassifierMixin]]:
    """``score_all``, and in the same batch each of ``fits`` (model, X, y): a fresh copy of the model
    fitted on every row (first: they are the longest)."""
    tasks = [delayed(fit)(model, X, y) for model, X, y in fits]
    owners = []
    for i, e in enumerate(experiments):
        then = e.then or [None] * len(e.design.splits)
        for s, (train, test), after in zip(e.seeds, e.design.splits, then, strict=True):
            tasks.append(delayed(_fit_predict)(e.make(s), e.design.X, e.design.y, train, test, after))
            owners.append(i)
    results = Parallel(n_jobs=jobs)(tasks)
    fitted, scored = results[: len(fits)], results[len(fits) :]
    scores = [_pooled([r for r, o in zip(scored, owners, strict=True) if o == i]) for i in range(len(experiments))]
    return scores, fitted


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
    #: per split, the accuracy of every candidate fitted with the full budget, by its estimator's parameters
    split_scores: list[tuple[dict[str, Any], list[float]]] = field(default_factory=list, repr=False)
    #: the best candidate's fits, with what ``then`` made of them
    best_fits: Score | None = field(default=None, repr=False)

    def score_of(self, model: ClassifierMixin) -> Score | None:
        """The search's own per-split accuracies of ``model``, if it fitted exactly that estimator on the
        same splits (same parameters, same seed): protocol (b) of it then costs no fit."""
        params = estimator_params(model)
        return next((Score(list(s)) for p, s in self.split_scores if p == params), None)


def estimator_params(model: ClassifierMixin) -> dict[str, dict[str, Any]]:
    """Every step's own parameters (plain values), by step: equal exactly when two estimators fit alike."""
    steps = model.steps if isinstance(model, Pipeline) else [("model", model)]
    return {name: {"class": type(step).__name__, **step.get_params(deep=False)} for name, step in steps}


def _stage_grid(grid: dict[str, list[Any]], best: dict[str, Any]) -> list[dict[str, Any]]:
    """A stage's candidates, in grid order; learning_rate only where it schedules sgd."""
    if best.get("solver", "adam") != "sgd":
        grid = {k: v for k, v in grid.items() if k != "learning_rate"}
    return list(ParameterGrid(grid))


def halving_search(
    make: Callable[[dict[str, Any]], ClassifierMixin],
    design: Design,
    grids: tuple[dict[str, list[Any]], ...],
    jobs: int,
    then: Sequence[Callable[[ClassifierMixin], Any] | None] | None = None,
    last_at_full_budget: bool = False,
) -> SearchResult:
    """Staged successive halving over training epochs, under ``design``'s splits (whole folds).

    ``make(params)`` is an MLP (behind a scaler or not) whose ``max_iter`` is the full budget. Every
    candidate of a stage first trains for a fraction of it, ranked by mean split accuracy; the best
    third goes on with three times as many epochs, until one is left, trained with the full budget
    as the final model will be. With ``last_at_full_budget`` the last stage's candidates all train the
    full budget: its few settings (weight decay among them) are then judged where they act, not by
    how fast they learn (a short rung favours little weight decay). An earlier stage's one left only
    sets its parameters for the next stage, which its full-budget fits would not change: they are made
    only if a later rung needs them.
    An MLP's cost is its gradient steps, not its rows, so epochs, not a fraction of the data, are the
    resource that halves cost.
    A fit that stopped before its budget (its loss no longer improved) is the same fit at any larger
    budget: it is not repeated, nor is a candidate a previous stage fitted already. ``then[i]``
    (as in `Experiment`) is given each fit on split i; the best candidate's fits come back as a Score.
    """
    then = then or [None] * len(design.splits)
    fits: dict[tuple[str, int], list[tuple[int, tuple]]] = {}  # (params, split) → (budget, result)
    best: dict[str, Any] = {}
    stages, best_score, winner, split_scores = [], float("nan"), None, []
    for stage, grid in enumerate(grids):
        candidates = _stage_grid(grid, best)
        models = [make({**best, **c}) for c in candidates]
        full = final_step(make(best)).max_iter
        last = stage == len(grids) - 1
        rungs = 1 if last and last_at_full_budget else _rungs(len(candidates))
        records = []
        for rung in range(rungs if last else rungs - 1):
            budget = ceil(full / HALVING_FACTOR ** (rungs - 1 - rung))
            keys = [_fit_key(make({**best, **c})) for c in candidates]
            todo = [
                (i, split)
                for i in range(len(candidates))
                for split in range(len(design.splits))
                if _reusable(fits.get((keys[i], split), []), budget) is None
            ]
            results = Parallel(n_jobs=jobs)(
                delayed(_fit_predict)(
                    _with_budget(make({**best, **candidates[i]}), budget), design.X, design.y, *design.splits[split],
                    then[split],
                )
                for i, split in todo
            )  # fmt: skip
            for (i, split), result in zip(todo, results, strict=True):
                fits.setdefault((keys[i], split), []).append((budget, result))
            scored = [
                _pooled([_reusable(fits[(key, split)], budget) for split in range(len(design.splits))]) for key in keys
            ]
            means = [score.mean for score in scored]
            records += [
                {"params": c, "accuracy": m, "rung": rung, "epochs": budget}
                for c, m in zip(candidates, means, strict=True)
            ]
            ranked = sorted(range(len(candidates)), key=lambda i: -means[i])  # stable: ties keep grid order
            kept = ranked[: ceil(len(candidates) / HALVING_FACTOR)]
            candidates, best_score, winner = [candidates[i] for i in kept], means[ranked[0]], scored[ranked[0]]
        for model in models:  # fits that hold at the full budget: protocol (b) of that model costs no fit
            done = [_reusable(fits.get((_fit_key(model), split), []), full) for split in range(len(design.splits))]
            if all(done):
                split_scores.append((estimator_params(model), _pooled(done).scores))
        best.update(candidates[0])
        stages.append(records)
    return SearchResult(best, best_score, stages, split_scores, winner)


def _rungs(candidates: int) -> int:
    """Rungs until one candidate is left: its full-budget fits are the winner's, which protocol (b) needs anyway."""
    rungs = 1
    while candidates > 1:
        candidates, rungs = ceil(candidates / HALVING_FACTOR), rungs + 1
    return rungs


def _fit_key(model: ClassifierMixin) -> str:
    """What makes a fit, but its epoch budget: equal for a stage's candidate and the same model of an earlier stage."""
    params = estimator_params(model)
    last = list(params)[-1]
    return repr({**params, last: {**params[last], "max_iter": None}})


def _with_budget(model: ClassifierMixin, epochs: int) -> ClassifierMixin:
    final_step(model).set_params(max_iter=epochs)
    return model


def _reusable(done: list[tuple[int, tuple]], budget: int) -> tuple | None:
    """A fit of ``done`` that equals one with ``budget`` epochs: the same budget, or one that stopped
    (loss curve shorter than its budget) before both budgets ran out."""
    for fitted_budget, result in done:
        epochs = len(result[2])
        if fitted_budget == budget or epochs < min(fitted_budget, budget):
            return result
    return None


def final_step(model: ClassifierMixin) -> ClassifierMixin:
    """The classifier itself, behind any scaler."""
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def fit(model: ClassifierMixin, X: np.ndarray, y: np.ndarray) -> ClassifierMixin:
    """A fresh copy of ``model`` fitted on every row."""
    with quiet_training():
        return clone(model).fit(X, y)
