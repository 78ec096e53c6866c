"""Settings of `ser-stream run` and `ser-stream proxy`: one dataclass each makes the flags and the TOML keys.

Every field is a flag (``hangover_ms`` → ``--hangover-ms``) and a key of the command's config
file (``/etc/ser-stream/config.toml`` for run, ``proxy.toml`` beside it for the proxy).
Values resolve as defaults ← file ← flags, and both the file and the flags go through the same
checks, so a bad value fails at start-up with one line naming the key and what it allows.
Pure logic: the caller decides when to read.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import socket
import sys
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

from .errors import ConfigError
from .model import default_model_path
from .publisher import DEFAULT_ENDPOINT
from .security import CurveClient, CurveServer, curve_client, curve_server
from .segmenter import SegmenterConfig

DEFAULT_CONFIG = Path("/etc/ser-stream/config.toml")
DEFAULT_PROXY_CONFIG = DEFAULT_CONFIG.with_name("proxy.toml")
LOG_LEVELS = ("debug", "info", "warning", "error")

_VAD = SegmenterConfig()  # the VAD defaults are the segmenter's, which the model was trained with


def _meta(
    help: str,
    *,
    choices: tuple | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    restart: bool = False,
    metavar: str | None = None,
) -> dict[str, Any]:
    """What a key's flag and checks need: help, allowed values, and whether a reload may change it."""
    return {
        "help": help,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "restart": restart,
        "metavar": metavar,
    }


def _option(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata=_meta(help, **meta))


@dataclass(frozen=True)
class RunConfig:
    """What `ser-stream run` does; ``restart=True`` fields are not changed by a reload (SIGHUP)."""

    DEFAULT_FILE: ClassVar[Path] = DEFAULT_CONFIG

    source: str = _option("mic", "'mic' or an audio file to stream", restart=True, metavar="mic|FILE")
    device: int | str | None = _option(
        None, "input device index or name (default: the system default)", restart=True, metavar="NAME_OR_INDEX"
    )
    publish: str = _option(DEFAULT_ENDPOINT, "ZeroMQ PUB bind address", restart=True, metavar="ENDPOINT")
    publish_connect: str | None = _option(
        None,
        "connect the PUB socket to this endpoint (a `ser-stream proxy` frontend) instead of binding --publish",
        restart=True,
        metavar="ENDPOINT",
    )
    curve_secret_key: Path | None = field(
        default=None,
        metadata=_meta(
            "CURVE: encrypt the PUB socket with this daemon's secret key (`ser-stream keygen`)",
            restart=True,
            metavar="FILE",
        ),
    )
    curve_allowed_clients: Path | None = field(
        default=None,
        metadata=_meta(
            "CURVE, bound PUB socket: the folder of public keys of the subscribers admitted",
            restart=True,
            metavar="DIR",
        ),
    )
    curve_server_key: Path | None = field(
        default=None,
        metadata=_meta(
            "CURVE, with --publish-connect: the proxy frontend's public key",
            restart=True,
            metavar="FILE",
        ),
    )
    device_id: str = field(
        default_factory=socket.gethostname,
        metadata=_meta("this daemon's name in every event's `device` field", restart=True, metavar="NAME"),
    )
    model: Path = field(
        default_factory=default_model_path,
        metadata=_meta("model bundle .npz (manifest .json beside it)", metavar="PATH"),
    )
    realtime: bool = _option(True, "pace a file source like a microphone, or run it as fast as possible", restart=True)
    print: bool = _option(False, "also write every event as a JSON line on stdout")
    capture_rate: int = _option(16000, "capture and VAD rate in Hz", choices=(16000, 48000), restart=True)
    frame_ms: int = _option(_VAD.frame_ms, "VAD frame in ms", choices=(10, 20, 30), restart=True)
    vad_aggressiveness: int = _option(_VAD.aggressiveness, "webrtcvad aggressiveness", choices=(0, 1, 2, 3))
    pre_roll_ms: int = _option(_VAD.pre_roll_ms, "audio kept before speech onset, ms", minimum=0, metavar="MS")
    hangover_ms: int = _option(_VAD.hangover_ms, "non-speech that ends an utterance, ms", minimum=1, metavar="MS")
    min_utterance_ms: int = _option(
        _VAD.min_utterance_ms, "shorter utterances are dropped, ms", minimum=0, metavar="MS"
    )
    max_utterance_ms: int = _option(
        _VAD.max_utterance_ms, "longer speech is cut into windows of this length, ms", minimum=1, metavar="MS"
    )
    gate_db: float = _option(
        _VAD.gate_db,
        "frames this far below the utterance's loudest count as non-speech; 0 = off",
        minimum=0,
        maximum=120,
        metavar="DB",
    )
    noise_gate_db: float = _option(
        _VAD.noise_gate_db,
        "while webrtcvad takes the room's noise for speech (babble), frames less than this above the noise "
        "floor count as non-speech; 0 = off",
        minimum=0,
        maximum=120,
        metavar="DB",
    )
    interim_ms: int = _option(
        1000,
        "while an utterance is open, classify what was heard so far this often (topic `interim`), ms; 0 = off",
        minimum=0,
        maximum=60_000,
        metavar="MS",
    )
    wait_subscriber: float = _option(
        0.0,
        "before streaming, wait up to this long for a first subscriber; 0 = don't wait",
        minimum=0,
        restart=True,
        metavar="SECONDS",
    )
    heartbeat_s: float = _option(5.0, "status heartbeat period", minimum=0.1, metavar="SECONDS")
    log_level: str = _option("info", "least severe log messages shown", choices=LOG_LEVELS)

    def curve(self) -> CurveServer | CurveClient | None:
        """Bound, the daemon is a CURVE server to its subscribers; connected to a proxy, a client of
        its frontend.  Each role takes its own key besides the daemon's secret key; a wrong
        combination is a ConfigError."""
        if self.publish_connect is None:
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

    def check(self) -> None:
        """The rules between keys; ConfigError names the broken one."""
        self.segmenter()
        self.curve()

    def segmenter(self, sample_rate: int | None = None) -> SegmenterConfig:
        """The segmenter these settings describe, at the rate the input really delivers (a device may
        refuse ``capture_rate``); cross-field rules (e.g. max ≥ min) are checked here."""
        try:
            return SegmenterConfig(
                sample_rate=sample_rate or self.capture_rate,
                frame_ms=self.frame_ms,
                aggressiveness=self.vad_aggressiveness,
                pre_roll_ms=self.pre_roll_ms,
                hangover_ms=self.hangover_ms,
                min_utterance_ms=self.min_utterance_ms,
                max_utterance_ms=self.max_utterance_ms,
                gate_db=self.gate_db,
                noise_gate_db=self.noise_gate_db,
            )
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def restart_only_changes(self, new: RunConfig) -> list[str]:
        """Keys whose change a reload cannot apply without closing the input or the socket."""
        return [f.name for f in fields(self) if f.metadata["restart"] and getattr(self, f.name) != getattr(new, f.name)]

    def keeping_restart_only(self, new: RunConfig) -> RunConfig:
        """``new`` with the restart-only keys of the running settings."""
        return replace(new, **{f.name: getattr(self, f.name) for f in fields(self) if f.metadata["restart"]})


