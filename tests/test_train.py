"""`python -m train` end to end on a small subset: the original release layout, reproducibility, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import soxr

from ser_stream.adapter import DEFAULT_HORIZON, DEFAULT_PRIOR_WEIGHT, DEFAULT_VAR_FLOOR, AdapterPrior, VoiceAdapter
from ser_stream.model import load_bundle
from tests.conftest import run_train
from train.adaptation import RECIPES
from train.augment import SPEEDS
from train.dataset import load_dataset
from train.experiments import DATAFLAIR_PARAMS, SHIPPED_MEMBERS
from train.pipeline import OURS_TRAINING, SHIPPED_FEATURES, SHIPPED_TRIM
from train.ravdess import SEED_EMOTIONS, scan
from train.room_augment import ROOM_COPIES
from train.rooms import PROTOCOL_MICROPHONES, PROTOCOL_ROOMS

SEED_CODES = (2, 3, 6, 7)


@pytest.fixture(scope="module")
def original_layout(ravdess, tmp_path_factory):
    """Actors 1-3, the seed's emotions, re-made as the original release: 48 kHz WAV, same names."""
    root = tmp_path_factory.mktemp("ravdess48k")
    for source in sorted(ravdess.glob("Actor_0[123]/*.flac")):
        if int(source.name.split("-")[2]) not in SEED_CODES:
            continue
        samples, rate = soundfile.read(source, dtype="float32")
        target = root / source.parent.name / source.with_suffix(".wav").name
        target.parent.mkdir(exist_ok=True)
        soundfile.write(target, soxr.resample(samples, rate, 48000), 48000, subtype="PCM_16")
    (root / "Actor_01" / "03-01-02-01-01-01.wav").write_bytes(b"")  # a bad name: skipped, counted
    return root


