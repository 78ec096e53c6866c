"""Adaptation, abstention and intensity served for real: `run` and `classify` as subprocesses, with a
small model the test trains (testkit.quick_model, actors 1-12), on the voices it never heard (13-20)."""

from __future__ import annotations

import json
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
from sklearn.metrics import roc_auc_score

from ser_stream.adapter_state import STATE_FILE
from ser_stream.events import TOPIC_EMOTION, TOPIC_INTERIM, TOPIC_SPEECH, TOPIC_STATUS, validator_for
from testkit.live import Lines, cli_executable, clip_path, free_endpoint, wait_until
from testkit.noisy import RATE, Stream, overlapping, voice_stream
from testkit.quick_model import TRAINING_ACTORS, clip_features, quick_bundle
from tests.conftest import run_cli
from train.rooms import pink_noise

pytestmark = [pytest.mark.ravdess, pytest.mark.slow]

SEED_CODES = {2: "calm", 3: "happy", 6: "fearful", 7: "disgust"}
#: Every clip of the four emotions of one actor: (emotion, intensity, statement, repetition).
CLIPS = [(e, i, s, r) for e in SEED_CODES for i in (1, 2) for s in (1, 2) for r in (1, 2)]
UNSEEN = tuple(range(13, 21))
assert not set(UNSEEN) & set(TRAINING_ACTORS)
MIN_CONFIDENCE = 0.6  # the quick model's abstention threshold


@pytest.fixture(scope="module")
def models(ravdess, tmp_path_factory) -> tuple[Path, Path]:
    """The quick model (adaptation prior, intensity head, calibration, abstention) and another one
    from the same clips (another seed, so other arrays and another SHA-256)."""
    folder = tmp_path_factory.mktemp("models")
    clips = clip_features(ravdess, TRAINING_ACTORS)
    quick = quick_bundle(ravdess, folder, "quick", temperature=1.3, min_confidence=MIN_CONFIDENCE, clips=clips)
    return quick, quick_bundle(ravdess, folder, "quick-other", clips=clips, seed=1)


#: Each voice is streamed in two random orders and each of them reversed: every clip is heard once in
#: a first half and once in a second half, so what differs between the halves is what was heard before.
PLAYS = ("one", "one reversed", "two", "two reversed")


@pytest.fixture(scope="module")
def voices(ravdess, tmp_path_factory) -> dict[tuple[int, str], tuple[Path, Stream]]:
    """Each unseen actor's 32 clips in the orders of PLAYS, 0.3-1.5 s of silence between: one stream file each."""
    folder = tmp_path_factory.mktemp("voices")
    streams = {}
    for actor in UNSEEN:
        rng = np.random.default_rng(actor)
        order: list[int] = []
        for play in PLAYS:
            order = order[::-1] if play.endswith("reversed") else [int(i) for i in rng.permutation(len(CLIPS))]
            stream = voice_stream(ravdess, actor, CLIPS, rng, order)
            path = folder / f"actor-{actor:02d}-{play.replace(' ', '-')}.wav"
            soundfile.write(path, stream.samples, RATE, subtype="PCM_16")
            streams[actor, play] = (path, stream)
    return streams


@dataclass(frozen=True)
class Served:
    finals: list[dict]  # topic emotion
    interims: list[dict]
    statuses: list[dict]
    stderr: str


def topic_of(event: dict) -> str:
    """The topic an event printed by `run --print` went out on."""
    schemas = {"ser-stream.speech/1": TOPIC_SPEECH, "ser-stream.status/1": TOPIC_STATUS}
    return schemas.get(event["schema"], TOPIC_INTERIM if event.get("final") is False else TOPIC_EMOTION)


