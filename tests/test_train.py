"""`python -m train` end to end on a small subset: the original release layout, reproducibility, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import soxr

from ser_stream.model import load_bundle
from tests.conftest import run_train

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
    assert len(cached) == 2 * 96  # seed and shipped features per clip
    mtimes = [p.stat().st_mtime_ns for p in cached]
    second = train(original_layout, tmp_path / "two", cache)
    assert [p.stat().st_mtime_ns for p in cached] == mtimes  # the second run read the cache

    assert "skipped 1 files" in first.stderr
    assert "| DataFlair MLP |" in first.stdout and first.stdout == second.stdout

    metrics = [json.loads((tmp_path / run / "report" / "metrics.json").read_text()) for run in ("one", "two")]
    assert metrics[0]["models"] == metrics[1]["models"]
    assert metrics[0]["grid_search"] == metrics[1]["grid_search"]
    assert metrics[0]["n_clips"] == 96 and metrics[0]["n_actors"] == 3
    for row in metrics[0]["models"].values():
        assert len(row["split"]["scores"]) == 2 and len(row["actor"]["scores"]) == 3

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


@pytest.mark.parametrize(
    "args,message",
    [
        (["--data", "MISSING"], "no such data folder"),
        (["--data", "EMPTY"], "no RAVDESS speech clips"),
        (["--data", "EMPTY", "--emotions", "calm,joy"], "--emotions"),
        (["--data", "EMPTY", "--actors", "0-30"], "--actors"),
    ],
)
def test_user_errors_are_one_line(tmp_path, args, message):
    args = [{"EMPTY": str(tmp_path), "MISSING": str(tmp_path / "missing")}.get(a, a) for a in args]
    result = run_train(*args, "--cache", str(tmp_path / "cache"), timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert "Traceback" not in result.stderr