@dataclass(frozen=True)
class ProxyConfig:
    """What `ser-stream proxy` does.  Each side may be a CURVE server with its own admitted keys."""

    DEFAULT_FILE: ClassVar[Path] = DEFAULT_PROXY_CONFIG

    frontend: str | None = _option(None, "where daemons connect (required), e.g. tcp://*:5557", metavar="ENDPOINT")
    backend: str | None = _option(None, "where subscribers connect (required), e.g. tcp://*:5556", metavar="ENDPOINT")
    device_id: str = field(
        default_factory=socket.gethostname,
        metadata=_meta("the proxy's name in its own `proxy` events", metavar="NAME"),
    )
    heartbeat_s: float = _option(5.0, "period of its `proxy` events", minimum=0.1, metavar="SECONDS")
    frontend_curve_secret_key: Path | None = field(
        default=None, metadata=_meta("CURVE on the frontend: its .key_secret", metavar="FILE")
    )
    frontend_curve_allowed_clients: Path | None = field(
        default=None, metadata=_meta("CURVE on the frontend: folder of admitted devices' .key files", metavar="DIR")
    )
    backend_curve_secret_key: Path | None = field(
        default=None, metadata=_meta("CURVE on the backend: its .key_secret", metavar="FILE")
    )
    backend_curve_allowed_clients: Path | None = field(
        default=None, metadata=_meta("CURVE on the backend: folder of admitted subscribers' .key files", metavar="DIR")
    )
    log_level: str = _option("info", "least severe log messages shown", choices=LOG_LEVELS)

    def check(self) -> None:
        for side in ("frontend", "backend"):
            if getattr(self, side) is None:
                raise ConfigError(f"{side} is required: give --{side} ENDPOINT or the key {side} in the config file")
            self.curve(side)

    def curve(self, side: str) -> CurveServer | None:
        """The CURVE server settings of ``side`` (frontend or backend), if any."""
        secret, allowed = f"{side}_curve_secret_key", f"{side}_curve_allowed_clients"
        return curve_server(getattr(self, secret), getattr(self, allowed), (secret, allowed))


Settings = TypeVar("Settings", RunConfig, ProxyConfig)

KEYS = tuple(f.name for f in fields(RunConfig))
PROXY_KEYS = tuple(f.name for f in fields(ProxyConfig))


def _field(settings: type[Settings], name: str) -> Field:
    return settings.__dataclass_fields__[name]


def _kind(f: Field) -> str:
    """The field's value type as written in its annotation: int, float, bool, str, Path or a device."""
    annotation = str(f.type)
    return {"int | str | None": "device", "str | None": "str", "Path | None": "Path"}.get(annotation, annotation)


