"""Settings per stage, frozen and built once: capture, vad, interim, model, publish, service.

`ser-stream run` has one settings object, `RunSettings`, that nests one small object per stage of
the pipeline, the way wyoming-satellite nests its `MicSettings` and `VadSettings`: each part of
the pipeline is handed, and reads, only its own.  Behind them the command line stays flat: every
field is one flag and one key of the TOML config file (``VadSettings.hangover_ms`` is
``--hangover-ms`` and ``hangover_ms``; a field whose key differs says so, e.g. ``aggressiveness``
is ``vad_aggressiveness``).  `ser-stream proxy` has one flat `ProxySettings`.

Each field declares its default, its bounds and its help once, here; `check_value` applies them
wherever a value comes from (a flag, the file, a constructor call), so each check lives in one
place.  Pure and light: the standard library only, so reading settings (and ``--help``) loads
neither numpy, ZeroMQ nor webrtcvad.
"""

from __future__ import annotations

import json
import math
import numbers
import socket
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .errors import ConfigError
from .model import default_model_path  # the package, not its modules: no numpy

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
DEFAULT_CONFIG = Path("/etc/ser-stream/config.toml")
DEFAULT_PROXY_CONFIG = DEFAULT_CONFIG.with_name("proxy.toml")
LOG_LEVELS = ("debug", "info", "warning", "error")
#: The sample rates and frame lengths webrtcvad accepts.
VAD_SAMPLE_RATES = (8000, 16000, 32000, 48000)
VAD_FRAME_MS = (10, 20, 30)
#: Status heartbeats (`run`) and `proxy` events: the period by default, and its bounds.
HEARTBEAT_S = 5.0
#: The longest wait anything is configured for (a heartbeat period, waiting for a subscriber):
#: an hour.  A longer one is a typo, and 1e10 s overflows the clocks threads wait on.
MAX_WAIT_S = 3600.0
#: Longer speech is cut into windows anyway, so a longer window only loses resolution: a minute.
MAX_UTTERANCE_MS = 60_000
#: A device id is in every event: a name, not a payload.
MAX_DEVICE_ID = 128


def option(
    default: Any,
    help: str,
    *,
    key: str | None = None,
    choices: tuple | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    max_length: int | None = None,
    restart: bool = False,
    metavar: str | None = None,
) -> Any:
    """A settings field: its default (a callable is a factory), and what its flag and checks need.

    ``key`` is its flag and config key when it differs from the field's name; ``restart``: a
    reload (SIGHUP) cannot change it; ``max_length``: a printable string of at most that length.
    """
    metadata = {
        "help": help,
        "key": key,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "max_length": max_length,
        "restart": restart,
        "metavar": metavar,
    }
    if callable(default):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def key_of(f: Field) -> str:
    return f.metadata["key"] or f.name


def kind(f: Field) -> str:
    """The field's value type as written in its annotation: int, float, bool, str, Path or a device."""
    annotation = str(f.type)
    optional = {"int | str | None": "device", "str | None": "str", "Path | None": "Path", "bool | None": "bool"}
    return optional.get(annotation, annotation.removesuffix(" | None"))


def allowed(f: Field) -> str:
    """What a key accepts, in words, for error messages."""
    meta, what = f.metadata, kind(f)
    if meta["choices"]:
        return "one of " + ", ".join(map(str, meta["choices"]))
    if meta["max_length"]:
        return f"a printable string of at most {meta['max_length']} characters"
    noun = {
        "int": "a whole number",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "Path": "a file path (string)",
        "device": "a device index or name",
    }[what]
    low, high = meta["minimum"], meta["maximum"]
    if low is not None and high is not None:
        return f"{noun} from {low:g} to {high:g}"
    if low is not None:
        return f"{noun} >= {low:g}"
    return noun


def check_value(f: Field, value: Any, base: Path | None = None) -> Any:
    """``value`` as the field stores it, or ValueError saying what is allowed.

    Types are strict (TOML has them: ``hangover_ms = "500"`` is an error, not a guess); a
    relative path (a model, a key) is taken relative to ``base``, the config file's folder.
    """
    meta, what = f.metadata, kind(f)
    if value is None and f.default is None:  # unset: the default of an optional setting
        return None
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok_type = {
        "int": is_int,
        "float": (is_int or isinstance(value, float)) and math.isfinite(_as_float(value)),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str) and value != "",
        "Path": isinstance(value, (str, Path)) and str(value) != "",
        "device": (is_int and value >= 0) or (isinstance(value, str) and value != ""),
    }[what]
    in_range = ok_type and (
        (meta["choices"] is None or value in meta["choices"])
        and (meta["minimum"] is None or value >= meta["minimum"])
        and (meta["maximum"] is None or value <= meta["maximum"])
        and (meta["max_length"] is None or (len(value) <= meta["max_length"] and value.isprintable()))
    )
    if not in_range:
        raise ValueError(f"must be {allowed(f)}")
    if what == "float":
        return float(value)
    if what in ("int", "device") and is_int:
        return int(value)
    if what == "Path":
        path = Path(value).expanduser()
        return base / path if base is not None and not path.is_absolute() else path
    return value


