"""Event builders against the shipped JSON Schema (wire format version 1)."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import fields
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from ser_stream.counters import Counters
from ser_stream.events import (
    EMOTION_SCHEMA,
    PROXY_COUNTERS,
    SPEECH_SCHEMA,
    STATUS_SCHEMA,
    TOPIC_EMOTION,
    TOPIC_INTERIM,
    TOPIC_PROXY,
    TOPIC_SPEECH,
    TOPIC_STATUS,
    TOPICS,
    emotion_event,
    load_schema,
    proxy_event,
    speech_event,
    status_event,
    validator_for,
)

MODEL = {"name": "ser-mlp", "sha256": hashlib.sha256(b"model").hexdigest()}
COUNTERS = Counters(frames_captured=1200, utterances=3, utterances_dropped_short=1, events_published=5, queue_depth=2)


def make_emotion(**overrides) -> dict:
    """An emotion payload as the publisher sends it: builder output plus `seq` and `latency_ms`."""
    fields = {
        "label": "happy",
        "confidence": np.float32(0.625),
        "probabilities": {"happy": np.float32(0.625), "sad": 0.25, "angry": np.float64(0.125)},
        "start_s": 1.5,
        "end_s": 3.25,
        "wall_end": datetime(2024, 5, 1, 12, 0, 3, 250000, tzinfo=timezone(timedelta(hours=2))),
        "source": "/data/stream.wav",
        "model": MODEL,
        "device": "kiosk-7",
    }
    return emotion_event(**(fields | overrides)) | {"seq": 7, "latency_ms": 84.5}


def make_status(**overrides) -> dict:
    fields = {
        "state": "running",
        "counters": COUNTERS,
        "uptime_s": 12.5,
        "source": "default",
        "model": MODEL,
        "device": "kiosk-7",
    }
    return status_event(**(fields | overrides)) | {"seq": 8}


def test_schema_file_is_valid_draft_2020_12():
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert set(schema["$defs"]) >= {TOPIC_EMOTION, TOPIC_STATUS}


def test_emotion_event_fields_and_schema():
    event = make_emotion()
    validator_for(TOPIC_EMOTION).validate(event)
    assert event["schema"] == EMOTION_SCHEMA
    assert event["duration_s"] == pytest.approx(1.75)
    assert event["timestamp"] == "2024-05-01T12:00:03.250000+02:00"
    assert event["model"] == MODEL
    # numpy scalars from the classifier become plain floats, so the event serialises as JSON
    assert json.loads(json.dumps(event)) == event
    assert all(type(p) is float for p in [event["confidence"], *event["probabilities"].values()])


def test_status_event_fields_and_schema():
    before = datetime.now(timezone.utc)
    event = make_status(message="listening on default at 16000 Hz")
    validator_for(TOPIC_STATUS).validate(event)
    assert event["schema"] == STATUS_SCHEMA
    assert event["counters"] == {
        "frames_captured": 1200,
        "frames_lost": 0,
        "overflows": 0,
        "utterances": 3,
        "utterances_dropped_short": 1,
        "events_published": 5,
        "drops": 0,
        "queue_drops": 0,
        "queue_depth": 2,
        "interim_dropped": 0,
        "uptime_s": 12.5,
    }
    # the wire order; readings not known (the adapter's, the noise floor) are left out
    assert list(event["counters"]) == [*(f.name for f in fields(Counters) if f.default is not None), "uptime_s"]
    assert before <= datetime.fromisoformat(event["timestamp"]) <= datetime.now(timezone.utc)
    assert event["message"].startswith("listening")
    assert "message" not in make_status()
    validator_for(TOPIC_STATUS).validate(make_status())


def test_readings_join_the_status_counters_once_a_stage_knows_them():
    shares = COUNTERS + Counters(adapted_on=12) + Counters(utterances=1, noise_floor_dbfs=-61.5)
    event = make_status(counters=shares)
    validator_for(TOPIC_STATUS).validate(event)
    assert event["counters"]["adapted_on"] == 12 and event["counters"]["noise_floor_dbfs"] == -61.5
    assert event["counters"]["utterances"] == 4  # totals still add up
    assert list(event["counters"]) == [*(f.name for f in fields(Counters)), "uptime_s"]


def test_an_emotion_event_carries_adaptation_abstention_and_intensity_when_known():
    event = make_emotion(adapted_on=np.int64(3), uncertain=np.bool_(True), intensity=np.float32(0.25))
    validator_for(TOPIC_EMOTION).validate(event)
    assert (event["adapted_on"], event["uncertain"], event["intensity"]) == (3, True, 0.25)
    assert json.loads(json.dumps(event)) == event
    assert make_emotion(adapted_on=0, uncertain=False)["uncertain"] is False
    assert not {"adapted_on", "uncertain", "intensity"} & set(EMOTION)


@pytest.mark.parametrize("state", ["started", "running", "device lost", "device back", "stopping"])
def test_every_status_state_validates(state):
    validator_for(TOPIC_STATUS).validate(make_status(state=state))


def test_builders_refuse_naive_time_and_unknown_state():
    with pytest.raises(ValueError, match="time zone"):
        make_emotion(wall_end=datetime(2024, 5, 1, 12, 0, 3))
    with pytest.raises(ValueError, match="unknown status state"):
        make_status(state="sleeping")


def test_validator_for_unknown_topic():
    with pytest.raises(ValueError, match="unknown topic"):
        validator_for("emotions")


def without(event: dict, *path: str) -> dict:
    event = copy.deepcopy(event)
    parent = event
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return event


def changed(event: dict, value, *path: str) -> dict:
    event = copy.deepcopy(event)
    parent = event
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return event


EMOTION = make_emotion()
STATUS = make_status()


@pytest.mark.parametrize(
    ("topic", "event"),
    [
        pytest.param(TOPIC_EMOTION, without(EMOTION, "label"), id="emotion missing label"),
        pytest.param(TOPIC_EMOTION, without(EMOTION, "seq"), id="emotion missing seq"),
        pytest.param(TOPIC_EMOTION, without(EMOTION, "latency_ms"), id="emotion missing latency"),
        pytest.param(TOPIC_EMOTION, without(EMOTION, "model", "sha256"), id="model missing sha256"),
        pytest.param(TOPIC_EMOTION, changed(EMOTION, "ser-stream.emotion/2", "schema"), id="wrong schema string"),
        pytest.param(TOPIC_EMOTION, changed(EMOTION, STATUS_SCHEMA, "schema"), id="status schema string"),
        pytest.param(TOPIC_EMOTION, changed(EMOTION, "0.6", "probabilities", "happy"), id="probability a string"),
        pytest.param(TOPIC_EMOTION, changed(EMOTION, 1.5, "probabilities", "sad"), id="probability above 1"),
        pytest.param(TOPIC_EMOTION, changed(EMOTION, "2024-05-01T12:00:03.250000", "timestamp"), id="naive time"),
        pytest.param(TOPIC_EMOTION, changed(EMOTION, 7.5, "seq"), id="seq fractional"),
        pytest.param(TOPIC_STATUS, EMOTION, id="emotion on status topic"),
        pytest.param(TOPIC_STATUS, changed(STATUS, "sleeping", "state"), id="unknown state"),
        pytest.param(TOPIC_STATUS, without(STATUS, "counters", "drops"), id="counters missing drops"),
        pytest.param(TOPIC_STATUS, without(STATUS, "counters", "uptime_s"), id="counters missing uptime"),
        pytest.param(TOPIC_STATUS, changed(STATUS, 1.5, "counters", "queue_depth"), id="counter not integer"),
        pytest.param(TOPIC_STATUS, changed(STATUS, 3, "message"), id="message not a string"),
        pytest.param(TOPIC_EMOTION, changed(EMOTION, -1, "adapted_on"), id="adapted_on negative"),
        pytest.param(TOPIC_EMOTION, changed(EMOTION, "yes", "uncertain"), id="uncertain not a boolean"),
        pytest.param(TOPIC_EMOTION, changed(EMOTION, 1.5, "intensity"), id="intensity above 1"),
        pytest.param(TOPIC_STATUS, changed(STATUS, 2.5, "counters", "adapted_on"), id="adapted_on fractional"),
        pytest.param(TOPIC_STATUS, changed(STATUS, 3.0, "counters", "noise_floor_dbfs"), id="noise floor above 0"),
        pytest.param(TOPIC_STATUS, changed(STATUS, None, "counters", "noise_floor_dbfs"), id="noise floor null"),
    ],
)
def test_schema_rejects(topic, event):
    assert not validator_for(topic).is_valid(event)


def test_root_schema_accepts_both_and_extensions():
    root = Draft202012Validator(load_schema())
    root.validate(EMOTION)
    root.validate(STATUS)
    validator_for(TOPIC_EMOTION).validate(EMOTION | {"speaker": "A", "model": MODEL | {"version": 2}})


def test_a_proxy_event_validates_and_device_stays_optional_for_older_senders():
    counters = dict.fromkeys(PROXY_COUNTERS, 3)
    event = proxy_event(state="running", counters=counters, uptime_s=2.0, device="hub") | {"seq": 1}
    validator_for(TOPIC_PROXY).validate(event)
    older = {key: value for key, value in make_status().items() if key != "device"}
    validator_for(TOPIC_STATUS).validate(older)  # version 1 events from before `device` still validate


# -- speech start/end, interim and final results --------------------------------------------------

WALL = datetime(2024, 5, 1, 12, 0, 3, 250000, tzinfo=timezone.utc)


def make_speech(state: str, **overrides) -> dict:
    fields = {"state": state, "utterance": 3, "start_s": 1.5, "wall_time": WALL, "source": "default", "device": "k"}
    if state == "end":
        fields |= {"end_s": 3.25, "classified": True}
    return speech_event(**(fields | overrides)) | {"seq": 9, "latency_ms": 12.0}


def test_no_topic_is_a_prefix_of_another():
    """ZeroMQ subscribes by prefix: a subscriber to one topic must not receive another's messages."""
    assert len(set(TOPICS)) == len(TOPICS) == 5
    assert [(a, b) for a in TOPICS for b in TOPICS if a != b and b.startswith(a)] == []


