"""Shared fixtures: RAVDESS clips, the real CLI as a subprocess, synthetic audio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from testkit.live import REPO, cli_executable, default_ravdess

SHIPPED_MODEL = REPO / "models" / "ser-mlp.npz"
HOW_TO_GET_RAVDESS = (
    "RAVDESS clips not found: set SER_STREAM_RAVDESS to a folder of Actor_XX/ subfolders "
    "(the 16 kHz FLAC copy in ../shared/data/ravdess16k, or the original release from "
    "doi:10.5281/zenodo.1188976)"
)


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
