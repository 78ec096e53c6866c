"""Hostile and careless config, through the real CLI: every problem is one line and the documented exit
code, never a hang, a traceback or memory that grows; bounds hold for the file, the flags and a reload."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import soundfile

from testkit.live import Lines, build_stream, cli_executable, free_endpoint, wait_until
from tests.conftest import run_cli, speech_like

#: A config check answers at once; a FIFO that blocked or a /dev/zero that was read would not.
PROMPT_S = 30


def one_line(result: subprocess.CompletedProcess, code: int, *texts: str) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1 and len(result.stderr) < 400, result.stderr
    assert "Traceback" not in result.stderr
    for text in texts:
        assert text in result.stderr, result.stderr


def test_a_config_file_that_is_no_regular_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.toml"
    zero.symlink_to("/dev/zero")
    loop = tmp_path / "loop.toml"
    loop.symlink_to(tmp_path / "loop2.toml")
    (tmp_path / "loop2.toml").symlink_to(loop)
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 200_000)  # 2 MB of comments: valid TOML, but no config file
    cases = [
        (fifo, "is a named pipe (FIFO), not a regular file"),
        (zero, "is a character device, not a regular file"),
        (loop, "is a loop of symbolic links"),
        (big, "is larger than 1024 KiB"),
        (tmp_path, "is a directory, not a regular file"),
    ]
    for command in ("run", "proxy"):
        for path, reason in cases:
            one_line(run_cli(command, "--config", str(path), timeout=PROMPT_S), 78, f"config file {path} {reason}")


#: Every duration and size has a bound; these are far beyond them.
UNBOUNDED = [
    ("heartbeat_s", "1e10", "must be a number from 0.1 to 3600"),
    ("wait_subscriber", "1e300", "must be a number from 0 to 3600"),
    ("hangover_ms", str(10**30), "must be a whole number from 1 to 10000"),
    ("pre_roll_ms", str(10**18), "must be a whole number from 0 to 5000"),
    ("min_utterance_ms", "86400000", "must be a whole number from 0 to 60000"),
    ("max_utterance_ms", str(2**63), "must be a whole number from 1 to 60000"),
]


@pytest.mark.parametrize(("key", "value", "message"), UNBOUNDED, ids=[key for key, _, _ in UNBOUNDED])
def test_durations_and_sizes_are_bounded_in_the_file_and_the_flags(tmp_path, key, value, message):
    config = tmp_path / "config.toml"
    config.write_text(f"{key} = {value}\n")
    one_line(run_cli("run", "--config", str(config), timeout=PROMPT_S), 78, f"{config}: {key} = ", message)
    flag = "--" + key.replace("_", "-")
    one_line(run_cli("run", flag, value, timeout=PROMPT_S), 2, f"argument {flag}: ", message)


def test_the_proxy_heartbeat_is_bounded_too(tmp_path):
    one_line(run_cli("proxy", "--heartbeat-s", "1e10", timeout=PROMPT_S), 2, "must be a number from 0.1 to 3600")


def test_huge_integers_and_deep_nesting_are_one_line(tmp_path):
    digits = "9" * 5000
    cases = {
        "int.toml": f"hangover_ms = {digits}\n",  # more digits than Python converts
        "deep.toml": "hangover_ms = " + "[" * 3000 + "]" * 3000 + "\n",
        "table.toml": "a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        result = run_cli("run", "--config", str(tmp_path / name), timeout=PROMPT_S)
        one_line(result, 78, f"{tmp_path / name}: ")
    one_line(run_cli("run", "--hangover-ms", digits, timeout=PROMPT_S), 2, "argument --hangover-ms: ", "characters)")
    source = tmp_path / "speech.wav"
    soundfile.write(source, speech_like(1.0), 16000)
    endpoint = f"tcp://127.0.0.1:{digits}"
    one_line(
        run_cli("run", "--source", str(source), "--publish", endpoint, timeout=PROMPT_S), 4, "the TCP port must be"
    )
    one_line(run_cli("subscribe", endpoint, timeout=PROMPT_S), 4, "the TCP port must be")
    one_line(run_cli("proxy", "--frontend", endpoint, "--backend", free_endpoint(), timeout=PROMPT_S), 4, "TCP port")


def test_device_id_is_a_short_printable_name(tmp_path):
    config = tmp_path / "config.toml"
    for value in ("x" * 129, "kiosk\\u0007", "kiosk\\nfake-line"):
        config.write_text(f'device_id = "{value}"\n')
        one_line(
            run_cli("run", "--config", str(config), timeout=PROMPT_S),
            78,
            "device_id = ",
            "must be a printable string of at most 128 characters",
        )
    one_line(run_cli("run", "--device-id", "y" * 100_000, timeout=PROMPT_S), 2, "--device-id", "128 characters")


@pytest.mark.ravdess
def test_a_reload_refuses_an_unbounded_heartbeat_and_keeps_running(tmp_path, ravdess):
    stream = tmp_path / "stream.wav"
    build_stream(ravdess, stream)  # about 40 s paced in real time: the daemon runs while we reload
    config = tmp_path / "config.toml"
    config.write_text("heartbeat_s = 0.5\n")
    command = ["run", "--config", str(config), "--source", str(stream), "--publish", free_endpoint(), "--print"]
    daemon = subprocess.Popen(
        [cli_executable(), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    stdout, stderr = Lines(daemon.stdout), Lines(daemon.stderr)
    try:
        wait_until(lambda: stdout.having('"state": "running"'), 30, "a first heartbeat")
        config.write_text("heartbeat_s = 1e10\n")
        daemon.send_signal(signal.SIGHUP)
        refused = wait_until(lambda: stdout.having("reload failed"), 30, "the reload's status event")
        heartbeats = len([line for line in stdout.lines if '"state": "running"' in line])
        wait_until(  # the old period still holds
            lambda: len([line for line in stdout.lines if '"state": "running"' in line]) >= heartbeats + 2,
            30,
            "heartbeats after the refused reload",
        )
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    message = json.loads(refused)["message"]
    assert "heartbeat_s = 10000000000.0: must be a number from 0.1 to 3600" in message
    log = stderr.text()
    assert "reload failed" in log and "heartbeat_s" in log and "Traceback" not in log