def served(source: Path, model: Path, *flags: str) -> Served:
    """`run` on a file as fast as it goes: its events (each validated against its topic's schema) and stderr."""
    result = run_cli(
        "run", "--source", str(source), "--no-realtime", "--print", "--model", str(model),
        "--publish", free_endpoint(), *flags,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    for event in events:
        validator_for(topic_of(event)).validate(event)
    return Served(
        finals=[event for event in events if topic_of(event) == TOPIC_EMOTION],
        interims=[event for event in events if topic_of(event) == TOPIC_INTERIM],
        statuses=[event for event in events if topic_of(event) == TOPIC_STATUS],
        stderr=result.stderr,
    )


def truth(event: dict, stream: Stream) -> tuple[str, bool] | None:
    """(emotion, strong) of the one clip an event's utterance covers; None if it covers none or several."""
    covered = overlapping(int(event["start_s"] * RATE), int(event["end_s"] * RATE), stream.spans)
    if len(covered) != 1:
        return None
    emotion, intensity, *_ = CLIPS[stream.order[covered[0]]]
    return SEED_CODES[emotion], intensity == 2


@pytest.fixture(scope="module")
def runs(models, voices) -> dict[tuple[str, int, str], Served]:
    """Every stream through `run`, adapting, and each voice's first through `run --no-adapt`, two at a time
    (two cores): (mode, actor, play) → what `served` returns."""
    quick, _ = models
    jobs = {("adapt", *key): (path, quick, "--adapt") for key, (path, _) in voices.items()}
    jobs |= {
        ("no-adapt", actor, PLAYS[0]): (voices[actor, PLAYS[0]][0], quick, "--no-adapt", "--interim-ms", "0")
        for actor in UNSEEN
    }
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(jobs, pool.map(lambda job: served(*job), jobs.values()), strict=True))


def right_or_not(emotions: list[dict], stream: Stream) -> list[bool | None]:
    return [None if (t := truth(e, stream)) is None else e["label"] == t[0] for e in emotions]


def test_a_stream_of_one_unseen_voice_adapts_as_it_goes(runs, voices):
    first, second, adapted, plain = [], [], [], []
    for (actor, play), (_, stream) in voices.items():
        run = runs["adapt", actor, play]
        emotions, statuses = run.finals, run.statuses
        assert [e["adapted_on"] for e in emotions] == list(range(len(emotions)))  # grows by one per utterance
        assert statuses[-1]["state"] == "stopping" and statuses[-1]["counters"]["adapted_on"] == len(emotions)
        # An interim result is standardised with what the finals before it taught, and never learned from
        # (nor is an utterance too short to classify, which had interim results and no final).
        finals = [e["utterance"] for e in emotions]
        assert run.interims
        assert all(e["adapted_on"] == sum(f < e["utterance"] for f in finals) for e in run.interims)
        assert len(CLIPS) - 2 <= len(emotions) <= 1.2 * len(CLIPS)  # about one event per clip
        scored = right_or_not(emotions, stream)
        half = len(scored) // 2
        first += [r for r in scored[:half] if r is not None]
        second += [r for r in scored[half:] if r is not None]
        if play == PLAYS[0]:
            adapted += [r for r in scored if r is not None]
            unadapted = runs["no-adapt", actor, play].finals
            assert {e["adapted_on"] for e in unadapted} == {0}  # the prior alone
            plain += [r for r in right_or_not(unadapted, stream) if r is not None]
    print(
        f"\n{len(voices)} streams of {len(UNSEEN)} unseen voices, {len(first) + len(second)} utterances scored: "
        f"first halves {np.mean(first):.1%} ({sum(first)}/{len(first)}), second halves {np.mean(second):.1%} "
        f"({sum(second)}/{len(second)}); one play each: adapting {np.mean(adapted):.1%}, the prior alone "
        f"{np.mean(plain):.1%}"
    )
    assert len(first) + len(second) >= 0.9 * len(voices) * len(CLIPS)
    # Most of the gain comes with the first utterances heard (the first event, the prior alone, scores
    # lowest): the second halves beat the prior alone clearly, and keep what the first halves reached
    # (within the spread of ~500 utterances a half: here about 66% each, where a strict >= is a coin toss).
    assert np.mean(adapted) >= np.mean(plain) + 0.03
    assert np.mean(second) >= np.mean(plain) + 0.03
    assert np.mean(second) >= np.mean(first) - 0.03


