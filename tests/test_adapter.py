"""VoiceAdapter alone: cold start, convergence, forgetting, degenerate features, its state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ser_stream.adapter import ABSOLUTE_VAR_FLOOR, AdapterPrior, VoiceAdapter

N = 6


def prior(weight: float = 4.0, horizon: float = 50.0, var_floor: float = 0.05) -> AdapterPrior:
    return AdapterPrior(np.zeros(N), np.ones(N), weight, horizon, var_floor)


def voice(mean: float, sd: float, count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, (count, N))


def heard(adapter: VoiceAdapter, rows: np.ndarray) -> VoiceAdapter:
    for row in rows:
        adapter.update(row)
    return adapter


def test_cold_start_is_the_prior():
    p = AdapterPrior(np.arange(N, dtype=float), np.linspace(0.5, 3, N), 4.0, 50.0)
    adapter = VoiceAdapter(p)
    x = np.random.default_rng(1).normal(size=N)
    assert adapter.heard == 0
    assert np.array_equal(adapter.mean, p.mean) and np.array_equal(adapter.var, p.var)
    assert np.allclose(adapter.normalise(x), (x - p.mean) / np.sqrt(p.var))
    assert np.allclose(adapter.normalise(np.stack([x, x])), (x - p.mean) / np.sqrt(p.var))  # rows too


def test_the_statistics_are_the_forgetting_weighted_blend_with_the_prior():
    p = prior(weight=4.0, horizon=20.0)
    rows = voice(3.0, 2.0, 37, seed=2)
    adapter = heard(VoiceAdapter(p), rows)
    weights = (1 - 1 / p.horizon) ** np.arange(len(rows))[::-1]  # the newest counts 1
    w = weights.sum()
    mean = weights @ rows / w
    sq_dev = weights @ (rows - mean) ** 2
    assert adapter.heard == 37
    assert np.allclose(adapter.mean, (p.weight * p.mean + w * mean) / (p.weight + w))
    assert np.allclose(adapter.var, (p.weight * p.var + sq_dev) / (p.weight + w))


def test_it_converges_to_a_voice_and_stays_accurate_far_from_zero():
    offset, sd = 1e6, 0.01  # a sum of squares in float64 would lose these digits
    adapter = heard(VoiceAdapter(prior(weight=4.0, horizon=200.0)), voice(offset, sd, 2000, seed=3))
    shrink = 4.0 / (4.0 + 200.0)  # the prior's share once the weight has saturated at the horizon
    assert np.allclose(adapter.mean, (1 - shrink) * offset, rtol=1e-6)
    own = adapter.state()  # the voice's own statistics, before the blend and the floor
    assert own["weight"] == pytest.approx(200.0, rel=1e-4)
    assert np.allclose(own["mean"], offset, atol=5 * sd)
    assert np.allclose(own["sq_dev"] / own["weight"], sd**2, rtol=0.3)


def test_after_a_change_of_voice_the_new_one_takes_over_within_the_horizon():
    horizon = 50.0
    adapter = heard(VoiceAdapter(prior(weight=0.0, horizon=horizon)), np.full((500, N), -5.0))
    half_life = math.log(2) * horizon  # 34.7 utterances
    new = np.full(N, 5.0)
    share = []
    for _ in range(int(3 * horizon)):
        adapter.update(new)
        share.append(float((adapter.mean[0] + 5.0) / 10.0))  # the new voice's share of the mean
    assert share[int(half_life) - 2] < 0.5 < share[int(half_life) + 1]
    assert share[int(2.3 * horizon)] > 0.9  # 90 % after 2.3 horizons
    assert abs(share[int(horizon) - 1] - (1 - math.exp(-1))) < 0.01


@pytest.mark.parametrize("value", [0.0, -10.0, 1e-30])
def test_constant_or_silent_features_stay_finite(value):
    p = AdapterPrior(np.zeros(N), np.array([1.0, 1.0, 0.0, 0.0, 1e-3, 1.0]), 2.0, 50.0, 0.05)
    adapter = heard(VoiceAdapter(p), np.full((300, N), value))
    z = adapter.normalise(np.full(N, value + 1.0))
    assert np.all(np.isfinite(z))
    assert np.all(adapter.var >= np.maximum(0.05 * p.var, ABSOLUTE_VAR_FLOOR))
    assert abs(z[0]) <= 1 / math.sqrt(0.05) + 1e-9  # the floor caps the amplification of a constant feature


def test_bad_features_are_refused_and_change_nothing():
    adapter = heard(VoiceAdapter(prior()), voice(1.0, 1.0, 5))
    before = adapter.state()
    for bad in (np.full(N, np.nan), np.full(N + 1, 1.0), np.array([np.inf] * N)):
        with pytest.raises(ValueError):
            adapter.update(bad)
    after = adapter.state()
    assert after["heard"] == before["heard"] == 5
    assert np.array_equal(after["mean"], before["mean"]) and np.array_equal(after["sq_dev"], before["sq_dev"])


def test_a_restored_state_continues_exactly():
    p = prior()
    rows = voice(2.0, 1.5, 40, seed=4)
    one = heard(VoiceAdapter(p), rows[:25])
    state = one.state()
    assert set(state) == {"heard", "weight", "mean", "sq_dev"}
    two = VoiceAdapter.from_state(p, {k: np.array(v) for k, v in state.items()})  # as read back from a file
    heard(one, rows[25:])
    heard(two, rows[25:])
    assert two.heard == one.heard == 40
    assert np.array_equal(two.normalise(rows[0]), one.normalise(rows[0]))


@pytest.mark.parametrize(
    "change",
    [
        {"mean": np.zeros(N + 1)},
        {"sq_dev": np.full(N, -1.0)},
        {"mean": np.full(N, np.nan)},
        {"weight": 1e6},
        {"heard": -1},
    ],
)
def test_a_state_that_does_not_fit_is_refused(change):
    p = prior()
    state = {**heard(VoiceAdapter(p), voice(0.0, 1.0, 3)).state(), **change}
    with pytest.raises(ValueError):
        VoiceAdapter.from_state(p, state)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mean": np.zeros(N), "var": np.ones(N + 1)},
        {"mean": np.zeros(N), "var": -np.ones(N)},
        {"mean": np.zeros(N), "var": np.ones(N), "horizon": 0.5},
        {"mean": np.zeros(N), "var": np.ones(N), "var_floor": 0.0},
        {"mean": np.zeros(N), "var": np.ones(N), "weight": -1.0},
    ],
)
def test_an_impossible_prior_is_refused(kwargs):
    with pytest.raises(ValueError):
        AdapterPrior(**kwargs)


def test_a_prior_round_trips_through_a_manifest_section():
    p = AdapterPrior(np.arange(N, dtype=float), np.ones(N), 3.0, 80.0, 0.1)
    again = AdapterPrior.from_section(p.settings(), p.mean, p.var)
    assert again.settings() == p.settings() == {"prior_weight": 3.0, "horizon": 80.0, "var_floor": 0.1}
    with pytest.raises(ValueError, match="horizon"):
        AdapterPrior.from_section({"prior_weight": 3.0, "var_floor": 0.1}, p.mean, p.var)
    with pytest.raises(ValueError):
        AdapterPrior.from_section({**p.settings(), "horizon": "soon"}, p.mean, p.var)


def test_hearing_a_stream_classifies_each_utterance_with_those_before_it():
    rows = voice(3.0, 2.0, 30, seed=4)
    streamed = VoiceAdapter(prior())
    seen = streamed.hear(rows)
    one_by_one = VoiceAdapter(prior())
    for i, row in enumerate(rows):
        assert np.array_equal(seen[i], one_by_one.normalise(row))
        one_by_one.update(row)
    assert streamed.heard == len(rows) and np.array_equal(streamed.mean, one_by_one.mean)
    assert np.array_equal(seen[0], VoiceAdapter(prior()).normalise(rows[0]))  # the first: the prior alone


def test_voices_in_lockstep_have_each_voice_s_own_numbers_exactly():
    voices = [voice(mean, sd, 25, seed=seed) for seed, (mean, sd) in enumerate([(3.0, 2.0), (-1.0, 0.5), (0.0, 4.0)])]
    lockstep = VoiceAdapter(prior(horizon=10.0), voices=len(voices))
    alone = [VoiceAdapter(prior(horizon=10.0)) for _ in voices]
    for rows in np.stack(voices, axis=1):  # position by position: one row of each voice
        assert np.array_equal(lockstep.normalise(rows), [a.normalise(r) for a, r in zip(alone, rows, strict=True)])
        lockstep.update(rows)
        for adapter, row in zip(alone, rows, strict=True):
            adapter.update(row)
    assert np.array_equal(lockstep.mean, [a.mean for a in alone])
    assert np.array_equal(lockstep.var, [a.var for a in alone])
    with pytest.raises(ValueError, match=f"need {3 * N} finite features"):
        lockstep.update(voices[0][0])  # one voice's row is not a row of each
