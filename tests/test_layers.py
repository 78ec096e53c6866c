"""Layered imports: settings load nothing heavy, training does not pull in the serving CLI, the
benchmarks do not import the tests, and every user error lives in errors.py with its exit code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ser_stream import errors
from testkit.live import REPO

#: What reading settings must not cost: numpy, ZeroMQ, joblib, webrtcvad, and the rest of the audio stack.
HEAVY = ("zmq", "joblib", "numpy", "webrtcvad", "soundfile", "sounddevice", "soxr", "scipy", "sklearn", "librosa")


def imported(path: Path) -> set[str]:
    """The absolute names a module imports (``from .x import y`` in package p is ``p.x``)."""
    package = ".".join(path.relative_to(REPO).parent.parts)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", ["ser_stream.config", "ser_stream.settings", "ser_stream.cli"])
def test_settings_and_the_cli_load_nothing_heavy(module):
    code = f"import sys, {module}; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_train_does_not_import_the_serving_cli():
    for path in sorted((REPO / "train").glob("*.py")):
        serving = {name for name in imported(path) if name.startswith(("ser_stream.cli", "ser_stream.service"))}
        assert not serving, f"{path.name} imports {serving}"


def test_the_benchmarks_do_not_import_the_tests():
    for path in sorted((REPO / "bench").glob("*.py")):
        tests = {name for name in imported(path) if name == "tests" or name.startswith("tests.")}
        assert not tests, f"{path.name} imports {tests}"


def test_every_user_error_is_defined_in_errors_py():
    error_names = {name for name, value in vars(errors).items() if isinstance(value, type)}
    for path in sorted((REPO / "ser_stream").rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {base.id for base in node.bases if isinstance(base, ast.Name)}
                assert not bases & error_names, f"{path.name}: {node.name} subclasses {bases & error_names}"
