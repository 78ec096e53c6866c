"""The systemd unit and the install command: systemd-analyze's verdicts, and a staged real install."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ser_stream.adapter_state import STATE_FILE, load_state
from ser_stream.config import ConfigError
from ser_stream.errors import DeviceError, EndpointError, ModelError, UserError
from ser_stream.model import load_bundle
from testkit.live import REPO, Subscriber, cli_executable, clip_path, free_endpoint, wait_for_audio, wait_until
from testkit.quick_model import tiny_bundle
from tests.sandbox import unit_settings

UNIT = REPO / "systemd" / "ser-stream.service"
PROXY_UNIT = REPO / "systemd" / "ser-stream-proxy.service"
#: The issue's bar for `systemd-analyze security` (0 = locked down, 10 = unprotected).
MAX_EXPOSURE = 2.5


def analyze(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: scripts/setup --dev installs the Debian package systemd")
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize("unit", [UNIT, PROXY_UNIT], ids=lambda unit: unit.name)
def test_security_exposure_is_at_most_2_5(unit):
    result = analyze("security", "--offline=yes", f"--threshold={int(MAX_EXPOSURE * 10)}", str(unit))
    exposure = float(re.search(rf"Overall exposure level for {unit.name}: ([\d.]+)", result.stdout)[1])
    assert result.returncode == 0 and exposure <= MAX_EXPOSURE, result.stdout[-3000:]


def test_the_unit_is_a_notify_service_that_does_not_restart_on_fatal_errors():
    unit = unit_settings(UNIT)
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert float(unit["WatchdogSec"][0]) > 0 and unit["Restart"] == ["on-failure"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    fatal = {int(code) for code in unit["RestartPreventExitStatus"][0].split()}
    # A usage error, a bad model or a bad config will fail the same way again; a lost device or a busy port may not.
    assert fatal == {UserError.exit_code, ModelError.exit_code, ConfigError.exit_code}
    assert DeviceError.exit_code not in fatal and EndpointError.exit_code not in fatal
    assert unit["DynamicUser"] == ["yes"] and unit["SupplementaryGroups"] == ["audio"]
    assert unit["DevicePolicy"] == ["closed"] and unit["CapabilityBoundingSet"] == [""]


def test_the_proxy_unit_is_a_notify_service_without_devices():
    unit = unit_settings(PROXY_UNIT)
    assert unit["Type"] == ["notify"] and float(unit["WatchdogSec"][0]) > 0 and unit["Restart"] == ["on-failure"]
    assert {int(code) for code in unit["RestartPreventExitStatus"][0].split()} == {
        UserError.exit_code,
        ConfigError.exit_code,
    }
    assert unit["DynamicUser"] == ["yes"] and unit["PrivateDevices"] == ["yes"] and "SupplementaryGroups" not in unit
    assert unit["ExecStart"] == ["/opt/ser-stream/bin/ser-stream proxy --config /etc/ser-stream/proxy.toml"]


def install_into(root: Path) -> subprocess.CompletedProcess:
    """scripts/install for real, into a staging root instead of /opt, /etc and /usr/local."""
    layout = {
        "--prefix": "opt/ser-stream",
        "--sysconfdir": "etc",
        "--unitdir": "etc/systemd/system",
        "--bindir": "usr/local/bin",
    }
    options = [item for option, path in layout.items() for item in (option, str(root / path))]
    return subprocess.run(
        [str(REPO / "scripts" / "install"), *options],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def staged_install(tmp_path_factory) -> Path:
    """An upgrade: over an earlier install's config and pickle bundle (which the daemon now refuses)."""
    root = tmp_path_factory.mktemp("root")
    old_model = root / "opt/ser-stream/models/ser-mlp.joblib"
    old_model.parent.mkdir(parents=True)
    old_model.write_bytes(b"a pickle")
    old_config = (REPO / "systemd" / "config.toml").read_text()
    old_config = re.sub(r"(?m)^model = .*$", f'model = "{old_model}"', old_config)
    (root / "etc/ser-stream").mkdir(parents=True)
    (root / "etc/ser-stream/config.toml").write_text(old_config)
    result = install_into(root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"config.toml: model is now {old_model.with_suffix('.npz')}" in result.stderr
    return root


@pytest.mark.slow
@pytest.mark.parametrize(("name", "command"), [("ser-stream", "run"), ("ser-stream-proxy", "proxy")])
def test_the_installed_units_pass_systemd_analyze_verify(staged_install, name, command):
    unit = staged_install / f"etc/systemd/system/{name}.service"
    result = analyze("verify", str(unit))
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr
    prefix, etc = staged_install / "opt/ser-stream", staged_install / "etc/ser-stream"
    config = "config.toml" if command == "run" else "proxy.toml"
    assert f"ExecStart={prefix}/bin/ser-stream {command} --config {etc}/{config}" in unit.read_text()


@pytest.mark.slow
def test_the_installed_command_runs_from_its_own_venv_model_and_config(staged_install, ravdess, tmp_path):
    clip = clip_path(ravdess, 2, 1)
    env = {key: value for key, value in os.environ.items() if key not in ("SER_STREAM_MODEL", "PYTHONPATH")}
    command = staged_install / "usr/local/bin/ser-stream"
    classified = subprocess.run(
        [str(command), "classify", str(clip)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    assert classified.returncode == 0, classified.stderr
    assert classified.stdout.startswith(f"{clip}\tcalm")
    config = staged_install / "etc/ser-stream/config.toml"
    for written in (config, config.with_name("config.toml.example")):  # the kept one, and the new example
        assert f'model = "{staged_install}/opt/ser-stream/models/ser-mlp.npz"' in written.read_text()
    assert sorted(p.name for p in (staged_install / "opt/ser-stream/models").iterdir()) == [
        "README.md",
        "ser-mlp.json",
        "ser-mlp.npz",
    ]
    installed, endpoint = str(staged_install / "opt/ser-stream/bin/ser-stream"), free_endpoint()
    ran = subprocess.run(
        [
            installed,
            "run",
            "--config",
            str(config),
            "--source",
            str(clip),
            "--no-realtime",
            "--print",
            "--publish",
            endpoint,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert '"label": "calm"' in ran.stdout
    assert (
        f"{staged_install}/opt/ser-stream/lib/"
        in subprocess.run(
            [str(staged_install / "opt/ser-stream/bin/python"), "-c", "import ser_stream; print(ser_stream.__file__)"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
        ).stdout
    )  # the installed copy, not this checkout


@pytest.mark.slow
@pytest.mark.slow
def test_the_installed_proxy_runs_from_its_config(staged_install, tmp_path):
    config = staged_install / "etc/ser-stream/proxy.toml"
    frontend, backend = free_endpoint(), free_endpoint()
    config.write_text(
        config.read_text().replace("tcp://0.0.0.0:5557", frontend).replace("tcp://127.0.0.1:5556", backend)
    )
    installed = str(staged_install / "opt/ser-stream/bin/ser-stream")
    returncode, stderr, heartbeats = run_proxy_briefly(
        [installed, "proxy", "--config", str(config), "--heartbeat-s", "0.2"], backend, cwd=tmp_path
    )
    assert returncode == 0, stderr
    assert heartbeats[-1]["state"] == "stopping"


def run_proxy_briefly(command: list[str], backend: str, cwd: Path) -> tuple[int | None, str, list[dict]]:
    """Start a proxy, wait for its first `proxy` event, stop it with SIGTERM: (exit status, stderr,
    its events).  The status is the sandbox's 3 if the kernel could not apply it."""
    subscriber = Subscriber(backend)
    proxy = subprocess.Popen(command, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=cwd)
    try:
        wait_until(lambda: subscriber.of("proxy") or proxy.poll() is not None, 20, "a proxy event")
        if proxy.poll() is None:
            proxy.send_signal(signal.SIGTERM)
        _, stderr = proxy.communicate(timeout=15)
        if proxy.returncode == 0:  # it said "stopping" last
            wait_until(lambda: subscriber.stopped("proxy"), 10, "the proxy's last event")
    finally:
        if proxy.poll() is None:
            proxy.kill()
        subscriber.close()
    return proxy.returncode, stderr, subscriber.of("proxy")


@pytest.mark.slow
def test_reinstalling_keeps_edited_configs(staged_install):
    configs = [staged_install / "etc/ser-stream" / name for name in ("config.toml", "proxy.toml")]
    for config in configs:
        config.write_text(config.read_text() + 'log_level = "debug"\n')
    edited = [config.read_text() for config in configs]
    result = install_into(staged_install)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [config.read_text() for config in configs] == edited
    for config in configs:
        assert config.with_name(config.name + ".example").exists()
    assert result.stderr.count("kept") == 2


def test_install_refuses_unknown_options_in_one_line():
    result = subprocess.run(
        [str(REPO / "scripts" / "install"), "--prefx", "/x"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--prefx" in result.stderr


def sandboxed(unit: Path, *command: str) -> list[str]:
    """``command`` as systemd would run it under ``unit``'s NoNewPrivileges, MemoryDenyWriteExecute and
    SystemCallFilter (see tests/sandbox.py)."""
    return [sys.executable, "-m", "tests.sandbox", str(unit), *command]


def test_the_sandbox_enforces_the_units_system_call_filter():
    """So the tests below can fail: what the filter leaves out fails with EPERM, what it keeps works."""
    probe = "import os; os.sched_setaffinity(0, {0}); print('affinity set')"  # @resources: denied
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, cwd=REPO).returncode == 0
    denied = subprocess.run(sandboxed(UNIT, sys.executable, "-c", probe), capture_output=True, text=True, cwd=REPO)
    if denied.returncode == 3:
        pytest.skip(denied.stderr.strip())
    assert denied.returncode == 1 and "PermissionError: [Errno 1]" in denied.stderr, denied.stderr
    allowed = "import os; os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0)); print('ok')"
    kept = subprocess.run(sandboxed(UNIT, sys.executable, "-c", allowed), capture_output=True, text=True, cwd=REPO)
    assert kept.returncode == 0 and kept.stdout == "ok\n", kept.stderr


@pytest.mark.slow
def test_the_daemon_captures_classifies_and_keeps_its_adaptation_in_the_units_sandbox(virtual_mic, ravdess, tmp_path):
    """MemoryDenyWriteExecute=yes: serving must not JIT (no numba), and capture must not need a cffi
    callback.  SystemCallFilter=: libzmq's threads, PortAudio, numpy and the state file's atomic save
    (fsync, rename) must live with it."""
    assert unit_settings(UNIT)["MemoryDenyWriteExecute"] == ["yes"]
    assert unit_settings(UNIT)["StateDirectory"] == ["ser-stream"]
    assert "--state-dir /var/lib/ser-stream" in unit_settings(UNIT)["ExecStart"][0]
    model = load_bundle(tiny_bundle(tmp_path / "model"))  # one that adapts
    endpoint = free_endpoint()
    subscriber = Subscriber(endpoint)
    command = [cli_executable(), "run", "--device", virtual_mic.device, "--publish", endpoint, "--print"]
    command += ["--model", str(model.path), "--state-dir", str(tmp_path / "state")]
    daemon = subprocess.Popen(
        sandboxed(UNIT, *command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    try:
        first = daemon.stdout.readline()
        if not first and daemon.wait(10) == 3:
            pytest.skip(daemon.stderr.read().strip())
        assert json.loads(first)["state"] == "started", daemon.stderr.read()
        wait_for_audio(subscriber)
        virtual_mic.play(clip_path(ravdess, 3, 1, intensity=2))
        try:
            wait_until(lambda: subscriber.of("emotion"), 60, "an emotion event")  # generous: a busy 2-core machine
        except AssertionError as timeout:
            daemon.kill()
            raise AssertionError(
                f"{timeout}; topics seen {[t for t, _ in subscriber.messages]}; "
                f"the daemon's log: {daemon.communicate(timeout=15)[1]}"
            ) from None
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        subscriber.close()
    assert daemon.returncode == 0, stderr
    assert len(subscriber.of("emotion")) == 1 and "Traceback" not in stderr
    assert load_state(tmp_path / "state" / STATE_FILE, model.prior, model.sha256).heard == 1  # saved at stop


@pytest.mark.slow
def test_the_proxy_forwards_in_its_units_sandbox():
    frontend, backend = free_endpoint(), free_endpoint()
    command = [cli_executable(), "proxy", "--frontend", frontend, "--backend", backend, "--heartbeat-s", "0.2"]
    returncode, stderr, heartbeats = run_proxy_briefly(sandboxed(PROXY_UNIT, *command), backend, cwd=REPO)
    if returncode == 3:
        pytest.skip(stderr.strip())
    assert returncode == 0, stderr
    assert heartbeats[-1]["state"] == "stopping" and "Traceback" not in stderr