def test_speech_start_and_end_fields_and_schema():
    start, end = make_speech("start"), make_speech("end", start_s=1.625)
    for event in (start, end):
        validator_for(TOPIC_SPEECH).validate(event)
        Draft202012Validator(load_schema()).validate(event)
        assert event["schema"] == SPEECH_SCHEMA and event["utterance"] == 3
    assert set(start) == {
        "schema",
        "device",
        "state",
        "utterance",
        "start_s",
        "timestamp",
        "source",
        "seq",
        "latency_ms",
    }
    assert (end["end_s"], end["duration_s"], end["cut"], end["classified"]) == (3.25, 1.625, False, True)
    assert start["timestamp"] == "2024-05-01T12:00:03.250000+00:00"


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(without(make_speech("end"), "end_s"), id="end without end_s"),
        pytest.param(without(make_speech("start"), "device"), id="no device"),
        pytest.param(without(make_speech("start"), "utterance"), id="no utterance number"),
        pytest.param(changed(make_speech("start"), 0, "utterance"), id="utterance 0"),
        pytest.param(changed(make_speech("start"), "stop", "state"), id="unknown state"),
        pytest.param(changed(make_speech("end"), "yes", "classified"), id="classified not a boolean"),
        pytest.param(make_emotion(), id="an emotion on the speech topic"),
    ],
)
def test_the_speech_schema_rejects(event):
    assert not validator_for(TOPIC_SPEECH).is_valid(event)