def test_events_say_uncertain_below_the_threshold_and_how_strong_the_emotion_is(runs, voices, models):
    intensities, strong = [], []
    for key, (_, stream) in voices.items():
        emotions = runs[("adapt", *key)].finals
        for event in emotions:
            assert event["label"] == max(event["probabilities"], key=event["probabilities"].get)
            assert event["uncertain"] == (event["confidence"] < MIN_CONFIDENCE)
            if (t := truth(event, stream)) is not None:
                intensities.append(event["intensity"])
                strong.append(t[1])
    every = [e for key in voices for e in runs[("adapt", *key)].finals]
    share = np.mean([e["uncertain"] for e in every])
    auc = roc_auc_score(strong, intensities)
    print(
        f"\nuncertain below {MIN_CONFIDENCE}: {share:.0%} of {len(every)} events; "
        f"intensity AUC (strong vs normal) {auc:.2f}"
    )
    assert 0 < share < 1
    assert auc >= 0.7  # the head tells strong from normal on voices it never heard

    # The flag overrides the model's threshold; the label stays the most probable emotion.
    path, _ = voices[UNSEEN[0], PLAYS[0]]
    strict = served(path, models[0], "--min-confidence", "0.95").finals
    default = runs["adapt", UNSEEN[0], PLAYS[0]].finals
    assert all(e["uncertain"] == (e["confidence"] < 0.95) for e in strict)
    assert sum(e["uncertain"] for e in strict) > sum(e["uncertain"] for e in default)
    assert [e["label"] for e in strict] == [e["label"] for e in default]


