"""CURVE on the wire: only subscribers holding an admitted key receive anything, from a daemon or a proxy."""

from __future__ import annotations

import json
import stat
import subprocess
import time

import pytest

from tests.conftest import cli_executable, run_cli
from tests.live import STREAM_CLIPS, build_stream, free_endpoint, start_daemon


@pytest.fixture
def keys(tmp_path):
    """A server pair, alice admitted (her public key in allowed/), mallory not."""
    for directory, name in [("server", "server"), ("alice", "alice"), ("mallory", "mallory")]:
        result = run_cli("keygen", str(tmp_path / directory), "--name", name)
        assert result.returncode == 0, result.stderr
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "alice.key").write_bytes((tmp_path / "alice" / "alice.key").read_bytes())
    return tmp_path


def subscriber(endpoint, keys, who=None, topics=("emotion", "status")):
    args = [cli_executable(), "subscribe", endpoint, *(item for topic in topics for item in ("--topic", topic))]
    if who is not None:
        args += ["--curve-server-key", str(keys / "server/server.key")]
        args += ["--curve-secret-key", str(keys / f"{who}/{who}.key_secret")]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def stop(process) -> list[dict]:
    process.terminate()
    out, _ = process.communicate(timeout=10)
    return [json.loads(line) for line in out.splitlines()]


def test_keygen_writes_a_public_key_and_a_private_secret_key(keys):
    assert (keys / "server/server.key").read_text().count("secret-key") == 0
    assert "secret-key" in (keys / "server/server.key_secret").read_text()
    assert stat.S_IMODE((keys / "server/server.key_secret").stat().st_mode) == 0o600


@pytest.mark.slow
def test_only_an_admitted_subscriber_receives_the_daemons_events(ravdess, tmp_path, keys):
    stream = tmp_path / "stream.wav"
    build_stream(ravdess, stream, STREAM_CLIPS[:1], gap_s=1.0)
    endpoint = free_endpoint()
    listeners = {who: subscriber(endpoint, keys, who) for who in ("alice", "mallory", None)}
    try:
        time.sleep(1.0)  # all three are trying to connect before anything is sent
        daemon = start_daemon(
            *("--source", str(stream), "--realtime", "--wait-subscriber", "10"),
            *("--curve-secret-key", str(keys / "server/server.key_secret")),
            *("--curve-allowed-clients", str(keys / "allowed")),
            endpoint=endpoint,
        )
        out, stderr = daemon.communicate(timeout=60)
        time.sleep(0.5)
    finally:
        received = {who: stop(process) for who, process in listeners.items()}
    assert daemon.returncode == 0, stderr
    printed = [json.loads(line) for line in out.splitlines()]
    assert [event["seq"] for event in received["alice"]] == [event["seq"] for event in printed]  # everything
    assert any("label" in event for event in received["alice"])
    assert received["mallory"] == [] and received[None] == []  # a wrong key, or none: nothing


@pytest.mark.slow
def test_only_an_admitted_subscriber_receives_from_a_curve_proxy(keys):
    frontend, backend = free_endpoint(), free_endpoint()
    secret, allowed = str(keys / "server/server.key_secret"), str(keys / "allowed")
    curve = ["--curve-secret-key", secret, "--curve-allowed-clients", allowed]
    proxy = subprocess.Popen(
        [cli_executable(), "proxy", "--frontend", frontend, "--backend", backend, "--heartbeat-s", "0.3", *curve],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    listeners = {who: subscriber(backend, keys, who, topics=("proxy",)) for who in ("alice", "mallory", None)}
    time.sleep(2.5)
    received = {who: stop(process) for who, process in listeners.items()}
    proxy.terminate()
    assert proxy.wait(10) == 0
    assert len(received["alice"]) >= 3 and all(event["schema"] == "ser-stream.proxy/1" for event in received["alice"])
    assert received["mallory"] == [] and received[None] == []


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
