"""train.experiments on a small synthetic data set: the searches and the scores they share."""

from __future__ import annotations

import numpy as np

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


def test_a_searched_model_is_scored_from_the_search_exactly_as_a_fresh_fit():
    data = synthetic()
    result = ex.halving_search(make, ex.actor_design(data), ({"alpha": [0.01, 3.0]},), 1)
    winner = make(result.best_params)
    searched = result.score_of(winner)
    assert searched is not None
    (fresh,) = ex.score_all([ex.actor_experiment(lambda s: winner, data, 0)], 1)
    assert searched.scores == fresh.scores == result.best_fits.scores
    loser = {"alpha": 0.01 if result.best_params["alpha"] == 3.0 else 3.0}
    assert result.score_of(make(loser)) is None  # fitted with a third of the epochs only
    assert result.score_of(make({"alpha": 0.3})) is None  # not among the candidates
    assert result.score_of(ex.mlp({**FAST, **result.best_params}, 1, scaled=True)) is None  # another seed


def test_a_candidate_that_stopped_early_is_scored_from_the_search_too():
    data = synthetic()
    converges = {**FAST, "tol": 1e3, "max_iter": 90}  # stops after ~12 epochs, before the first rung's 30

    def quick(params):
        return ex.mlp({**converges, **params}, 0, scaled=True)

    result = ex.halving_search(quick, ex.actor_design(data), ({"alpha": [0.01, 3.0]},), 1)
    for alpha in (0.01, 3.0):
        (fresh,) = ex.score_all([ex.actor_experiment(lambda s, a=alpha: quick({"alpha": a}), data, 0)], 1)
        assert result.score_of(quick({"alpha": alpha})).scores == fresh.scores


def record_fits(monkeypatch) -> list[tuple[float, int, int]]:
    """(alpha, epochs, batch size) of every fit the search makes, in order."""
    fitted = []
    real = ex._fit_predict

    def spy(model, X, y, train, test, then):
        mlp = ex.final_step(model)
        fitted.append((mlp.alpha, mlp.max_iter, mlp.batch_size))
        return real(model, X, y, train, test, then)

    monkeypatch.setattr(ex, "_fit_predict", spy)
    return fitted


def test_successive_halving_trains_a_third_for_three_times_as_many_epochs_and_reuses_what_it_fitted(monkeypatch):
    data = synthetic()
    design = ex.actor_design(data)
    fitted = record_fits(monkeypatch)
    alphas = [0.001, 0.01, 0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]  # 9 candidates: 3 rungs
    winner_then = [ex.final_step] * 4
    result = ex.halving_search(make, design, ({"alpha": alphas}, {"batch_size": [256, 64]}), 1, winner_then)

    stage = result.stages[0]
    # max_iter 30: the one candidate left would train 30 epochs, which decides nothing in a stage before the last
    assert [(r["rung"], r["epochs"]) for r in stage] == [(0, 4)] * 9 + [(1, 10)] * 3
    assert [ex._rungs(n) for n in (1, 2, 3, 4, 9, 10, 18, 27, 28)] == [1, 2, 2, 3, 3, 4, 4, 4, 5]
    assert [r["params"]["alpha"] for r in stage if r["rung"] == 1] == [
        r["params"]["alpha"] for r in sorted(stage[:9], key=lambda r: -r["accuracy"])[:3]
    ]
    assert fitted[:36] == [(a, 4, 256) for a in alphas for _ in range(4)]  # every candidate on every fold
    assert all(epochs in (10, 30) for _, epochs, _ in fitted[36:])
    # stage 2, 2 candidates (10, then 30 epochs): batch 256 is stage 1's winner again (the default), whose
    # 10-epoch fits are reused; it trains 30 epochs only if it wins, in the last stage
    stage = result.stages[1]
    assert [(r["params"]["batch_size"], r["epochs"]) for r in stage[:2]] == [(256, 10), (64, 10)]
    alpha, batch = result.best_params["alpha"], result.best_params["batch_size"]
    assert (stage[2]["epochs"], stage[2]["params"]) == (30, {"batch_size": batch})
    assert fitted.count((alpha, 10, 256)) == 4  # stage 1's only
    assert fitted.count((alpha, 30, 256)) == (4 if batch == 256 else 0)
    assert fitted.count((alpha, 10, 64)) == 4 and fitted.count((alpha, 30, 64)) == (4 if batch == 64 else 0)

    best = make(result.best_params)
    (fresh,) = ex.score_all([ex.Experiment(lambda s: best, design, [0] * 4, winner_then)], 1)
    assert result.best_fits.scores == fresh.scores and result.best_fits.y_pred == fresh.y_pred  # the same fits
    assert [model.max_iter for model in result.best_fits.then] == [30] * 4


def test_the_last_stage_at_full_budget_judges_every_candidate_where_the_final_model_trains(monkeypatch):
    data = synthetic()
    design = ex.actor_design(data)
    fitted = record_fits(monkeypatch)
    alphas = [0.001, 0.01, 1.0, 30.0]
    result = ex.halving_search(make, design, ({"batch_size": [256]}, {"alpha": alphas}), 1, last_at_full_budget=True)
    stage = result.stages[1]
    assert [(r["params"]["alpha"], r["rung"], r["epochs"]) for r in stage] == [(a, 0, 30) for a in alphas]
    assert result.best_params["alpha"] == max(stage, key=lambda r: r["accuracy"])["params"]["alpha"]
    assert result.best_score == max(r["accuracy"] for r in stage)
    assert not [f for f in fitted if f[1] != 30]  # no shorter rung in the last stage, nor in a one-candidate first
    assert sorted(f[0] for f in fitted) == sorted(a for a in alphas for _ in range(4))  # each alpha once per fold
    # without it, the same grid is halved: 4 candidates, 3 rungs
    halved = ex.halving_search(make, design, ({"batch_size": [256]}, {"alpha": alphas}), 1)
    assert [r["epochs"] for r in halved.stages[1]] == [4, 4, 4, 4, 10, 10, 30]


def test_a_fit_that_stopped_early_is_the_same_fit_with_a_larger_budget():
    data = synthetic()
    quick = {**FAST, "tol": 1e3}  # no epoch improves the loss by that much: it stops after n_iter_no_change or so
    short, long = (ex.fit(ex.mlp({**quick, "max_iter": n}, 0, scaled=True), data.X, data.y) for n in (20, 50))
    assert ex.final_step(short).n_iter_ == ex.final_step(long).n_iter_ == 12 < 20
    for a, b in zip(ex.final_step(short).coefs_, ex.final_step(long).coefs_, strict=True):
        assert np.array_equal(a, b)
    curve = ([], [], [0.0] * 12, None)  # what _fit_predict returns: the loss curve is third
    assert ex._reusable([(20, curve)], 50) is curve  # stopped at 12 < 20
    assert ex._reusable([(20, curve)], 12) is None  # with a budget of 12 it ends at 12 whether or not it converged
    assert ex._reusable([(12, curve)], 50) is None  # ran out of budget: more epochs would change it
    assert ex._reusable([(12, curve)], 12) is curve


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
