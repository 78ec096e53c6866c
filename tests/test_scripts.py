"""scripts/setup installs the Python packages once per version of the dependencies, whichever script
(scripts/ser-stream: runtime, scripts/test: --dev) asks first; pip is replaced by a recorder here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from testkit.live import REPO

RECORDER = """#!/bin/sh
echo "$@" >>"$(dirname "$0")/../../pip.log"
"""


def scratch_checkout(folder: Path) -> Path:
    checkout = folder / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    for name in ("setup", "debian-packages.sh"):
        shutil.copy2(REPO / "scripts" / name, checkout / "scripts" / name)
    shutil.copy2(REPO / "pyproject.toml", checkout / "pyproject.toml")
    python = checkout / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(RECORDER)
    python.chmod(0o755)
    return checkout


def installs(checkout: Path, *args: str) -> list[str]:
    """What one run of scripts/setup asked pip to install (the editable package, with its extras)."""
    log = checkout / "pip.log"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        [str(checkout / "scripts" / "setup"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.split()[-1] for line in lines if "-e" in line.split()]


def test_setup_runs_pip_once_whichever_script_comes_first_and_again_only_when_dependencies_change(tmp_path):
    checkout = scratch_checkout(tmp_path)
    assert installs(checkout, "--dev") == [".[dev]"]  # scripts/test
    assert installs(checkout) == []  # scripts/ser-stream: the dev install serves it
    assert installs(checkout, "--dev") == []
    with open(checkout / "pyproject.toml", "a") as pyproject:
        pyproject.write("# a dependency changed\n")
    assert installs(checkout) == ["."]
    assert installs(checkout) == []
    assert installs(checkout, "--dev") == [".[dev]"]  # the dev extras were not in yet
    assert installs(checkout) == []
