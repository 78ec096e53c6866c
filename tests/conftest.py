"""Shared fixtures: RAVDESS clips, the real CLI as a subprocess, synthetic audio; and the two tiers.

The tiers: a test that starts a process (the CLI, a training run, PulseAudio and its tools, the
systemd sandbox) is marked ``real`` here, from what it calls; the rest run in this process, with
fakes where a device or a process is not the point (``./scripts/test --fast``).
"""

from __future__ import annotations

import inspect
import signal
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from testkit.live import REPO, cli_executable, default_ravdess
from tests.pulse import virtual_mic  # noqa: F401  (the session's PulseAudio virtual microphone)

#: Where the tests' own code lives: the tests, and the helpers they share with the benchmarks.
HELPERS = (REPO / "tests", REPO / "testkit")
SHIPPED_MODEL = REPO / "models" / "ser-mlp.npz"
HOW_TO_GET_RAVDESS = (
    "RAVDESS clips not found: set SER_STREAM_RAVDESS to a folder of Actor_XX/ subfolders "
    "(the 16 kHz FLAC copy in ../shared/data/ravdess16k, or the original release from "
    "doi:10.5281/zenodo.1188976)"
)


def pytest_configure() -> None:
    """Ctrl-C as a terminal has it, for this process and the CLI processes tests start: a suite
    started in the background by a script (``./scripts/test &``, nohup) inherits SIGINT ignored,
    and a Python started with SIGINT ignored never raises KeyboardInterrupt."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a handler: exec resets it to the default


@pytest.fixture(scope="session")
def ravdess() -> Path:
    path = default_ravdess().resolve()
    if not any(path.glob("Actor_*/*.flac")) and not any(path.glob("Actor_*/*.wav")):
        pytest.skip(HOW_TO_GET_RAVDESS)
    return path


def run_cli(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [cli_executable(), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs
    )


def run_train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "train", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def speech_like(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced, pitch-gliding harmonic tone with syllable-rate amplitude modulation."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * envelope * voiced + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def _code_objects(code: types.CodeType):
    """A function's code and the code nested in it (lambdas, comprehensions, inner functions)."""
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)


def _ours(thing: object) -> bool:
    """Whether ``thing`` (a function or a class) is defined in tests/ or testkit/."""
    module = sys.modules.get(getattr(thing, "__module__", None) or "")
    return module is not None and Path(getattr(module, "__file__", None) or "/").resolve().parent in HELPERS


def _starts_processes(function: Callable, seen: set) -> bool:
    """Whether ``function`` uses ``subprocess``, itself or through the helpers (functions, classes)
    of tests/ and testkit/ that it names, however deep."""
    function = inspect.unwrap(function)
    code = getattr(function, "__code__", None)
    if code is None or code in seen:
        return False
    seen.add(code)
    names = {name for nested in _code_objects(code) for name in nested.co_names}
    for name in names:
        used = function.__globals__.get(name)
        if used is subprocess:
            return True
        if _ours(used):
            members = vars(used).values() if inspect.isclass(used) else [used]
            for member in members:
                member = member.fget if isinstance(member, property) else member
                if callable(member) and _starts_processes(member, seen):
                    return True
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``real`` each test that starts a process, through its own code or its fixtures'.  A test
    that starts one out of this sight (through the package's code, say) is marked by hand."""
    verdicts: dict[object, bool] = {}
    for item in items:
        fixtures = [defs[-1].func for defs in item._fixtureinfo.name2fixturedefs.values() if defs]
        for function in (item.function, *fixtures):
            if function not in verdicts:
                verdicts[function] = _starts_processes(function, set())
        if any(verdicts[function] for function in (item.function, *fixtures)):
            item.add_marker(pytest.mark.real)
