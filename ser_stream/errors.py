"""Errors a user can cause, each with its exit code: the CLI prints their message as one line and exits with it."""

from __future__ import annotations

import argparse
from typing import NoReturn


class UserError(Exception):
    """A problem with the user's input, files or environment, not a bug in ser-stream."""

    exit_code = 2


class AudioError(UserError):
    """A file that cannot be read as audio."""


class ModelError(UserError):
    """A model bundle that is missing, tampered with or unusable."""

    exit_code = 3


class DeviceError(UserError):
    """An input device that is absent, busy or went away: worth retrying, unlike a bad setting."""

    exit_code = 5


class DeviceLostError(DeviceError):
    """The input stream ended on its own (device unplugged, sound server gone): the daemon reopens it."""


class EndpointError(UserError):
    """An endpoint that is malformed or cannot be bound or connected (e.g. the port is in use): worth retrying."""

    exit_code = 4


class NoEventsError(UserError):
    """`subscribe --timeout`: nothing arrived in time.  75 is EX_TEMPFAIL (sysexits.h): try again later."""

    exit_code = 75


class NotClassifiable(UserError):
    """A readable recording with nothing in it to classify."""


class ConfigError(UserError):
    """A config file or setting that cannot be used.  Exit status 78 is EX_CONFIG (sysexits.h): the
    systemd unit lists it in ``RestartPreventExitStatus=``, so a broken config is not restarted forever."""

    exit_code = 78


class PipelineError(UserError):
    """A thread of the running pipeline died (a bug, or a library failing under it): not the user's
    doing, but it takes the same one-line path.  Exit status 70 is EX_SOFTWARE (sysexits.h); the unit
    restarts it, since a fresh process may well run."""

    exit_code = 70


class ArgumentParser(argparse.ArgumentParser):
    """Usage mistakes (an unknown flag, a bad flag value) end in one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(UserError.exit_code, f"{self.prog}: error: {message} (see --help)\n")
