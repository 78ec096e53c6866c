"""`ser-stream classify` as a user runs it: a real subprocess over real RAVDESS clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import soxr
from threadpoolctl import threadpool_info, threadpool_limits

from ser_stream.audio import load_audio
from ser_stream.model import Classifier, classify_files, load_bundle, single_threaded_blas
from testkit.live import clip_path, free_endpoint
from tests.conftest import SHIPPED_MODEL, run_cli
from tests.test_audio import bad_files
from tests.test_audio_files import truncated_wav

SEED_CODES = {2: "calm", 3: "happy", 6: "fearful", 7: "disgust"}


def test_json_lines_match_the_in_process_classifier(ravdess):
    files = [clip_path(ravdess, code, actor) for code in SEED_CODES for actor in (3, 14)]
    result = run_cli("classify", "--json", *map(str, files))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == [str(f) for f in files]
    single_threaded_blas()  # as classify runs it: BLAS's thread count moves the last bits
    classifier = Classifier(load_bundle(SHIPPED_MODEL))
    for record, path in zip(records, files, strict=True):
        expected = classifier.classify_recording(load_audio(path), 16000)
        assert set(record) == {"file", "label", "confidence", "probabilities", "adapted_on", "uncertain", "intensity"}
        assert list(record["probabilities"]) == classifier.bundle.labels
        assert sum(record["probabilities"].values()) == pytest.approx(1.0)
        assert record["confidence"] == max(record["probabilities"].values())
        assert record["label"] == expected.label
        assert record["confidence"] == pytest.approx(expected.confidence, abs=1e-12)
        assert record["adapted_on"] == 0  # each file alone: the prior's statistics
        assert record["uncertain"] == expected.uncertain(classifier.bundle.min_confidence)
        assert record["intensity"] == pytest.approx(expected.intensity, abs=1e-12)


def test_the_classifier_takes_an_utterance_at_any_rate_and_resamples_it_itself(ravdess):
    classifier = Classifier(load_bundle(SHIPPED_MODEL))
    samples, rate = soundfile.read(clip_path(ravdess, 2, 1), dtype="float32")
    at_48k = soxr.resample(samples, rate, 48000)
    at_model_rate = soxr.resample(at_48k, 48000, classifier.sample_rate)
    assert classifier.classify(at_48k, 48000) == classifier.classify(at_model_rate, classifier.sample_rate)
    stereo_44k = np.column_stack([soxr.resample(samples, rate, 44100)] * 2)
    recording = classifier.classify_recording(stereo_44k, 44100)
    assert recording.label == "calm"
    assert recording.confidence == pytest.approx(classifier.classify_recording(samples, rate).confidence, abs=0.05)


def test_shipped_model_recognises_its_training_speakers(ravdess):
    """A sanity check of the bundle end to end, not a generalisation claim (see models/README.md)."""
    files = [clip_path(ravdess, code, actor, intensity=2) for code in SEED_CODES for actor in range(1, 21, 2)]
    result = run_cli("classify", "--json", *map(str, files))
    assert result.returncode == 0, result.stderr
    labels = [json.loads(line)["label"] for line in result.stdout.splitlines()]
    truth = [SEED_CODES[int(f.name.split("-")[2])] for f in files]
    assert np.mean(np.array(labels) == np.array(truth)) >= 0.9


def test_plain_output_is_tab_separated(ravdess):
    result = run_cli("classify", str(clip_path(ravdess, 3, 5)))
    file, label, confidence = result.stdout.strip().split("\t")
    assert file.endswith("03-01-03-01-01-01-05.flac")
    assert result.returncode == 0 and label in SEED_CODES.values() and 0 < float(confidence) <= 1


def test_bad_files_get_one_line_each_and_good_files_still_classified(tmp_path, ravdess):
    bad = bad_files(tmp_path)
    good = clip_path(ravdess, 6, 8)
    args = [str(bad["missing"][0]), str(good), *(str(path) for path, _ in list(bad.values())[1:])]
    result = run_cli("classify", "--json", *args)
    assert result.returncode == 1
    assert [json.loads(line)["file"] for line in result.stdout.splitlines()] == [str(good)]
    lines = result.stderr.splitlines()
    assert len(lines) == len(bad)
    assert "Traceback" not in result.stderr
    for line, (path, reason) in zip(lines, bad.values(), strict=True):
        assert line.startswith("ser-stream: ") and str(path) in line and reason in line


def copy_of_shipped_model(folder, **manifest_changes):
    model = folder / "m.npz"
    model.write_bytes(SHIPPED_MODEL.read_bytes())
    manifest = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())
    (folder / "m.json").write_text(json.dumps({**manifest, **manifest_changes}))
    return model


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("tamper", "does not match the manifest"),
        ("truncate", "does not match the manifest"),
        ("missing manifest", "manifest m.json is missing"),
        ("missing", "no such file"),
        ("another format", "manifest format 'ser-stream.model/1' is not 'ser-stream.model/2'"),
        ("unknown labels", "differ from the manifest's"),
    ],
)
def test_bad_model_is_one_line_and_exit_3(tmp_path, ravdess, damage, message):
    changes = {"another format": {"format": "ser-stream.model/1"}, "unknown labels": {"labels": ["calm", "bored"]}}
    model = copy_of_shipped_model(tmp_path, **changes.get(damage, {}))
    if damage == "tamper":
        model.write_bytes(model.read_bytes() + b"\0")
    elif damage == "truncate":
        model.write_bytes(model.read_bytes()[:1000])
    elif damage == "missing manifest":
        (tmp_path / "m.json").unlink()
    elif damage == "missing":
        model.unlink()
    for command in (["classify"], ["run", "--source"]):
        result = run_cli(*command, str(clip_path(ravdess, 2, 1)), "--model", str(model))
        assert result.returncode == 3, result.stderr
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr and "Traceback" not in result.stderr
        assert result.stdout == ""


def test_a_model_from_another_scikit_learn_is_used_with_a_warning_at_start(tmp_path, ravdess):
    versions = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())["versions"]
    model = copy_of_shipped_model(tmp_path, versions={**versions, "scikit_learn": "0.24.2"})
    clip = str(clip_path(ravdess, 2, 1))
    for command in (["classify", clip], ["run", "--source", clip, "--no-realtime", "--publish", free_endpoint()]):
        result = run_cli(*command, "--model", str(model))
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines()[0].startswith(
            f"ser-stream: warning: model {model} was trained with scikit-learn 0.24.2, this machine has "
        )


def test_usage_errors_are_one_line():
    result = run_cli("classify")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "FILE" in result.stderr
    result = run_cli("frobnicate")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1


def test_parallel_jobs_print_what_one_job_prints_in_file_order(tmp_path, ravdess):
    good = [clip_path(ravdess, code, actor) for code in SEED_CODES for actor in (2, 9)]
    good.insert(6, truncated_wav(ravdess, tmp_path))  # a worker's warning: printed in its file's turn
    files = [*map(str, good[:3]), str(tmp_path / "missing.wav"), *map(str, good[3:])]
    serial = run_cli("classify", "--jobs", "1", *files)
    parallel = run_cli("classify", "--jobs", "3", *files)
    assert serial.returncode == parallel.returncode == 1
    assert parallel.stdout == serial.stdout
    assert [line.split("\t")[0] for line in parallel.stdout.splitlines()] == [str(f) for f in good]
    assert parallel.stderr == serial.stderr
    missing, truncated = serial.stderr.splitlines()
    assert missing == f"ser-stream: {tmp_path / 'missing.wav'}: no such file"
    assert truncated.startswith(f"ser-stream: warning: {good[6]}: truncated: ")


@pytest.mark.parametrize("jobs", ["0", "-2", "many"])
def test_jobs_must_be_a_positive_whole_number(jobs):
    result = run_cli("classify", "--jobs", jobs, "a.wav")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "--jobs" in result.stderr


def test_classifying_runs_blas_in_one_thread_and_the_classifier_alone_does_not(ravdess):
    """Serving sets it once for the process (BLAS threads only cost a busy device); building a
    Classifier in someone else's process, a training run's say, leaves their BLAS alone."""
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    if not blas:
        pytest.skip("numpy uses no BLAS that threadpoolctl knows")
    before = max(pool["num_threads"] for pool in blas)  # earlier tests in this process may have set 1
    threadpool_limits(limits=2, user_api="blas")
    bundle = load_bundle(SHIPPED_MODEL)
    try:
        Classifier(bundle)
        assert all(pool["num_threads"] == 2 for pool in threadpool_info() if pool["user_api"] == "blas")
        [(_, prediction)] = classify_files(bundle, [str(clip_path(ravdess, 2, 1))], jobs=1)
        assert prediction.label == "calm"
        assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
    finally:
        threadpool_limits(limits=before, user_api="blas")
