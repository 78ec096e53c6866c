"""train.experiments on a small synthetic data set: the searches and the scores they share."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GridSearchCV

from train import experiments as ex
from train.dataset import Dataset

FAST = {"max_iter": 30, "hidden_layer_sizes": (8,)}


def synthetic(actors: int = 4, clips_per_actor: int = 12, copies: int = 2, seed: int = 0) -> Dataset:
    """Three separable classes, each actor shifted; every clip has ``copies`` noisy extra rows."""
    rng = np.random.default_rng(seed)
    n = actors * clips_per_actor
    labels = np.array(["a", "b", "c"] * (n // 3))
    groups = np.repeat(np.arange(1, actors + 1), clips_per_actor)
    centre = {"a": 0.0, "b": 1.5, "c": 3.0}
    originals = np.array([centre[y] for y in labels])[:, None] + groups[:, None] + rng.normal(0, 0.7, (n, 5))
    variants = [originals] + [originals + rng.normal(0, 0.2, originals.shape) for _ in range(copies)]
    X = np.vstack(variants).astype(np.float32)
    return Dataset(
        X=X,
        y=np.tile(labels, copies + 1),
        clip=np.tile(np.arange(n), copies + 1),
        original=np.arange(len(X)) < n,
        groups=groups,
        digests=[""] * n,
    )


def make(params):
    return ex.mlp({**FAST, **params}, 0, scaled=True)


def test_an_exhaustive_search_picks_what_gridsearchcv_picks():
    data = synthetic()
    grids = ({"hidden_layer_sizes": [(4,), (8,), (16,)]}, {"alpha": [0.01, 1.0, 30.0]})
    result = ex.grid_search(make, ex.actor_design(data), grids, 0, 1, "mlp__")
    best = {}
    for grid in grids:
        search = GridSearchCV(make(best), {f"mlp__{k}": v for k, v in grid.items()}, cv=ex.actor_design(data).splits)
        with ex.quiet_training():
            search.fit(data.X, data.y)
        best.update({k.removeprefix("mlp__"): v for k, v in search.best_params_.items()})
    assert result.best_params == best
    assert [len(stage) for stage in result.stages] == [3, 3]


def test_a_searched_model_is_scored_from_the_search_exactly_as_a_fresh_fit():
    data = synthetic()
    result = ex.grid_search(make, ex.actor_design(data), ({"alpha": [0.01, 3.0]},), 0, 1, "mlp__")
    searched = result.score_of(make({"alpha": 3.0}))
    assert searched is not None
    (fresh,) = ex.score_all([ex.actor_experiment(lambda s: make({"alpha": 3.0}), data, 0)], 1)
    assert searched.scores == fresh.scores
    assert result.score_of(make({"alpha": 0.3})) is None  # not among the candidates
    assert result.score_of(ex.mlp({**FAST, "alpha": 3.0}, 1, scaled=True)) is None  # another seed


def test_successive_halving_keeps_test_folds_whole_and_ends_on_all_training_clips(monkeypatch):
    data = synthetic(actors=4, clips_per_actor=27)
    design = ex.actor_design(data)
    seen = []
    real_stage = ex._stage

    def spy(base, candidates, rung_design, jobs):
        seen.append((len(candidates), rung_design))
        return real_stage(base, candidates, rung_design, jobs)

    monkeypatch.setattr(ex, "_stage", spy)
    grid = {"alpha": [0.001, 0.01, 0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]}  # 9 candidates: 3 rungs
    result = ex.grid_search(make, design, (grid,), 0, 1, "mlp__", halving=True)

    assert [count for count, _ in seen] == [9, 3, 1]
    for rung, (_, rung_design) in enumerate(seen):
        fraction = 3.0 ** (rung - 2)
        for (train, test), (full_train, full_test) in zip(rung_design.splits, design.splits, strict=True):
            assert np.array_equal(test, full_test)
            clips = np.unique(data.clip[train])
            assert len(clips) == round(fraction * len(np.unique(data.clip[full_train])))
            assert np.array_equal(np.sort(train), full_train[np.isin(data.clip[full_train], clips)])  # every copy
    last = [r for r in result.stages[0] if r["rung"] == 2]
    assert len(last) == 1 and last[0]["train_fraction"] == 1.0
    assert result.best_params == last[0]["params"] and result.best_score == last[0]["accuracy"]
    assert len(result.stages[0]) == 9 + 3 + 1


def test_a_batch_scores_each_experiment_on_its_own_splits_and_passes_each_fit_on():
    data = synthetic()
    experiments = [
        ex.split_experiment(lambda s: make({"alpha": 1.0}), data, [0, 1, 2]),
        ex.Experiment(lambda s: make({}), ex.actor_design(data), [0] * 4, [ex.final_step] * 4),
    ]
    split, actor = ex.score_all(experiments, 2)
    assert len(split.scores) == 3 and len(actor.scores) == 4
    assert split.then == [None] * 3
    assert all(type(step).__name__ == "MLPClassifier" for step in actor.then)  # each split's own fitted model
    alone = ex.score_all([experiments[0]], 1)[0]
    assert alone.scores == split.scores and alone.y_pred == split.y_pred  # batching changes nothing