def test_the_state_dir_keeps_the_adaptation_across_restarts_and_a_bad_state_file_is_one_warning(
    models, voices, tmp_path
):
    quick, _ = models
    path, _ = voices[UNSEEN[0], PLAYS[0]]
    state = tmp_path / "state"
    heard = len(served(path, quick, "--state-dir", str(state)).finals)
    assert (state / STATE_FILE).stat().st_size < 50_000
    again = served(path, quick, "--state-dir", str(state))
    assert again.finals[0]["adapted_on"] == heard and again.statuses[-1]["counters"]["adapted_on"] == 2 * heard
    assert f"adaptation restored from {state / STATE_FILE}: {heard} utterances heard" in again.stderr

    reset = served(path, quick, "--state-dir", str(state), "--reset-adaptation")
    assert reset.finals[0]["adapted_on"] == 0 and "adaptation reset" in reset.stderr

    data = (state / STATE_FILE).read_bytes()
    (state / STATE_FILE).write_bytes(data[: len(data) // 2])  # a truncated copy
    fresh = served(path, quick, "--state-dir", str(state))
    assert fresh.finals[0]["adapted_on"] == 0
    warnings = [line for line in fresh.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"ser-stream: warning: adaptation state {state / STATE_FILE}: ")
    assert "Traceback" not in fresh.stderr


def test_sighup_keeps_the_adaptation_and_a_new_model_starts_afresh(models, ravdess, tmp_path):
    quick, other = models
    stream = voice_stream(ravdess, UNSEEN[1], CLIPS[::5][:5], np.random.default_rng(0))
    source = tmp_path / "five.wav"
    soundfile.write(source, stream.samples, RATE, subtype="PCM_16")
    config = tmp_path / "config.toml"
    settings = f'source = "{source}"\npublish = "{free_endpoint()}"\nprint = true\nheartbeat_s = 1\n'
    config.write_text(settings + f'model = "{quick}"\n')
    daemon = subprocess.Popen(
        [cli_executable(), "run", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    out, err = Lines(daemon.stdout), Lines(daemon.stderr)

    def emotions() -> list[dict]:
        return [event for line in list(out.lines) if topic_of(event := json.loads(line)) == TOPIC_EMOTION]

    def reloaded(text: str) -> bool:
        return any(text in json.loads(line).get("message", "") for line in list(out.lines))

    try:
        wait_until(lambda: len(emotions()) >= 2, 60, "two emotion events")
        daemon.send_signal(signal.SIGHUP)  # the same config and model
        wait_until(lambda: reloaded("(unchanged)"), 30, "the reload")
        count = len(emotions())
        wait_until(lambda: len(emotions()) >= count + 1, 60, "an event after the reload")
        config.write_text(settings + f'model = "{other}"\n')
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: reloaded("reloaded: model quick-other"), 30, "the reload to another model")
        assert daemon.wait(timeout=90) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    events = emotions()
    before = [e["adapted_on"] for e in events if e["model"]["name"] == "quick"]
    after = [e["adapted_on"] for e in events if e["model"]["name"] == "quick-other"]
    assert events[: len(before)] == [e for e in events if e["model"]["name"] == "quick"]
    assert before == list(range(len(before))) and len(before) > count  # kept through the first reload
    assert after == list(range(len(after))) and after  # another model: afresh
    assert "adaptation starts afresh" in err.text() and "Traceback" not in err.text()


def classified(model: Path, files: list[str], *flags: str) -> list[dict]:
    result = run_cli("classify", "--json", "--model", str(model), *flags, *files)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_classify_adapt_takes_the_files_as_one_voice(models, ravdess):
    quick, _ = models
    plain_right = adapted_right = 0
    for actor in UNSEEN:
        files = [str(clip_path(ravdess, e, actor, i, s, r)) for e, i, s, r in CLIPS]
        plain = classified(quick, files)
        adapted = classified(quick, files, "--adapt")
        assert [r["file"] for r in adapted] == files
        assert {r["adapted_on"] for r in plain} == {0} and {r["adapted_on"] for r in adapted} == {len(files)}
        assert all(a["probabilities"] != p["probabilities"] for a, p in zip(adapted, plain, strict=True))
        labels = [SEED_CODES[e] for e, *_ in CLIPS]
        plain_right += sum(r["label"] == label for r, label in zip(plain, labels, strict=True))
        adapted_right += sum(r["label"] == label for r, label in zip(adapted, labels, strict=True))
    total = len(UNSEEN) * len(CLIPS)
    print(
        f"\nclassify, {total} clips of unseen voices: each alone {plain_right / total:.1%}, "
        f"--adapt {adapted_right / total:.1%}"
    )
    assert adapted_right > plain_right
    # Deterministic, and the same whatever the number of processes computing features.
    assert classified(quick, files, "--adapt", "--jobs", "2") == classified(quick, files, "--adapt", "--jobs", "1")
    assert classified(quick, files, "--adapt", "--jobs", "1") == adapted


def test_classify_adapt_with_a_model_without_a_prior_says_so_and_classifies_each_file(ravdess, models):
    plain = quick_bundle(ravdess, models[0].parent, "plain", adapt=False, clips=clip_features(ravdess, (1, 2)))
    files = [str(clip_path(ravdess, 2, 13)), str(clip_path(ravdess, 3, 13))]
    result = run_cli("classify", "--json", "--adapt", "--model", str(plain), *files)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "ser-stream: warning: model plain has no adaptation prior: --adapt is ignored, each file is classified alone"
    ]
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        json.loads(line) for line in run_cli("classify", "--json", "--model", str(plain), *files).stdout.splitlines()
    ]
    assert "adapted_on" not in result.stdout


def test_status_events_say_the_noise_floor_once_it_is_known(tmp_path, ravdess):
    """The room's floor is in the counters once the segmenter heard it; the shipped model adapts to what it hears."""
    level_dbfs = -45.0
    rng = np.random.default_rng(3)
    speech, _ = soundfile.read(clip_path(ravdess, 3, 14), dtype="float32")
    noise = 10 ** (level_dbfs / 20) * pink_noise(8 * RATE, rng)
    noise[2 * RATE : 2 * RATE + speech.size] += speech
    source = tmp_path / "room.wav"
    soundfile.write(source, noise, RATE, subtype="PCM_16")
    result = run_cli("run", "--source", str(source), "--print", "--publish", free_endpoint(), "--heartbeat-s", "1")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    statuses = [e for e in events if topic_of(e) == TOPIC_STATUS]
    assert statuses[0]["state"] == "started" and "noise_floor_dbfs" not in statuses[0]["counters"]  # nothing heard
    floors = [s["counters"]["noise_floor_dbfs"] for s in statuses if s["state"] == "running"]  # every second
    assert len(floors) >= 5 and all(level_dbfs - 4 <= floor <= level_dbfs for floor in floors), floors
    finals = [e for e in events if topic_of(e) == TOPIC_EMOTION]
    assert [e["adapted_on"] for e in finals] == [0]  # the one utterance, classified with the prior alone
    assert statuses[-1]["counters"]["adapted_on"] == 1  # then learned from
    for event in events:
        validator_for(topic_of(event)).validate(event)