def _as_float(value: int | float) -> float:
    """A TOML integer may be too big for a float: that is infinite, not an OverflowError."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def shown(value: Any, limit: int = 40) -> str:
    """A value roughly as written (JSON and TOML agree on scalars), cut short if long: one line, always."""
    try:
        text = "{...}" if isinstance(value, dict) else json.dumps(value, default=str)
    except ValueError:  # an integer of more digits than Python converts to text
        return "a number of thousands of digits"
    return text if len(text) <= limit else f"{text[: limit - 10]}…({len(text)} characters)"


class Stage:
    """A frozen dataclass of settings whose fields are checked, and normalised, when it is made."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            if not f.metadata:  # not a setting of its own (see SegmenterConfig)
                continue
            value = getattr(self, f.name)
            try:
                object.__setattr__(self, f.name, check_value(f, value))
            except ValueError as error:
                raise ValueError(f"{f.name} {error}, got {shown(value)}") from None


def _device_id(help: str) -> Any:
    return option(socket.gethostname, help, max_length=MAX_DEVICE_ID, restart=True, metavar="NAME")


def _heartbeat_s(help: str) -> Any:
    return option(HEARTBEAT_S, help, minimum=0.1, maximum=MAX_WAIT_S, metavar="SECONDS")


def _log_level() -> Any:
    return option("info", "least severe log messages shown", choices=LOG_LEVELS)


@dataclass(frozen=True)
class CaptureSettings(Stage):
    """Where audio comes from.  The rate asked for; the source says which rate it delivers."""

    source: str = option("mic", "'mic' or an audio file to stream", restart=True, metavar="mic|FILE")
    device: int | str | None = option(
        None, "input device index or name (default: the system default)", restart=True, metavar="NAME_OR_INDEX"
    )
    rate: int = option(16000, "capture and VAD rate in Hz", key="capture_rate", choices=(16000, 48000), restart=True)
    realtime: bool = option(True, "pace a file source like a microphone, or run it as fast as possible", restart=True)


