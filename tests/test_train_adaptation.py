"""train.adaptation on synthetic voices: the prior, per-voice standardisation, the designs, protocol (c)."""

from __future__ import annotations

import numpy as np
import pytest

from ser_stream.adapter import AdapterPrior, VoiceAdapter
from train import adaptation as ad
from train import experiments as ex
from train.dataset import Dataset

N_FEATURES = 3


def voices_dataset(actors: int = 4, per_actor: int = 12, copies: int = 1, seed: int = 0) -> Dataset:
    """Each actor's rows are offset and scaled differently; labels a/b/c/calm; ``copies`` extra rows per clip."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(1, actors + 1), per_actor)
    labels = np.array(["a", "b", "c", "calm"] * (len(groups) // 4))
    base = rng.normal(size=(len(groups), N_FEATURES)) * groups[:, None] + 10 * groups[:, None]
    X = np.vstack([base] + [base * 1.1 + 0.5 for _ in range(copies)]).astype(np.float32)
    n = len(groups)
    return Dataset(
        X, np.tile(labels, copies + 1), np.tile(np.arange(n), copies + 1), np.arange(len(X)) < n, groups, [""] * n
    )


def test_the_prior_is_the_overall_mean_and_the_mean_within_voice_variance():
    X = np.array([[0.0], [2.0], [10.0], [14.0]])
    prior = ad.population_prior(X, np.array([1, 1, 2, 2]), 4.0, 100.0, 0.05)
    assert prior.mean.tolist() == [6.5]
    assert prior.var.tolist() == [(1.0 + 4.0) / 2]  # not the spread between the voices
    assert (prior.weight, prior.horizon, prior.var_floor) == (4.0, 100.0, 0.05)


def test_full_standardises_each_voice_by_all_of_its_rows():
    data = voices_dataset()
    voices = ad.voices_of(data)
    prior = AdapterPrior(np.zeros(N_FEATURES), np.ones(N_FEATURES), weight=0.0, horizon=1e12)
    out = ad.normalise_voices(data.X, voices, prior, "full", seed=0)
    assert len(np.unique(voices)) == 8  # 4 actors × (original, copy)
    for voice in np.unique(voices):
        rows = out[voices == voice]
        assert np.allclose(rows.mean(axis=0), 0, atol=1e-5) and np.allclose(rows.var(axis=0), 1, atol=1e-4)


def test_online_standardises_each_row_by_the_rows_before_it():
    data = voices_dataset(copies=0)
    voices = ad.voices_of(data)
    prior = AdapterPrior(np.full(N_FEATURES, 5.0), np.full(N_FEATURES, 4.0), weight=2.0, horizon=50.0)
    out = ad.normalise_voices(data.X, voices, prior, "online", seed=3)
    order = np.random.default_rng(3).permutation(np.flatnonzero(voices == voices[0]))  # the first voice's order
    adapter = VoiceAdapter(prior)
    for row in order:
        assert np.allclose(out[row], adapter.normalise(data.X[row]), atol=1e-5)
        adapter.update(data.X[row])
    firsts = [np.allclose(out[r], (data.X[r] - 5.0) / 2.0, atol=1e-5) for r in range(len(out))]
    assert sum(firsts) == len(np.unique(voices))  # one row per voice saw the prior alone


def test_an_adapted_design_takes_its_prior_from_training_actors_and_test_statistics_from_the_test_actor():
    data = voices_dataset(actors=4, copies=1)
    folds = ex.actor_folds(data)
    settings = {"weight": 4.0, "horizon": 1e9, "var_floor": 0.05}  # no forgetting: statistics of any order
    design, priors = ad.adapted_design(data, folds, settings, "online", seed=0)
    n_rows = len(data.y)
    assert design.X.shape == (len(folds) * n_rows, N_FEATURES)
    for i, ((train_clips, test_clips), (train, test), prior) in enumerate(
        zip(folds, design.splits, priors, strict=True)
    ):
        assert np.all((train >= i * n_rows) & (train < (i + 1) * n_rows))
        originals = np.flatnonzero(data.original & np.isin(data.clip, train_clips))
        assert np.allclose(prior.mean, data.X[originals].astype(float).mean(axis=0))
        assert np.array_equal(design.clip[test], test_clips)  # the held-out clips, originals only
        assert set(data.groups[design.clip[test]]).isdisjoint(data.groups[design.clip[train]])
        expected = VoiceAdapter(prior)
        actor_rows = test - i * n_rows  # one actor per fold here: its statistics are all of its test clips
        for row in actor_rows:
            expected.update(data.X[row])
        assert np.allclose(design.X[test], expected.normalise(data.X[actor_rows]), atol=1e-4)


class Recorder:
    """A model that remembers what it was shown and calls everything 'a'."""

    classes_ = np.array(["a", "b", "c", "calm"])

    def __init__(self):
        self.seen = []

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def predict_proba(self, X):
        self.seen.append(np.array(X))
        return np.tile([1.0, 0.0, 0.0, 0.0], (len(X), 1))  # 'a' for sure


def test_a_stream_is_classified_with_what_was_heard_before_each_clip():
    data = voices_dataset(copies=0)
    unlabelled = voices_dataset(copies=0, seed=1)
    unlabelled = Dataset(
        unlabelled.X,
        np.array(["neutral"] * len(unlabelled.y)),
        unlabelled.clip,
        unlabelled.original,
        unlabelled.groups,
        unlabelled.digests,
    )
    test_clips = np.flatnonzero(data.groups == 2)
    streams = ad.streams_for(data, unlabelled, test_clips, ["a", "b", "c", "calm"], seed=0)
    assert [(s.actor, s.mix) for s in streams] == [(2, "balanced"), (2, "neutral-heavy"), (2, ad.MOODS)]
    balanced, heavy, moods = streams
    assert len(balanced.y) == 12 and balanced.scored.all()
    assert np.isin(heavy.y, ad.QUIET).sum() == len(heavy.y) // 2  # half neutral or calm
    assert not heavy.scored[heavy.y == "neutral"].any() and heavy.scored[heavy.y != "neutral"].all()
    assert len(heavy.orders) == ad.STREAM_ORDERS
    assert np.array_equal(moods.X, balanced.X) and len(moods.orders) == ad.STREAM_ORDERS
    for order in moods.orders:  # runs of one emotion: the label changes three times, never back
        changes = np.flatnonzero(moods.y[order][1:] != moods.y[order][:-1])
        assert len(changes) == 3 and sorted(order) == list(range(12))

    prior = AdapterPrior(np.zeros(N_FEATURES), np.ones(N_FEATURES), 4.0, 100.0)
    model = Recorder()
    played = ad.play(model, heavy, prior)
    order = heavy.orders[0]
    assert len(model.seen) == 3  # each way of seeing the clips in one call over every order
    excluding, including, after_all = (seen.reshape(ad.STREAM_ORDERS, len(heavy.y), -1)[0] for seen in model.seen)
    assert np.allclose(excluding[0], heavy.X[order[0]], atol=1e-6)  # nothing heard: the prior (0, 1) alone
    adapter = VoiceAdapter(prior)
    adapter.update(heavy.X[order[0]])
    assert np.allclose(including[0], adapter.normalise(heavy.X[order[0]]), atol=1e-5)
    for row in heavy.X[order[1:]]:
        adapter.update(row)
    assert np.allclose(after_all, adapter.normalise(heavy.X[order]), atol=1e-5)  # two passes: the whole stream
    assert played.excluding.shape == (ad.STREAM_ORDERS, len(heavy.y))
    assert np.array_equal(np.isnan(played.excluding[0]), ~heavy.scored[order])
    assert np.nanmean(played.excluding[0]) == np.mean(heavy.y[order][heavy.scored[order]] == "a")

    played_all = ad.play_all(streams, prior, Recorder())
    assert sorted({p.horizon for p in played_all}) == sorted({*ad.HORIZONS, 100.0})
    summary = ad.summarise(played_all, 100.0)
    assert set(summary) == {"balanced", "neutral-heavy", ad.MOODS}
    assert set(summary["balanced"]["heard"]) == {"0", "1", "5", "10"}  # 12 clips: 20 heard never happens
    assert len(summary["balanced"]["curve"]) == 12
    assert summary["balanced"]["overall"] == pytest.approx(0.25)  # 'a' is one label in four
    assert summary["balanced"]["per_actor"] == {"2": pytest.approx(0.25)}


def test_without_a_prior_a_stream_is_the_raw_features():
    data = voices_dataset(copies=0)
    stream = ad.streams_for(data, None, np.flatnonzero(data.groups == 1), ["a", "b", "c", "calm"], seed=0)[0]
    model = Recorder()
    played = ad.play(model, stream, None)
    assert len(model.seen) == 1  # one call for every order: nothing changes as it is heard
    assert np.allclose(model.seen[0], stream.X)
    assert np.array_equal(played.excluding, played.after_all)


def test_a_change_of_voice_plays_another_actor_first_and_scores_the_new_one_from_its_first_clip():
    data = voices_dataset(actors=4, copies=0)
    test_clips = np.flatnonzero(np.isin(data.groups, [1, 3]))
    streams = ad.streams_for(data, None, test_clips, ["a", "b", "c", "calm"], seed=0)
    changes = {s.actor: s for s in streams if s.mix == ad.AFTER_ANOTHER}
    balanced = {s.actor: s for s in streams if s.mix == "balanced"}
    assert set(changes) == {1, 3}
    for actor, other in ((1, 3), (3, 1)):
        change = changes[actor]
        assert change.lead_in == 12
        assert np.array_equal(change.X[:12], balanced[other].X) and np.array_equal(change.X[12:], balanced[actor].X)
        assert not change.scored[:12].any() and change.scored[12:].all()
        for order in change.orders:
            assert sorted(order[:12]) == list(range(12)) and sorted(order[12:]) == list(range(12, 24))

    prior = AdapterPrior(np.zeros(N_FEATURES), np.ones(N_FEATURES), 4.0, 100.0)
    played = ad.play_all(streams, prior, Recorder())
    summary = ad.summarise(played, 100.0)[ad.AFTER_ANOTHER]
    assert summary["clips_per_stream"] == 12 and set(summary["heard"]) == {"0", "1", "5", "10"}
    assert summary["overall"] == pytest.approx(0.25)
    sweep = ad.horizon_sweep(played)
    assert set(sweep) == {"25", "50", "100", "200"}
    assert set(sweep["100"]) == set(ad.MIXES)


def test_when_neutral_is_a_label_the_neutral_heavy_mix_scores_its_neutral_clips():
    data = voices_dataset(per_actor=16, copies=0)
    labels = np.array(["neutral", "a", "b", "c"] * (len(data.y) // 4))
    data = Dataset(data.X, labels, data.clip, data.original, data.groups, data.digests)
    streams = ad.streams_for(data, None, np.flatnonzero(data.groups == 1), ["neutral", "a", "b", "c"], seed=0)
    heavy = next(s for s in streams if s.mix == "neutral-heavy")
    assert np.sum(heavy.y == "neutral") == len(heavy.y) // 2 == 4  # the actor's 4 neutral clips and 4 others
    assert heavy.scored.all()