def train(data, out, cache):
    result = run_train(
        "--data",
        str(data),
        "--quick",
        "--repeats",
        "2",
        "--jobs",
        "2",
        "--out",
        str(out / "models"),
        "--report",
        str(out / "report"),
        "--cache",
        str(cache),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.slow
def test_retraining_twice_gives_identical_metrics_and_model(original_layout, tmp_path):
    cache = tmp_path / "cache"
    first = train(original_layout, tmp_path / "one", cache)
    cached = sorted(cache.rglob("*.npy"))
    assert len(cached) == 3 * 96  # seed and shipped features per clip, and its room copies
    mtimes = [p.stat().st_mtime_ns for p in cached]
    second = train(original_layout, tmp_path / "two", cache)
    assert [p.stat().st_mtime_ns for p in cached] == mtimes  # the second run read the cache

    assert "skipped 1 files" in first.stderr
    assert "| DataFlair MLP |" in first.stdout and first.stdout == second.stdout

    metrics = [json.loads((tmp_path / run / "report" / "metrics.json").read_text()) for run in ("one", "two")]
    assert metrics[0]["models"] == metrics[1]["models"]
    assert metrics[0]["grid_search"] == metrics[1]["grid_search"]
    assert metrics[0]["n_clips"] == 96 and metrics[0]["n_actors"] == 3
    for name, row in metrics[0]["models"].items():
        assert len(row["actor"]["scores"]) == 3
        # protocol (a) for the seed's rows and the recipe that ships, not for the variants it was chosen over
        assert ("split" in row) == (not name.startswith("ours: ") or name == metrics[0]["shipped"])
        assert "split" not in row or len(row["split"]["scores"]) == 2

    bundles = [load_bundle(tmp_path / run / "models" / "ser-mlp.npz") for run in ("one", "two")]
    assert bundles[0].sha256 == bundles[1].sha256
    assert bundles[0].manifest == bundles[1].manifest
    assert bundles[0].manifest["training_data"]["clips"] == 96
    probe = np.random.default_rng(0).standard_normal(bundles[0].feature_params.n_features)
    assert bundles[0].predict_proba(probe) == bundles[1].predict_proba(probe)

    report = tmp_path / "one" / "report"
    for name in ("report.md", "loss_curves.png", "confusion_split.png", "confusion_actor.png"):
        assert (report / name).stat().st_size > 0
    assert "![loss curves](loss_curves.png)" in (report / "report.md").read_text()


@pytest.mark.slow
def test_a_quick_adapted_run_carries_the_prior_and_reports_protocol_c(ravdess, tmp_path):
    cache = tmp_path / "cache"
    result = run_train(
        "--data", str(ravdess), "--actors", "1-3", "--quick", "--repeats", "2", "--jobs", "2", "--adaptation", "online",
        "--out", str(tmp_path / "models"), "--report", str(tmp_path / "report"), "--cache", str(cache),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    bundle = load_bundle(tmp_path / "models" / "ser-mlp.npz")
    section = bundle.section("adaptation")
    assert section["training"]["mode"] == "online"
    assert (section["prior_weight"], section["horizon"], section["var_floor"]) == (
        DEFAULT_PRIOR_WEIGHT, DEFAULT_HORIZON, DEFAULT_VAR_FLOOR,
    )  # fmt: skip
    clips = scan(ravdess, SEED_EMOTIONS, {1, 2, 3}).clips
    ours = load_dataset(clips, SHIPPED_FEATURES, cache, 1, SPEEDS, SHIPPED_TRIM)  # the run's cached features
    originals = ours.X[ours.original].astype(np.float64)
    assert np.allclose(bundle.extra("adaptation_mean"), originals.mean(axis=0))
    within = np.mean([originals[ours.groups == actor].var(axis=0) for actor in (1, 2, 3)], axis=0)
    assert np.allclose(bundle.extra("adaptation_var"), within)
    prior = AdapterPrior.from_section(section, bundle.extra("adaptation_mean"), bundle.extra("adaptation_var"))
    assert np.allclose(VoiceAdapter(prior).normalise(originals[0]), (originals[0] - prior.mean) / np.sqrt(prior.var))

    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["adaptation"]["chosen"] == "online"
    streams = {row: m["stream"] for row, m in metrics["models"].items() if "stream" in m}
    # each recipe with one network (they are chosen between so), and the shipped model: the chosen one's networks
    shipped = metrics["shipped"]
    assert shipped == f"shipped: {RECIPES['online']}, {SHIPPED_MEMBERS} networks" and len(streams) == len(RECIPES) + 1
    assert bundle.mlp.members == bundle.manifest["network"]["members"] == SHIPPED_MEMBERS
    assert bundle.manifest["estimator"]["members"] == SHIPPED_MEMBERS
    rooms = {row: m["rooms"] for row, m in metrics["models"].items() if "rooms" in m}
    assert set(rooms) == set(streams)
    for by_room in rooms.values():
        assert list(by_room) == [room.name for room in PROTOCOL_ROOMS]
        assert all(r["clips"] == 3 * 32 and 0 <= r["accuracy"] <= 1 for r in by_room.values())
    # protocol (e): the same voices through other microphones, reported beside (d), not chosen by
    microphones = {row: m["microphones"] for row, m in metrics["models"].items() if "microphones" in m}
    assert set(microphones) == set(streams)
    for by_mic in microphones.values():
        assert list(by_mic) == [mic.name for mic in PROTOCOL_MICROPHONES]
        assert all(r["clips"] == 3 * 32 and 0 <= r["accuracy"] <= 1 for r in by_mic.values())
    evaluation = bundle.manifest["metrics"][shipped]
    assert evaluation["microphone"] == {mic: r["accuracy"] for mic, r in microphones[shipped].items()}

    def chosen_by(row: str) -> float:  # protocols (c) and (d), equally weighted
        c = np.mean([mix["overall"] for mix in streams[row].values()])
        return np.mean([c, np.mean([r["accuracy"] for r in rooms[row].values()])])

    recipes = [row for row in streams if row != shipped]
    assert max(recipes, key=chosen_by) == f"ours: {RECIPES[metrics['adaptation']['best']]}"  # what auto would ship
    assert bundle.manifest["training_data"]["augmentation"]["rooms"]["copies_per_clip"] == ROOM_COPIES
    # our model trains with our budget, the seed's with DataFlair's: each search's last rung is its full budget
    assert OURS_TRAINING.items() <= bundle.manifest["estimator"]["params"].items()
    searches = metrics["grid_search"].items()
    budgets = {name: max(r["epochs"] for stage in search["stages"] for r in stage) for name, search in searches}
    assert budgets == {
        "seed features, unscaled": DATAFLAIR_PARAMS["max_iter"],
        "shipped features, scaled": OURS_TRAINING["max_iter"],
    }
    for stream in streams.values():
        assert set(stream) == {"balanced", "neutral-heavy", "moods"}  # one actor per fold: no change of voice
        balanced, heavy = stream["balanced"], stream["neutral-heavy"]
        assert balanced["clips_per_stream"] == 32 and heavy["clips_per_stream"] == 24  # 4 neutral + 8 calm + 12
        assert set(balanced["heard"]) == {"0", "1", "5", "10", "20"}
        assert set(balanced["per_actor"]) == {"1", "2", "3"}
        assert 0 <= balanced["overall"] <= 1 and 0 <= heavy["all"] <= 1
    report = tmp_path / "report"
    assert (report / "streams.png").stat().st_size > 0 and (report / "rooms.png").stat().st_size > 0
    assert "## Protocol (d): the room" in (report / "report.md").read_text()
    assert "## Protocol (e): other microphones" in (report / "report.md").read_text()
    assert "## Protocol (c): a device hearing one voice" in (report / "report.md").read_text()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--data", "MISSING"], "no such data folder"),
        (["--data", "EMPTY"], "no RAVDESS speech clips"),
        (["--data", "EMPTY", "--emotions", "calm,joy"], "--emotions"),
        (["--data", "EMPTY", "--actors", "0-30"], "--actors"),
        (["--data", "EMPTY", "--adaptation", "always"], "--adaptation"),
        (["--data", "EMPTY", "--rooms", "-1"], "--rooms"),
        (["--data", "EMPTY", "--members", "0"], "--members ≥ 1"),
    ],
)
def test_user_errors_are_one_line(tmp_path, args, message):
    args = [{"EMPTY": str(tmp_path), "MISSING": str(tmp_path / "missing")}.get(a, a) for a in args]
    result = run_train(*args, "--cache", str(tmp_path / "cache"), timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert "Traceback" not in result.stderr
