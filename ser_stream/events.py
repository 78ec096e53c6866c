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
TOPIC_EMOTION = "emotion"
TOPIC_STATUS = "status"
TOPIC_PROXY = "proxy"
TOPICS = (TOPIC_EMOTION, TOPIC_STATUS, TOPIC_PROXY)
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
    adapted_on: int | None = None,
    uncertain: bool | None = None,
    intensity: float | None = None,
) -> dict[str, Any]:
    """The payload of one classified utterance, without `seq` and `latency_ms` (stamped when sent).

    Numbers are converted to Python floats so numpy scalars from the classifier serialise as JSON.
    The optional fields (`prediction_extras`) are left out when not known.
    """
    return {
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
