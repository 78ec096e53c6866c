"""What the README shows a new user holds: its example events validate, its no-microphone
commands run as written from the checkout, and its subscriber reacts to a real daemon."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest

from ser_stream.events import validator_for
from testkit.live import REPO, Lines, build_monologues, cli_executable, free_endpoint, start_daemon, wait_until

README = (REPO / "README.md").read_text()


def json_examples() -> list[dict]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", README, re.DOTALL)]


def topic_of(event: dict) -> str:
    """The topic an example goes out on: its schema's, but an interim result is an emotion payload."""
    return "interim" if event.get("final") is False else event["schema"].split(".")[1].split("/")[0]


def test_every_example_event_in_the_readme_validates_against_the_schema():
    events = [example for example in json_examples() if "schema" in example]
    by_topic = {topic_of(event): event for event in events}
    assert sorted(by_topic) == ["emotion", "interim", "speech", "status"] and len(events) == 4
    for topic, event in by_topic.items():
        validator_for(topic).validate(event)


def no_microphone_commands() -> list[list[str]]:
    section = README.split("No microphone?", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in section.splitlines() if line.strip()]


@pytest.mark.ravdess
def test_the_no_microphone_examples_run_as_written(ravdess):
    commands = no_microphone_commands()
    assert [command[:2] for command in commands] == [
        ["./scripts/ser-stream", "run"],
        ["./scripts/ser-stream", "classify"],
    ]
    for command in commands:
        files = [word for word in command if word.endswith((".flac", ".wav"))]
        assert files and all((REPO / file).is_file() for file in files), files
        # the installed CLI rather than the script (which would set up .venv); a free port rather than 5556
        args = [cli_executable(), *command[1:]]
        if command[1] == "run":
            args += ["--publish", free_endpoint()]
        result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        assert '"label"' in result.stdout


def python_subscriber() -> str:
    """The README's subscriber that reacts to speech start, interim and final results."""
    [code] = [block for block in re.findall(r"```python\n(.*?)```", README, re.DOTALL) if 'b"interim"' in block]
    return code


@pytest.mark.ravdess
def test_the_python_subscriber_reacts_to_start_interim_and_final(ravdess, tmp_path):
    stream = tmp_path / "monologues.wav"
    build_monologues(ravdess, stream, actors=(11,))
    endpoint = free_endpoint()
    code = python_subscriber().replace("tcp://127.0.0.1:5556", endpoint)
    subscriber = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines = Lines(subscriber.stdout)
    try:
        daemon = start_daemon("--source", str(stream), "--no-realtime", "--wait-subscriber", "30", endpoint=endpoint)
        _, stderr = daemon.communicate(timeout=120)
        assert daemon.returncode == 0, stderr
        wait_until(lambda: lines.having("said it"), 10, "the final result at the subscriber")
    finally:
        subscriber.kill()
        subscriber.communicate(timeout=10)
    said = [line.split()[1] for line in lines.lines if line.startswith("#1 ")]
    assert said[0] == "listening" and said[-1] == "said" and said.count("so") >= 4, lines.lines
    assert set(said[1:-1]) == {"so"}
