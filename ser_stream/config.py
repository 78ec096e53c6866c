"""Flags and config files → settings: defaults ← the TOML file ← the flags, through the same checks.

Every settings field (see `settings`) is a flag (``hangover_ms`` → ``--hangover-ms``) and a key of
the command's config file (``/etc/ser-stream/config.toml`` for run, ``proxy.toml`` beside it for
the proxy).  Both the file and the flags go through the field's one check, so a bad value fails
at start-up with one line naming the key and what it allows.  Pure logic, except reading the
file the caller names.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from dataclasses import MISSING, Field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

from .errors import ConfigError
from .files import read_bounded
from .settings import (
    ProxySettings,
    RunSettings,
    Settings,
    allowed,
    check_value,
    from_keys,
    key_fields,
    kind,
    shown,
)

#: A config file is a page of keys; anything bigger is not one (``/dev/zero`` would grow without end).
MAX_CONFIG_BYTES = 1 << 20

KEYS = tuple(key_fields(RunSettings))
PROXY_KEYS = tuple(key_fields(ProxySettings))


def _from_flag(f: Field):
    """An argparse ``type=`` that parses the flag's text and applies the key's checks."""
    what = kind(f)

    def parse(text: str) -> Any:
        try:
            if what == "int":
                value: Any = int(text)
            elif what == "float":
                value = float(text)
            elif what == "device":
                value = int(text) if text.isdigit() else text
            else:
                value = text
            return check_value(f, value)
        except ValueError:  # int() of thousands of digits raises it too
            echo = repr(text) if len(text) <= 40 else f"{text[:30]!r}…({len(text)} characters)"
            raise argparse.ArgumentTypeError(f"{echo}: must be {allowed(f)}") from None

    return parse


def add_flags(parser: argparse.ArgumentParser, settings: type[Settings]) -> None:
    """One flag per key, grouped by stage; unset flags stay out of the namespace, so the file's value stands."""
    groups: dict[str | None, Any] = {}
    for key, (stage, f) in key_fields(settings).items():
        if stage not in groups:
            groups[stage] = parser if stage is None else parser.add_argument_group(f"{stage} settings")
        meta, flag = f.metadata, "--" + key.replace("_", "-")
        default = f.default if f.default_factory is MISSING else f.default_factory()
        shown_default = str(default).lower() if kind(f) == "bool" else default
        low, high = meta["minimum"], meta["maximum"]
        text = f"{meta['help']}: {low:g} to {high:g}" if low is not None and high is not None else meta["help"]
        help_text = (text if default is None else f"{text} (default: {shown_default})").replace("%", "%%")
        options: dict[str, Any] = {"dest": key, "default": argparse.SUPPRESS, "help": help_text}
        if kind(f) == "bool":
            groups[stage].add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        else:
            metavar = meta["metavar"] or ("{" + ",".join(map(str, meta["choices"])) + "}" if meta["choices"] else None)
            groups[stage].add_argument(flag, type=_from_flag(f), metavar=metavar, **options)


def _parse_toml(path: Path) -> dict[str, Any]:
    try:
        data = read_bounded(path, MAX_CONFIG_BYTES)
    except ValueError as error:
        reason = str(error)
        if reason == "no such file":
            raise ConfigError(f"config file {path} not found") from None
        if reason.startswith("is "):  # a directory, a FIFO, a device, too big: named for what it is
            raise ConfigError(f"config file {path} {reason}") from None
        raise ConfigError(f"config file {path}: {reason}") from None
    try:
        return tomllib.loads(data.decode())
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a config file: values nested too deeply") from None
    except ValueError:  # an integer of more digits than Python reads (TOML's are 64-bit)
        raise ConfigError(f"{path}: not valid TOML: a number of thousands of digits") from None


def read_config_file(path: Path, settings: type[Settings] = RunSettings) -> dict[str, Any]:
    """The checked keys of a TOML config file; ConfigError (one line) for anything wrong in it."""
    table = key_fields(settings)
    values = {}
    for key, value in _parse_toml(path).items():
        if key not in table:
            close = difflib.get_close_matches(key, list(table), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {key[:40]!r}{hint}; allowed keys: {', '.join(table)}")
        try:
            values[key] = check_value(table[key][1], value, base=path.parent)
        except ValueError as error:
            raise ConfigError(f"{path}: {key} = {shown(value)}: {error}") from None
    return values


def resolve(config_path: Path | None, flags: dict[str, Any], settings: type[Settings] = RunSettings) -> Settings:
    """Defaults ← the config file ← the flags given; a ``settings`` instance, checked.

    ``config_path`` None means the default file, which may be absent; a file named explicitly
    must exist.
    """
    path = settings.DEFAULT_FILE if config_path is None else config_path
    from_file = {} if config_path is None and not path.exists() else read_config_file(path, settings)
    where = f"{path}: " if from_file else ""
    try:
        built = from_keys(settings, {**from_file, **flags})
        built.check()
    except (ConfigError, ValueError) as error:  # the rules between keys
        raise ConfigError(f"{where}{error}") from None
    return built


def flag_values(namespace: argparse.Namespace, settings: type[Settings]) -> dict[str, Any]:
    """The settings given as flags: an unset flag is absent, so the config file's value stands."""
    keys = key_fields(settings)
    return {key: value for key, value in vars(namespace).items() if key in keys}