def _allowed(f: Field) -> str:
    """What a key accepts, in words, for error messages."""
    meta, kind = f.metadata, _kind(f)
    if meta["choices"]:
        return "one of " + ", ".join(map(str, meta["choices"]))
    noun = {
        "int": "a whole number",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "Path": "a file path (string)",
        "device": "a device index or name",
    }[kind]
    low, high = meta["minimum"], meta["maximum"]
    if low is not None and high is not None:
        return f"{noun} from {low:g} to {high:g}"
    if low is not None:
        return f"{noun} >= {low:g}"
    return noun


def _check_value(f: Field, value: Any, base: Path | None = None) -> Any:
    """``value`` as the field stores it, or ValueError saying what is allowed.

    Types are strict (TOML has them: ``hangover_ms = "500"`` is an error, not a guess); a
    relative path (a model, a key) is taken relative to ``base``, the config file's folder.
    """
    meta, kind = f.metadata, _kind(f)
    is_bool = isinstance(value, bool)
    ok_type = {
        "int": isinstance(value, int) and not is_bool,
        "float": isinstance(value, (int, float)) and not is_bool and math.isfinite(_as_float(value)),
        "bool": is_bool,
        "str": isinstance(value, str) and value != "",
        "Path": isinstance(value, (str, Path)) and str(value) != "",
        "device": (isinstance(value, int) and not is_bool and value >= 0) or (isinstance(value, str) and value != ""),
    }[kind]
    in_range = ok_type and (
        (meta["choices"] is None or value in meta["choices"])
        and (meta["minimum"] is None or value >= meta["minimum"])
        and (meta["maximum"] is None or value <= meta["maximum"])
    )
    if not in_range:
        raise ValueError(f"must be {_allowed(f)}")
    if kind == "float":
        return float(value)
    if kind == "Path":
        path = Path(value).expanduser()
        return base / path if base is not None and not path.is_absolute() else path
    return value


def _as_float(value: int | float) -> float:
    """A TOML integer may be too big for a float: that is infinite, not an OverflowError."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _from_flag(f: Field):
    """An argparse ``type=`` that parses the flag's text and applies the key's checks."""
    kind = _kind(f)

    def parse(text: str) -> Any:
        try:
            if kind == "int":
                value: Any = int(text)
            elif kind == "float":
                value = float(text)
            elif kind == "device":
                value = int(text) if text.isdigit() else text
            else:
                value = text
            return _check_value(f, value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: must be {_allowed(f)}") from None

    return parse


def add_flags(parser: argparse.ArgumentParser, settings: type[Settings]) -> None:
    """One flag per key; unset flags stay out of the namespace, so the file's value stands."""
    for f in fields(settings):
        meta, flag = f.metadata, "--" + f.name.replace("_", "-")
        default = f.default if f.default_factory is MISSING else f.default_factory()
        shown = str(default).lower() if _kind(f) == "bool" else default
        help_text = (meta["help"] if default is None else f"{meta['help']} (default: {shown})").replace("%", "%%")
        if _kind(f) == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(
                flag,
                type=_from_flag(f),
                default=argparse.SUPPRESS,
                metavar=meta["metavar"] or _choices_metavar(meta["choices"]),
                help=help_text,
            )


def _choices_metavar(choices: tuple | None) -> str | None:
    return "{" + ",".join(map(str, choices)) + "}" if choices else None


def read_config_file(path: Path, settings: type[Settings] = RunConfig) -> dict[str, Any]:
    """The checked keys of a TOML config file; ConfigError (one line) for anything wrong in it."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file {path}: permission denied") from None
    except OSError as error:  # e.g. a path through a file, a loop of links, an I/O error
        raise ConfigError(f"config file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    values, keys = {}, [f.name for f in fields(settings)]
    for key, value in document.items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}{hint}; allowed keys: {', '.join(keys)}")
        try:
            values[key] = _check_value(_field(settings, key), value, base=path.parent)
        except ValueError as error:
            raise ConfigError(f"{path}: {key} = {_toml_repr(value)}: {error}") from None
    return values


def _toml_repr(value: Any) -> str:
    """The value roughly as written in the file (JSON and TOML agree on scalars)."""
    return "{...}" if isinstance(value, dict) else json.dumps(value, default=str)


def resolve(config_path: Path | None, flags: dict[str, Any], settings: type[Settings] = RunConfig) -> Settings:
    """Defaults ← the config file ← the flags given; a ``settings`` instance, checked.

    ``config_path`` None means the default file, which may be absent; a file named explicitly
    must exist.
    """
    path = settings.DEFAULT_FILE if config_path is None else config_path
    from_file = {} if config_path is None and not path.exists() else read_config_file(path, settings)
    config = settings(**{**from_file, **flags})
    where = f"{path}: " if from_file else ""
    try:
        config.check()
    except ConfigError as error:
        raise ConfigError(f"{where}{error}") from None
    return config