def test_the_speech_builder_refuses_what_the_schema_would():
    with pytest.raises(ValueError, match="unknown speech state"):
        make_speech("stop")
    with pytest.raises(ValueError, match="end_s"):
        make_speech("start", end_s=2.0)
    with pytest.raises(ValueError, match="end_s"):
        make_speech("end", end_s=None)


def test_interim_and_final_results_each_validate_on_their_own_topic_only():
    interim, final = make_emotion(utterance=3, final=False), make_emotion(utterance=3, final=True)
    assert (interim["final"], interim["utterance"], final["final"]) == (False, 3, True)
    validator_for(TOPIC_INTERIM).validate(interim)
    validator_for(TOPIC_EMOTION).validate(final)
    assert not validator_for(TOPIC_EMOTION).is_valid(interim)  # a final-only subscriber never sees one
    assert not validator_for(TOPIC_INTERIM).is_valid(final)
    assert not validator_for(TOPIC_INTERIM).is_valid(make_emotion())  # an interim result says so, and whose it is
    assert not validator_for(TOPIC_INTERIM).is_valid(without(interim, "utterance"))
    # Version 1 from before `final` and `utterance` still validates, and the root tells the kinds apart.
    assert "final" not in EMOTION and "utterance" not in EMOTION
    root = Draft202012Validator(load_schema())
    for event in (interim, final, EMOTION):
        root.validate(event)


def test_the_status_counters_may_carry_interim_dropped_or_not():
    validator_for(TOPIC_STATUS).validate(make_status(counters=Counters(interim_dropped=4)))
    assert make_status(counters=Counters(interim_dropped=4))["counters"]["interim_dropped"] == 4
    validator_for(TOPIC_STATUS).validate(without(make_status(), "counters", "interim_dropped"))
