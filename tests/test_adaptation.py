"""The worker's Adaptation: what it learns from, when it saves, what it restores, forgets and keeps on a reload."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from ser_stream.adapter_state import STATE_FILE, StateRefused, load_state
from ser_stream.config import resolve
from ser_stream.errors import ConfigError
from ser_stream.features import SEED_PARAMS
from ser_stream.model import Classifier, ModelBundle, load_bundle, manifest_path
from ser_stream.pipeline.adaptation import SAVE_EVERY, Adaptation
from ser_stream.service import Reloader
from ser_stream.settings import ModelSettings
from testkit.live import wait_until
from testkit.quick_model import tiny_bundle as tiny_bundle_path


def tiny_bundle(folder, name: str = "tiny", seed: int = 0, prior: bool = True) -> ModelBundle:
    return load_bundle(tiny_bundle_path(folder, name, seed, prior))


N = SEED_PARAMS.n_features


def utterances(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(1.0, 2.0, (count, N))


@pytest.fixture
def bundle(tmp_path) -> ModelBundle:
    return tiny_bundle(tmp_path / "model")


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def saved(state, bundle: ModelBundle) -> int | None:
    """Utterances in the state file, None while there is none."""
    try:
        return load_state(state / STATE_FILE, bundle.prior, bundle.sha256).heard
    except StateRefused:
        return None


def test_it_learns_saves_every_few_utterances_and_at_stop_and_a_restart_restores_it(tmp_path, bundle, caplog):
    state = tmp_path / "state"
    adaptation = Adaptation.start(bundle, ModelSettings(state_dir=state))  # the folder is made
    assert adaptation.adapted_on == 0 and adaptation.learning
    rows = utterances(SAVE_EVERY + 2)
    for row in rows[: SAVE_EVERY - 1]:
        adaptation.learn(row)
    assert saved(state, bundle) is None
    adaptation.learn(rows[SAVE_EVERY - 1])
    wait_until(lambda: saved(state, bundle) == SAVE_EVERY, 10, "the first save, in the background")
    for row in rows[SAVE_EVERY:]:
        adaptation.learn(row)
    adaptation.close()  # waits for the last save
    assert saved(state, bundle) == SAVE_EVERY + 2
    again = Adaptation.start(bundle, ModelSettings(state_dir=state))
    assert again.adapted_on == SAVE_EVERY + 2
    np.testing.assert_array_equal(again.adapter.mean, adaptation.adapter.mean)
    assert warnings_of(caplog) == []


def test_without_a_state_dir_it_lasts_as_long_as_the_process(tmp_path, bundle):
    adaptation = Adaptation.start(bundle, ModelSettings())
    for row in utterances(12):
        adaptation.learn(row)
    adaptation.close()
    assert adaptation.adapted_on == 12 and adaptation.state_file is None
    assert Adaptation.start(bundle, ModelSettings()).adapted_on == 0


def test_what_it_learned_changes_what_the_model_sees(bundle):
    adaptation = Adaptation.start(bundle, ModelSettings())
    classifier = Classifier(bundle)
    x = utterances(1, seed=9)[0]
    cold = classifier.predict(x, adaptation.adapter)
    assert cold == classifier.predict(x) and cold.adapted_on == 0  # the prior alone, as without an adapter
    for row in utterances(20):
        adaptation.learn(row)
    warm = classifier.predict(x, adaptation.adapter)
    assert warm.adapted_on == 20 and warm.probabilities != cold.probabilities


def write_state_of(bundle, folder, count: int) -> None:
    adaptation = Adaptation.start(bundle, ModelSettings(state_dir=folder))
    for row in utterances(count):
        adaptation.learn(row)
    adaptation.close()


@pytest.mark.parametrize("damage", ["another model", "garbage", "truncated"])
def test_a_foreign_or_corrupt_state_file_is_one_warning_and_a_fresh_start(tmp_path, bundle, caplog, damage):
    state = tmp_path / "state"
    if damage == "another model":
        write_state_of(tiny_bundle(tmp_path / "other", "other", seed=5), state, 7)
    else:
        write_state_of(bundle, state, 7)
        data = (state / STATE_FILE).read_bytes()
        (state / STATE_FILE).write_bytes(b"\x00garbage" if damage == "garbage" else data[: len(data) // 2])
    adaptation = Adaptation.start(bundle, ModelSettings(state_dir=state))
    assert adaptation.adapted_on == 0 and adaptation.learning
    [warning] = warnings_of(caplog)
    assert warning.startswith(f"adaptation state {state / STATE_FILE}: ") and warning.endswith("; starting afresh")
    for row in utterances(SAVE_EVERY):  # and the next save replaces the bad file
        adaptation.learn(row)
    wait_until(lambda: saved(state, bundle) == SAVE_EVERY, 10, "the next save")


def test_reset_forgets_a_new_owner(tmp_path, bundle, caplog):
    state = tmp_path / "state"
    write_state_of(bundle, state, 9)
    with caplog.at_level(logging.INFO, logger="ser_stream"):
        adaptation = Adaptation.start(bundle, ModelSettings(state_dir=state), reset=True)
    assert adaptation.adapted_on == 0 and not (state / STATE_FILE).exists()
    assert any("adaptation reset" in r.getMessage() for r in caplog.records) and warnings_of(caplog) == []


def test_no_adapt_is_the_prior_alone_and_leaves_the_state_file_alone(tmp_path, bundle):
    state = tmp_path / "state"
    write_state_of(bundle, state, 9)
    before = (state / STATE_FILE).read_bytes()
    adaptation = Adaptation.start(bundle, ModelSettings(state_dir=state, adapt=False))
    for row in utterances(2 * SAVE_EVERY):
        adaptation.learn(row)
    adaptation.close()
    assert adaptation.adapted_on == 0 and not adaptation.learning
    assert (state / STATE_FILE).read_bytes() == before


def test_a_model_without_a_prior_has_no_adapter_and_adapt_on_says_so_once(tmp_path, caplog):
    plain = tiny_bundle(tmp_path / "model", prior=False)
    assert Adaptation.start(plain, ModelSettings()).adapter is None and warnings_of(caplog) == []
    adaptation = Adaptation.start(plain, ModelSettings(adapt=True))
    adaptation.learn(utterances(1)[0])
    assert adaptation.adapted_on is None
    assert warnings_of(caplog) == ["adapt is on, but model tiny has no adaptation prior: it classifies without"]


def test_a_reload_keeps_the_adaptation_of_the_same_model_and_another_model_starts_afresh(tmp_path, bundle, caplog):
    state = tmp_path / "state"
    adaptation = Adaptation.start(bundle, ModelSettings(state_dir=state))
    for row in utterances(7):
        adaptation.learn(row)
    assert adaptation.reconfigured(bundle, ModelSettings(state_dir=state, min_confidence=0.5)) is adaptation
    other = tiny_bundle(tmp_path / "other", "other", seed=5)
    with caplog.at_level(logging.INFO, logger="ser_stream"):
        fresh = adaptation.reconfigured(other, ModelSettings(state_dir=state))
    assert fresh.adapted_on == 0 and fresh.adapter.prior is other.prior and fresh.learning
    assert any(
        f"model changed to other {other.sha256[:12]}: adaptation starts afresh" in r.getMessage()
        for r in caplog.records
    )
    assert load_state(state / STATE_FILE, bundle.prior, bundle.sha256).heard == 7  # the old model's, saved first
    assert warnings_of(caplog) == []


def test_switching_adapt_off_and_on_by_reload_keeps_what_was_learned(tmp_path, bundle):
    state = tmp_path / "state"
    adaptation = Adaptation.start(bundle, ModelSettings(state_dir=state))
    for row in utterances(3):
        adaptation.learn(row)
    off = adaptation.reconfigured(bundle, ModelSettings(state_dir=state, adapt=False))
    assert off.adapted_on == 0 and not off.learning
    on = off.reconfigured(bundle, ModelSettings(state_dir=state, adapt=True))
    assert on.adapted_on == 3 and on.learning


def test_a_state_dir_that_cannot_be_used_is_a_config_error(tmp_path, bundle):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=f"state_dir {blocker}: cannot create it"):
        Adaptation.start(bundle, ModelSettings(state_dir=blocker))


def test_a_failing_save_is_one_warning_and_the_next_save_retries(tmp_path, bundle, caplog):
    state = tmp_path / "state"
    adaptation = Adaptation.start(bundle, ModelSettings(state_dir=state))
    (state / STATE_FILE).mkdir()  # the rename onto it fails, every time, until it goes
    for row in utterances(3 * SAVE_EVERY):
        adaptation.learn(row)
    wait_until(lambda: warnings_of(caplog), 10, "the failing save's warning")
    (state / STATE_FILE).rmdir()
    adaptation.close()
    [warning] = warnings_of(caplog)  # one, however many saves failed
    assert warning.startswith(f"could not save the adaptation state to {state / STATE_FILE}")
    assert saved(state, bundle) == 3 * SAVE_EVERY


def test_a_reload_that_only_recalibrates_the_model_applies_it_and_keeps_the_adaptation(tmp_path):
    """A new calibration or abstention threshold changes the manifest, not the arrays (the same SHA-256):
    the reload must still take the new manifest, and the statistics learned stay valid."""
    path = tiny_bundle_path(tmp_path / "model")
    config = tmp_path / "config.toml"
    config.write_text(f'model = "{path}"\n')
    settings = resolve(config, {})
    classifier = Classifier(load_bundle(path))
    adaptation = Adaptation.start(classifier.bundle, settings.model)
    for row in utterances(6):
        adaptation.learn(row)
    x = utterances(1, seed=9)[0]
    before = classifier.predict(x, adaptation.adapter)

    manifest = json.loads(manifest_path(path).read_text())
    manifest["calibration"] = {"method": "temperature", "temperature": 3.0}
    manifest_path(path).write_text(json.dumps(manifest))
    reloaded, new_settings = Reloader(config, {}, settings, classifier)()
    assert reloaded.bundle.section("calibration") == {"method": "temperature", "temperature": 3.0}
    adaptation = adaptation.reconfigured(reloaded.bundle, new_settings.model)
    after = reloaded.predict(x, adaptation.adapter)
    assert after.adapted_on == before.adapted_on == 6
    assert after.label == before.label and after.confidence < before.confidence  # softened by T = 3
