"""CURVE on the wire: only subscribers holding an admitted key receive anything, from a daemon or a proxy."""

from __future__ import annotations

import json
import stat
import subprocess

import pytest

from ser_stream.events import TOPICS
from testkit.live import (
    STREAM_CLIPS,
    JsonPrinter,
    Lines,
    Subscriber,
    build_stream,
    cli_executable,
    free_endpoint,
    start_daemon,
    wait_until,
)
from tests.conftest import run_cli


@pytest.fixture
def keys(tmp_path):
    """A server pair, alice admitted (her public key in allowed/), mallory not; for a fleet, a
    proxy frontend pair and two devices, kiosk admitted (in devices/), rogue not."""
    pairs = [("server", "server"), ("alice", "alice"), ("mallory", "mallory")]
    pairs += [("frontend", "frontend"), ("kiosk", "kiosk"), ("rogue", "rogue")]
    for directory, name in pairs:
        result = run_cli("keygen", str(tmp_path / directory), "--name", name)
        assert result.returncode == 0, result.stderr
    for folder, admitted in (("allowed", "alice"), ("devices", "kiosk")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{admitted}.key").write_bytes((tmp_path / admitted / f"{admitted}.key").read_bytes())
    return tmp_path


def subscriber(endpoint, keys, who=None, topics=TOPICS) -> JsonPrinter:
    args = [cli_executable(), "subscribe", endpoint, *(item for topic in topics for item in ("--topic", topic))]
    if who is not None:
        args += ["--curve-server-key", str(keys / "server/server.key")]
        args += ["--curve-secret-key", str(keys / f"{who}/{who}.key_secret")]
    return JsonPrinter(args)


def heard_from(listener: JsonPrinter, schema: str, device: str | None = None, state: str | None = None) -> bool:
    return any(
        event["schema"] == schema and device in (None, event.get("device")) and state in (None, event.get("state"))
        for event in listener.events()
    )


def proxy_process(frontend, backend, *curve, heartbeat_s="0.5"):
    return subprocess.Popen(
        [cli_executable(), "proxy", "--frontend", frontend, "--backend", backend, "--heartbeat-s", heartbeat_s, *curve],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_keygen_writes_a_public_key_and_a_private_secret_key(keys):
    assert (keys / "server/server.key").read_text().count("secret-key") == 0
    assert "secret-key" in (keys / "server/server.key_secret").read_text()
    assert stat.S_IMODE((keys / "server/server.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((keys / "server/server.key").stat().st_mode) == 0o644


def test_keygen_never_replaces_a_key_pair(keys):
    before = (keys / "server/server.key_secret").read_bytes()
    again = run_cli("keygen", str(keys / "server"), "--name", "server")
    assert again.returncode == 78 and again.stderr.count("\n") == 1 and "never replaces" in again.stderr
    assert (keys / "server/server.key_secret").read_bytes() == before


@pytest.mark.slow
def test_only_an_admitted_subscriber_receives_the_daemons_events(ravdess, tmp_path, keys):
    stream = tmp_path / "stream.wav"
    build_stream(ravdess, stream, STREAM_CLIPS[:1], gap_s=1.0)
    endpoint = free_endpoint()
    listeners = {who: subscriber(endpoint, keys, who) for who in ("alice", "mallory", None)}
    try:  # nothing is sent before alice's subscription arrives; mallory's attempts began with hers
        daemon = start_daemon(
            *("--source", str(stream), "--realtime", "--wait-subscriber", "30"),
            *("--curve-secret-key", str(keys / "server/server.key_secret")),
            *("--curve-allowed-clients", str(keys / "allowed")),
            endpoint=endpoint,
        )
        out, stderr = daemon.communicate(timeout=60)
        wait_until(lambda: heard_from(listeners["alice"], "ser-stream.status/1", state="stopping"), 10, "the end")
    finally:
        received = {who: listener.stop() for who, listener in listeners.items()}
    assert daemon.returncode == 0, stderr
    printed = [json.loads(line) for line in out.splitlines()]
    assert [event["seq"] for event in received["alice"]] == [event["seq"] for event in printed]  # everything
    assert any("label" in event for event in received["alice"])
    assert received["mallory"] == [] and received[None] == []  # a wrong key, or none: nothing


@pytest.mark.slow
def test_only_an_admitted_subscriber_receives_from_a_curve_proxy(keys):
    frontend, backend = free_endpoint(), free_endpoint()
    secret, allowed = str(keys / "server/server.key_secret"), str(keys / "allowed")
    curve = ["--backend-curve-secret-key", secret, "--backend-curve-allowed-clients", allowed]
    proxy = proxy_process(frontend, backend, *curve, heartbeat_s="0.3")
    listeners = {who: subscriber(backend, keys, who, topics=("proxy",)) for who in ("alice", "mallory", None)}
    try:  # three heartbeats for alice: the others, started with her, were refused as long
        wait_until(lambda: len(listeners["alice"].events()) >= 3, 30, "three proxy heartbeats for alice")
    finally:
        received = {who: listener.stop() for who, listener in listeners.items()}
    proxy.terminate()
    assert proxy.wait(10) == 0
    assert len(received["alice"]) >= 3 and all(event["schema"] == "ser-stream.proxy/1" for event in received["alice"])
    assert received["mallory"] == [] and received[None] == []


@pytest.mark.slow
def test_only_an_admitted_device_gets_its_events_into_a_curve_proxy(ravdess, tmp_path, keys):
    """Both links encrypted: kiosk's key is admitted at the frontend; rogue's is not, and a device
    without CURVE is not either.  Alice, admitted at the backend, sees kiosk's events only."""
    frontend, backend = free_endpoint(), free_endpoint()
    curve = [
        *("--frontend-curve-secret-key", str(keys / "frontend/frontend.key_secret")),
        *("--frontend-curve-allowed-clients", str(keys / "devices")),
        *("--backend-curve-secret-key", str(keys / "server/server.key_secret")),
        *("--backend-curve-allowed-clients", str(keys / "allowed")),
    ]
    proxy = proxy_process(frontend, backend, *curve)
    alice = subscriber(backend, keys, "alice")
    stream = tmp_path / "stream.wav"
    build_stream(ravdess, stream, STREAM_CLIPS[:2], gap_s=1.0)
    device_keys = {
        "kiosk": ["--curve-server-key", str(keys / "frontend/frontend.key")],
        "rogue": ["--curve-server-key", str(keys / "frontend/frontend.key")],
        "plain": [],
    }
    daemons = {}
    try:
        wait_until(lambda: heard_from(alice, "ser-stream.proxy/1"), 30, "a proxy event: alice's subscription is in")
        for device, server_key in device_keys.items():
            own_key = ["--curve-secret-key", str(keys / f"{device}/{device}.key_secret")] if server_key else []
            daemons[device] = start_daemon(
                *("--source", str(stream), "--no-realtime", "--wait-subscriber", "4"),
                *("--publish-connect", frontend, "--device-id", device, *server_key, *own_key),
                endpoint=free_endpoint(),
            )
        finished = {device: daemon.communicate(timeout=60) for device, daemon in daemons.items()}
        wait_until(lambda: heard_from(alice, "ser-stream.status/1", "kiosk", "stopping"), 10, "kiosk's last event")
    finally:
        received = alice.stop()
        proxy.terminate()
        _, proxy_log = proxy.communicate(timeout=10)
        for daemon in daemons.values():
            if daemon.poll() is None:
                daemon.kill()
    assert proxy.returncode == 0, proxy_log
    for device, (_out, stderr) in finished.items():
        assert daemons[device].returncode == 0, stderr
    printed = [json.loads(line) for line in finished["kiosk"][0].splitlines()]
    from_kiosk = [event for event in received if event.get("device") == "kiosk"]
    assert [event["seq"] for event in from_kiosk] == [event["seq"] for event in printed]  # every event
    assert sum(event.get("final", False) for event in from_kiosk) == 2
    assert {event.get("device") for event in received if event["schema"] != "ser-stream.proxy/1"} == {"kiosk"}
    assert any(event["schema"] == "ser-stream.proxy/1" for event in received)  # the proxy's own, over inproc
    assert "no subscriber after" in finished["rogue"][1] and "no subscriber after" in finished["plain"][1]
    assert "refused this device's CURVE key" in finished["rogue"][1]  # said once, not once per retry
    assert finished["rogue"][1].count("does not take this device's events") == 1
    assert "it expects CURVE" in finished["plain"][1]


@pytest.mark.slow
def test_a_refused_device_gets_through_once_the_proxy_admits_it(ravdess, tmp_path, keys):
    """libzmq never retries a refused handshake by itself; the daemon does, so admitting the key
    at the proxy (and restarting it, as the folder is read at start) is all an operator does."""
    frontend, backend = free_endpoint(), free_endpoint()
    devices = tmp_path / "devices-later"
    devices.mkdir()
    curve = [
        *("--frontend-curve-secret-key", str(keys / "frontend/frontend.key_secret")),
        *("--frontend-curve-allowed-clients", str(devices)),
    ]
    stream = tmp_path / "stream.wav"
    build_stream(ravdess, stream, STREAM_CLIPS[:5], gap_s=1.0)
    proxy = proxy_process(frontend, backend, *curve)
    daemon = start_daemon(
        *("--source", str(stream), "--realtime", "--device-id", "kiosk", "--publish-connect", frontend),
        *("--curve-server-key", str(keys / "frontend/frontend.key")),
        *("--curve-secret-key", str(keys / "kiosk/kiosk.key_secret")),
        endpoint=free_endpoint(),
    )
    log = Lines(daemon.stderr)
    subscriber = None
    try:
        wait_until(lambda: log.having("refused this device's CURVE key"), 15, "the refusal in the daemon's log")
        (devices / "kiosk.key").write_bytes((keys / "kiosk/kiosk.key").read_bytes())
        proxy.terminate()
        assert proxy.wait(10) == 0
        proxy = proxy_process(frontend, backend, *curve)
        subscriber = Subscriber(backend)
        wait_until(lambda: subscriber.of("emotion"), 30, "an emotion event from the admitted device")
        daemon.terminate()
        assert daemon.wait(10) == 0
    finally:
        for process in (proxy, daemon):
            if process.poll() is None:
                process.kill()
        if subscriber is not None:
            subscriber.close()
    stderr = log.text()
    assert "accepted this device" in stderr and "Traceback" not in stderr
    assert all(event["device"] == "kiosk" for event in subscriber.of("emotion"))


def test_curve_settings_errors_are_one_line(keys, ravdess):
    clip = str(ravdess / "Actor_01" / "03-01-01-01-01-01-01.flac")
    cases = [
        (["--curve-secret-key", str(keys / "server/server.key_secret")], "go together"),
        (
            ["--curve-secret-key", str(keys / "server/server.key"), "--curve-allowed-clients", str(keys / "allowed")],
            "holds no secret key",
        ),
        (
            ["--curve-secret-key", str(keys / "nope"), "--curve-allowed-clients", str(keys / "allowed")],
            "not a readable CURVE secret key",
        ),
        (
            ["--curve-secret-key", str(keys / "server/server.key_secret"), "--curve-allowed-clients", str(keys / "x")],
            "not a folder of client public keys",
        ),
    ]
    for args, message in cases:
        result = run_cli("run", "--source", clip, "--no-realtime", "--publish", free_endpoint(), *args)
        assert result.returncode == 78, result.stderr
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    server_key, secret = str(keys / "frontend/frontend.key"), str(keys / "kiosk/kiosk.key_secret")
    connect = ["--publish-connect", free_endpoint()]
    for args, message in [
        ([*connect, "--curve-secret-key", secret], "curve_server_key and curve_secret_key go together"),
        (
            [*connect, "--curve-server-key", server_key, "--curve-secret-key", secret, "--curve-allowed-clients", "d"],
            "curve_allowed_clients is for a bound PUB socket",
        ),
        (["--curve-server-key", server_key, "--curve-secret-key", secret], "curve_server_key is for publish_connect"),
        (
            [*connect, "--curve-server-key", server_key + ".gone", "--curve-secret-key", secret],
            "not a readable CURVE public key",
        ),
    ]:
        result = run_cli("run", "--source", clip, "--no-realtime", *args)
        assert result.returncode == 78, result.stderr
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_proxy_and_subscriber_curve_errors_are_one_line(keys):
    ends = ["--frontend", free_endpoint(), "--backend", free_endpoint()]
    for args, message in [
        (["proxy", *ends, "--frontend-curve-secret-key", str(keys / "frontend/frontend.key_secret")], "go together"),
        (
            [
                "proxy",
                *ends,
                "--backend-curve-secret-key",
                str(keys / "server/server.key"),
                "--backend-curve-allowed-clients",
                str(keys / "allowed"),
            ],
            "holds no secret key",
        ),
        (["subscribe", free_endpoint(), "--curve-server-key", str(keys / "server/server.key")], "go together"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 78, result.stderr
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