@dataclass(frozen=True)
class VadSettings(Stage):
    """How speech is cut into utterances, at whatever rate the source delivers (see SegmenterConfig).

    The defaults are those the shipped model was trained with.
    """

    frame_ms: int = option(30, "VAD frame in ms", choices=VAD_FRAME_MS, restart=True)
    aggressiveness: int = option(2, "webrtcvad aggressiveness", key="vad_aggressiveness", choices=(0, 1, 2, 3))
    pre_roll_ms: int = option(150, "audio kept before speech onset, ms", minimum=0, maximum=5000, metavar="MS")
    hangover_ms: int = option(
        500, "non-speech that ends an utterance, ms (longer in steady noise)", minimum=1, maximum=10_000, metavar="MS"
    )
    min_utterance_ms: int = option(
        500, "shorter utterances are dropped, ms", minimum=0, maximum=MAX_UTTERANCE_MS, metavar="MS"
    )
    max_utterance_ms: int = option(
        10_000,
        "longer speech is cut into windows of this length, ms",
        minimum=1,
        maximum=MAX_UTTERANCE_MS,
        metavar="MS",
    )
    gate_db: float = option(
        35.0,
        "frames this far below the utterance's loudest count as non-speech; 0 = off",
        minimum=0,
        maximum=120,
        metavar="DB",
    )
    noise_gate_db: float = option(
        9.0,
        "while webrtcvad takes the room's noise for speech (babble), frames less than this above the noise "
        "floor count as non-speech; 0 = off",
        minimum=0,
        maximum=120,
        metavar="DB",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        floor = max(self.min_utterance_ms, self.frame_ms)
        if self.max_utterance_ms < floor:
            raise ValueError(
                f"max_utterance_ms must be a whole number of milliseconds >= min_utterance_ms and >= frame_ms "
                f"({floor}), got {self.max_utterance_ms!r}"
            )


@dataclass(frozen=True)
class InterimSettings(Stage):
    """Interim results: how often an utterance still open is classified, as heard so far."""

    every_ms: int = option(
        1000,
        "while an utterance is open, classify what was heard of it so far this often (topic `interim`), ms; 0 = off",
        key="interim_ms",
        minimum=0,
        maximum=MAX_UTTERANCE_MS,
        metavar="MS",
    )


@dataclass(frozen=True)
class ModelSettings(Stage):
    """The model, and what the worker does with its optional sections: adaptation and abstention."""

    path: Path = option(default_model_path, "model bundle .npz (manifest .json beside it)", key="model", metavar="PATH")
    adapt: bool | None = option(
        None,
        "learn the voices and the room heard (feature statistics, updated once per utterance) "
        "(default: on when the model has an adaptation prior)",
    )
    state_dir: Path | None = option(
        None,
        "keep what adaptation learned in this folder (adaptation.npz) across restarts "
        "(default: none, it lasts as long as the process)",
        restart=True,
        metavar="DIR",
    )
    min_confidence: float | None = option(
        None,
        "emotion events less confident than this say uncertain: true "
        "(default: the model's abstention threshold, if it has one)",
        minimum=0,
        maximum=1,
        metavar="P",
    )


@dataclass(frozen=True)
class CurveServer:
    secret_key: Path  # the server's NAME.key_secret
    allowed_clients: Path  # a folder of admitted clients' NAME.key files


@dataclass(frozen=True)
class CurveClient:
    server_key: Path  # the server's NAME.key (public)
    secret_key: Path  # our own NAME.key_secret


def curve_server(secret_key: Path | None, allowed_clients: Path | None, names: tuple[str, str]) -> CurveServer | None:
    """A server's two settings go together; ``names`` are how the user wrote them (flags or keys)."""
    if (secret_key is None) != (allowed_clients is None):
        raise ConfigError(f"{names[0]} and {names[1]} go together: give both or neither")
    return None if secret_key is None or allowed_clients is None else CurveServer(secret_key, allowed_clients)


def curve_client(server_key: Path | None, secret_key: Path | None, names: tuple[str, str]) -> CurveClient | None:
    """A client's two settings go together, like a server's."""
    if (server_key is None) != (secret_key is None):
        raise ConfigError(f"{names[0]} and {names[1]} go together: give both or neither")
    return None if server_key is None or secret_key is None else CurveClient(server_key, secret_key)


@dataclass(frozen=True)
class PublishSettings(Stage):
    """Where events go: the ZeroMQ socket (bound, or connected to a proxy), CURVE, and stdout."""

    endpoint: str = option(DEFAULT_ENDPOINT, "ZeroMQ PUB bind address", key="publish", restart=True, metavar="ENDPOINT")
    connect: str | None = option(
        None,
        "connect the PUB socket to this endpoint (a `ser-stream proxy` frontend) instead of binding --publish",
        key="publish_connect",
        restart=True,
        metavar="ENDPOINT",
    )
    curve_secret_key: Path | None = option(
        None,
        "CURVE: encrypt the PUB socket with this daemon's secret key (`ser-stream keygen`)",
        restart=True,
        metavar="FILE",
    )
    curve_allowed_clients: Path | None = option(
        None,
        "CURVE, bound PUB socket: the folder of public keys of the subscribers admitted",
        restart=True,
        metavar="DIR",
    )
    curve_server_key: Path | None = option(
        None, "CURVE, with --publish-connect: the proxy frontend's public key", restart=True, metavar="FILE"
    )
    device_id: str = _device_id("this daemon's name in every event's `device` field")
    wait_subscriber: float = option(
        0.0,
        "before streaming, wait up to this long for a first subscriber; 0 = don't wait",
        minimum=0,
        maximum=MAX_WAIT_S,
        restart=True,
        metavar="SECONDS",
    )
    print_events: bool = option(False, "also write every event as a JSON line on stdout", key="print")

    def curve(self) -> CurveServer | CurveClient | None:
        """Bound, the daemon is a CURVE server to its subscribers; connected to a proxy, a client of
        its frontend.  Each role takes its own key besides the daemon's secret key; a wrong
        combination is a ConfigError."""
        if self.connect is None:
            if self.curve_server_key is not None:
                raise ConfigError(
                    "curve_server_key is for publish_connect (the proxy frontend's public key); "
                    "a bound PUB socket takes curve_allowed_clients"
                )
            return curve_server(
                self.curve_secret_key, self.curve_allowed_clients, ("curve_secret_key", "curve_allowed_clients")
            )
        if self.curve_allowed_clients is not None:
            raise ConfigError(
                "curve_allowed_clients is for a bound PUB socket; with publish_connect the proxy admits "
                "this daemon's key: give curve_server_key"
            )
        return curve_client(self.curve_server_key, self.curve_secret_key, ("curve_server_key", "curve_secret_key"))


@dataclass(frozen=True)
class ServiceSettings(Stage):
    """The daemon as a service: its status heartbeats (and systemd STATUS lines) and its log."""

    heartbeat_s: float = _heartbeat_s("status heartbeat period")
    log_level: str = _log_level()


@dataclass(frozen=True)
class RunSettings:
    """What `ser-stream run` does, one object per stage; ``restart`` fields are not changed by a reload."""

    DEFAULT_FILE: ClassVar[Path] = DEFAULT_CONFIG

    capture: CaptureSettings = field(default_factory=CaptureSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    interim: InterimSettings = field(default_factory=InterimSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    publish: PublishSettings = field(default_factory=PublishSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)

    def check(self) -> None:
        """The rules between keys that each stage alone cannot see; ConfigError names the broken one."""
        self.publish.curve()

    def restart_only_changes(self, new: RunSettings) -> list[str]:
        """Keys whose change a reload cannot apply without closing the input or the socket."""
        old, changed = as_keys(self), as_keys(new)
        return [
            key for key, (_, f) in key_fields(RunSettings).items() if f.metadata["restart"] and old[key] != changed[key]
        ]

    def keeping_restart_only(self, new: RunSettings) -> RunSettings:
        """``new`` with the restart-only keys of the running settings."""
        old = as_keys(self)
        kept = {key: old[key] for key, (_, f) in key_fields(RunSettings).items() if f.metadata["restart"]}
        return from_keys(RunSettings, {**as_keys(new), **kept})


@dataclass(frozen=True)
class ProxySettings(Stage):
    """What `ser-stream proxy` does.  Each side may be a CURVE server with its own admitted keys."""

    DEFAULT_FILE: ClassVar[Path] = DEFAULT_PROXY_CONFIG

    frontend: str | None = option(None, "where daemons connect (required), e.g. tcp://*:5557", metavar="ENDPOINT")
    backend: str | None = option(None, "where subscribers connect (required), e.g. tcp://*:5556", metavar="ENDPOINT")
    device_id: str = _device_id("the proxy's name in its own `proxy` events")
    heartbeat_s: float = _heartbeat_s("period of its `proxy` events")
    frontend_curve_secret_key: Path | None = option(None, "CURVE on the frontend: its .key_secret", metavar="FILE")
    frontend_curve_allowed_clients: Path | None = option(
        None, "CURVE on the frontend: folder of admitted devices' .key files", metavar="DIR"
    )
    backend_curve_secret_key: Path | None = option(None, "CURVE on the backend: its .key_secret", metavar="FILE")
    backend_curve_allowed_clients: Path | None = option(
        None, "CURVE on the backend: folder of admitted subscribers' .key files", metavar="DIR"
    )
    log_level: str = _log_level()

    def check(self) -> None:
        for side in ("frontend", "backend"):
            if getattr(self, side) is None:
                raise ConfigError(f"{side} is required: give --{side} ENDPOINT or the key {side} in the config file")
            self.curve(side)

    def curve(self, side: str) -> CurveServer | None:
        """The CURVE server settings of ``side`` (frontend or backend), if any."""
        secret, allowed_keys = f"{side}_curve_secret_key", f"{side}_curve_allowed_clients"
        return curve_server(getattr(self, secret), getattr(self, allowed_keys), (secret, allowed_keys))


Settings = TypeVar("Settings", RunSettings, ProxySettings)


def key_fields(settings: type[Settings]) -> dict[str, tuple[str | None, Field]]:
    """Flat key → (the stage it belongs to, or None for a flat settings class; its field), in flag order."""
    table: dict[str, tuple[str | None, Field]] = {}
    for f in fields(settings):
        if isinstance(f.default_factory, type) and issubclass(f.default_factory, Stage):
            table.update({key_of(g): (f.name, g) for g in fields(f.default_factory)})
        else:
            table[key_of(f)] = (None, f)
    return table


def from_keys(settings: type[Settings], values: dict[str, Any]) -> Settings:
    """Settings from flat keys (those absent take their defaults); ValueError for a bad value."""
    table = key_fields(settings)
    flat: dict[str, Any] = {}
    stages: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        stage, f = table[key]
        (flat if stage is None else stages.setdefault(stage, {}))[f.name] = value
    nested = {f.name: f.default_factory(**stages.get(f.name, {})) for f in fields(settings) if f.name in stages}
    return settings(**flat, **nested)


def as_keys(settings: RunSettings | ProxySettings) -> dict[str, Any]:
    """The flat view: key → value."""
    return {
        key: getattr(settings if stage is None else getattr(settings, stage), f.name)
        for key, (stage, f) in key_fields(type(settings)).items()
    }
