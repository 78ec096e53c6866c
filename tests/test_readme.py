"""What the README shows a new user holds: its example events validate, and its no-microphone
commands run as written from the checkout."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest

from ser_stream.events import validator_for
from testkit.live import REPO, cli_executable, free_endpoint

README = (REPO / "README.md").read_text()


def json_examples() -> list[dict]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", README, re.DOTALL)]


def test_every_example_event_in_the_readme_validates_against_the_schema():
    events = [example for example in json_examples() if "schema" in example]
    by_topic = {event["schema"].split(".")[1].split("/")[0]: event for event in events}
    assert sorted(by_topic) == ["emotion", "status"] and len(events) == 2
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
