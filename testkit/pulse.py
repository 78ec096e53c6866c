"""A PulseAudio virtual microphone, so tests exercise the real capture path through PortAudio.

The recipe of design.md ("Testing audio without a microphone"): a private PulseAudio daemon
with a null sink, a mono source remapped from its monitor, both made the defaults. Whatever
``VirtualMic.play`` plays comes out of PortAudio's ALSA device "pulse" (the ALSA pulse plugin,
Debian package libasound2-plugins, a dependency of pulseaudio).

The daemon runs in its own runtime directory under the temp dir (named after the pytest
process), so it neither meets a sound server already running nor another test run's. Daemons
left behind by killed test runs are ended when the next run starts. PULSE_SERVER is set in
os.environ for the session, so this process and the subprocesses tests spawn use it.

The tests get one for the session from the fixture in tests/pulse.py; `running_mic` starts one
for anyone else (the benchmarks).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testkit.live import wait_until

DEBIAN_PACKAGES = "pulseaudio pulseaudio-utils libasound2-plugins libportaudio2"
SINK = "virtmic_sink"
SOURCE = "virtmic"
#: The PortAudio (ALSA host API) device that reaches PulseAudio's default source.
PORTAUDIO_DEVICE = "pulse"
RUN_DIR_PREFIX = "ser-stream-pulse-"


class VirtualMicError(RuntimeError):
    """The virtual microphone could not be set up; the message holds the tool's output and the server's log."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, but another user's
    return True


@dataclass
class VirtualMic:
    """A private PulseAudio daemon whose default source hears what is played to its null sink."""

    run_dir: Path
    device: str = PORTAUDIO_DEVICE  # what sounddevice / MicSource should open

    @property
    def env(self) -> dict[str, str]:
        """Environment for PulseAudio's own tools; PULSE_RUNTIME_PATH is where the daemon keeps socket and pid."""
        runtime = self.run_dir / "pulse"
        return {**os.environ, "PULSE_RUNTIME_PATH": str(runtime), "PULSE_SERVER": f"unix:{runtime / 'native'}"}

    @property
    def log(self) -> Path:
        return self.run_dir / "pulseaudio.log"

    def _run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )

    def fail(self, what: str, result: subprocess.CompletedProcess | None = None) -> None:
        output = (result.stderr or result.stdout).strip() if result else ""
        log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise VirtualMicError(f"virtual microphone: {what}: {output}\n{log}")

    def start_server(self) -> None:
        """Start the daemon with the null sink and the remapped source, both made the defaults."""
        result = self._run(
            "pulseaudio",
            "--daemonize=yes",
            "--exit-idle-time=-1",
            "-n",
            f"--log-target=file:{self.log}",
            "--load=module-native-protocol-unix",
        )
        if result.returncode != 0:
            self.fail("pulseaudio did not start", result)
        deadline = time.monotonic() + 10
        while (info := self._run("pactl", "info")).returncode != 0:
            if time.monotonic() > deadline:
                self.fail("pulseaudio does not answer", info)
            time.sleep(0.1)
        self.plug_in()

    def plug_in(self) -> None:
        """Load the null sink and the microphone remapped from its monitor, and make them the defaults."""
        for command in (
            ("load-module", "module-null-sink", f"sink_name={SINK}"),
            ("load-module", "module-remap-source", f"master={SINK}.monitor", f"source_name={SOURCE}", "channels=1"),
            ("set-default-source", SOURCE),
            ("set-default-sink", SINK),
        ):
            result = self._run("pactl", *command)
            if result.returncode != 0:
                self.fail(f"pactl {' '.join(command)} failed", result)

    def unplug(self) -> None:
        """Unload the microphone's modules, as if it were unplugged: with no source left to move it
        to, PulseAudio ends the recording stream and PortAudio reports the stream gone."""
        modules = self._run("pactl", "list", "short", "modules").stdout.splitlines()
        for name in ("module-remap-source", "module-null-sink"):
            for line in modules:
                index, module = line.split("\t")[:2]
                if module == name:
                    result = self._run("pactl", "unload-module", index)
                    if result.returncode != 0:
                        self.fail(f"pactl unload-module {index} ({name}) failed", result)

    def stop_server(self) -> None:
        """End the daemon (``pulseaudio --kill``) and wait until it is gone."""
        self._run("pulseaudio", "--kill")
        deadline = time.monotonic() + 10
        while self._run("pulseaudio", "--check").returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.1)

    def play(self, path: str | Path, timeout: float = 60) -> None:
        """Play an audio file into the virtual microphone; returns when it has been played."""
        result = self._run("paplay", f"--device={SINK}", str(path), timeout=timeout)
        if result.returncode != 0:
            self.fail(f"paplay {path} failed", result)

    def start_playing(self, path: str | Path, timeout: float = 30) -> subprocess.Popen:
        """Start playing an audio file into the virtual microphone; returns once its stream is on
        the sink (a busy machine may take a second to start paplay), while it plays."""
        player = subprocess.Popen(
            ["paplay", f"--device={SINK}", str(path)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: player.poll() is not None or self._run("pactl", "list", "short", "sink-inputs").stdout.strip(),
            timeout,
            f"paplay {path} to start",
        )
        return player


def _end_abandoned_daemons() -> None:
    """End daemons of earlier test runs whose pytest process is gone (a concurrent run's stay)."""
    for run_dir in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}*-*"):
        owner = run_dir.name[len(RUN_DIR_PREFIX) :].split("-")[0]
        if owner.isdigit() and _alive(int(owner)):
            continue
        VirtualMic(run_dir).stop_server()
        shutil.rmtree(run_dir, ignore_errors=True)


@contextmanager
def running_mic() -> Iterator[VirtualMic]:
    """A virtual microphone's server, running until the block ends; daemons of dead runs are ended first."""
    _end_abandoned_daemons()
    mic = VirtualMic(Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-")))
    try:
        mic.start_server()
        yield mic
    finally:
        mic.stop_server()
        shutil.rmtree(mic.run_dir, ignore_errors=True)
