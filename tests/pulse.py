"""The PulseAudio virtual microphone (testkit/pulse.py) as a session fixture.

tests/conftest.py imports the fixture, so one daemon serves the whole session: a test module that
assigned it to a name of its own would get a daemon of its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from ser_stream.capture import list_input_devices, rescan_devices
from ser_stream.errors import UserError
from testkit.pulse import DEBIAN_PACKAGES, VirtualMic, VirtualMicError, running_mic


@pytest.fixture(scope="session")
def virtual_mic() -> Iterator[VirtualMic]:
    """A running virtual microphone for the session; skips when PulseAudio's tools are not installed."""
    missing = [tool for tool in ("pulseaudio", "pactl", "paplay") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: install the Debian packages {DEBIAN_PACKAGES}")
    try:
        with running_mic() as mic, pytest.MonkeyPatch.context() as patch:
            patch.setenv("PULSE_SERVER", mic.env["PULSE_SERVER"])
            try:
                rescan_devices()  # PortAudio may have been initialised before the server existed
            except UserError as error:
                pytest.skip(f"{error} (Debian packages: {DEBIAN_PACKAGES})")
            if not any(device["name"] == mic.device for device in list_input_devices()):
                mic.fail(f'PortAudio has no "{mic.device}" input device: is libasound2-plugins installed?')
            yield mic
    except VirtualMicError as error:
        pytest.fail(str(error), pytrace=False)
