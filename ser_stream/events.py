"""Event payloads of wire format version 1, built as plain dicts (no sockets, no clock but `now`).

The publisher stamps `seq` and, for emotion events, `latency_ms` at send time: only it knows the
order of messages across topics and the moment a message leaves.  The JSON Schema shipped in
`schemas/events-v1.json` is the contract; `validator_for` checks a payload against it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib import resources
from typing import TYPE_CHECKING, Any

from .counters import Counters

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

EMOTION_SCHEMA = "ser-stream.emotion/1"
STATUS_SCHEMA = "ser-stream.status/1"
PROXY_SCHEMA = "ser-stream.proxy/1"
SPEECH_SCHEMA = "ser-stream.speech/1"
TOPIC_EMOTION = "emotion"  # final results, one per utterance
TOPIC_STATUS = "status"
TOPIC_PROXY = "proxy"
TOPIC_SPEECH = "speech"  # an utterance opened (start) and closed (end)
TOPIC_INTERIM = "interim"  # emotion payloads of an utterance still open
#: ZeroMQ subscribes by prefix, so no topic starts with another (a test checks).
TOPICS = (TOPIC_EMOTION, TOPIC_STATUS, TOPIC_PROXY, TOPIC_SPEECH, TOPIC_INTERIM)
#: libzmq's proxy statistics, in the order its STATISTICS command returns them.
PROXY_COUNTERS = (
    "frontend_messages_in",
    "frontend_bytes_in",
    "frontend_messages_out",
    "frontend_bytes_out",
    "backend_messages_in",
    "backend_bytes_in",
    "backend_messages_out",
    "backend_bytes_out",
)
STATUS_STATES = ("started", "running", "device lost", "device back", "stopping")
SPEECH_STATES = ("start", "end")


def _aware_isoformat(moment: datetime) -> str:
    if moment.utcoffset() is None:
        raise ValueError(f"timestamp {moment.isoformat()} has no time zone; events need an unambiguous time")
    return moment.isoformat()


def emotion_event(
    *,
    label: str,
    confidence: float,
    probabilities: dict[str, float],
    start_s: float,
    end_s: float,
    wall_end: datetime,
    source: str,
    model: dict,
    device: str,
    utterance: int | None = None,
    final: bool | None = None,
    adapted_on: int | None = None,
    uncertain: bool | None = None,
    intensity: float | None = None,
) -> dict[str, Any]:
    """The payload of one classified utterance, without `seq` and `latency_ms` (stamped when sent).

    ``final`` False: an interim result (topic `interim`) of the utterance numbered ``utterance``,
    still open; True: its final result (topic `emotion`).  Numbers are converted to Python floats so
    numpy scalars from the classifier serialise as JSON.  The optional fields of the prediction
    (`prediction_extras`) are left out when not known.
    """
    event = {
        "schema": EMOTION_SCHEMA,
        "device": device,
        "label": label,
        "confidence": float(confidence),
        "probabilities": {str(name): float(p) for name, p in probabilities.items()},
        "start_s": float(start_s),
        "end_s": float(end_s),
        "duration_s": float(end_s) - float(start_s),
        "timestamp": _aware_isoformat(wall_end),
        "source": source,
        "model": dict(model),
        **prediction_extras(adapted_on=adapted_on, uncertain=uncertain, intensity=intensity),
    }
    if utterance is not None:
        event["utterance"] = utterance
    if final is not None:
        event["final"] = final
    return event


def speech_event(
    *,
    state: str,
    utterance: int,
    start_s: float,
    wall_time: datetime,
    source: str,
    device: str,
    end_s: float | None = None,
    cut: bool = False,
    classified: bool = False,
) -> dict[str, Any]:
    """An utterance opened (`start`, at ``start_s``) or closed (`end`, with ``end_s``, whether it was
    ``cut`` at the maximum length and whether it is ``classified``: a final `emotion` event follows),
    without `seq` and `latency_ms` (stamped when sent).  ``wall_time``: of ``start_s`` or ``end_s``."""
    if state not in SPEECH_STATES:
        raise ValueError(f"unknown speech state {state!r}; expected one of {', '.join(SPEECH_STATES)}")
    if (state == "end") != (end_s is not None):
        raise ValueError("end_s is given for, and only for, the end of an utterance")
    event: dict[str, Any] = {
        "schema": SPEECH_SCHEMA,
        "device": device,
        "state": state,
        "utterance": utterance,
        "start_s": float(start_s),
        "timestamp": _aware_isoformat(wall_time),
        "source": source,
    }
    if end_s is not None:
        duration_s = float(end_s) - float(start_s)
        event |= {"end_s": float(end_s), "duration_s": duration_s, "cut": cut, "classified": classified}
    return event


def prediction_extras(
    *, adapted_on: int | None, uncertain: bool | None, intensity: float | None
) -> dict[str, int | bool | float]:
    """The optional fields of a prediction, in emotion events and `classify --json` alike, those known:
    `adapted_on` (utterances in the adapter's statistics; 0: the prior alone), `uncertain` (below the
    confidence threshold), `intensity` (the probability that the emotion is expressed strongly)."""
    extras: dict[str, int | bool | float] = {}
    if adapted_on is not None:
        extras["adapted_on"] = int(adapted_on)
    if uncertain is not None:
        extras["uncertain"] = bool(uncertain)
    if intensity is not None:
        extras["intensity"] = float(intensity)
    return extras


def status_event(
    *,
    state: str,
    counters: Counters,
    uptime_s: float,
    source: str,
    model: dict,
    device: str,
    message: str | None = None,
) -> dict[str, Any]:
    """A heartbeat or state change, without `seq` (stamped when sent); `uptime_s` goes into `counters`.

    An unknown `state` raises ValueError here rather than reaching subscribers that switch on it.
    """
    if state not in STATUS_STATES:
        raise ValueError(f"unknown status state {state!r}; expected one of {', '.join(STATUS_STATES)}")
    event: dict[str, Any] = {
        "schema": STATUS_SCHEMA,
        "device": device,
        "state": state,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "source": source,
        "model": dict(model),
        "counters": {**counters.as_dict(), "uptime_s": float(uptime_s)},
    }
    if message is not None:
        event["message"] = message
    return event


def proxy_event(*, state: str, counters: dict[str, int], uptime_s: float, device: str) -> dict[str, Any]:
    """A `ser-stream proxy` heartbeat with libzmq's proxy statistics, without `seq` (stamped when sent)."""
    return {
        "schema": PROXY_SCHEMA,
        "device": device,
        "state": state,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "counters": {**counters, "uptime_s": float(uptime_s)},
    }


def load_schema() -> dict[str, Any]:
    """The JSON Schema of wire format version 1, read from the installed package data."""
    text = (resources.files("ser_stream") / "schemas" / "events-v1.json").read_text(encoding="utf-8")
    return json.loads(text)


def validator_for(topic: str) -> Validator:
    """A jsonschema validator for the payloads of `topic` (jsonschema is a dev dependency, hence the lazy import)."""
    from jsonschema import Draft202012Validator

    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; expected one of {', '.join(TOPICS)}")
    root = load_schema()
    schema = {key: value for key, value in root.items() if key != "oneOf"} | {"$ref": f"#/$defs/{topic}"}
    return Draft202012Validator(schema)
