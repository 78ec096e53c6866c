"""Audio files that are not what they seem, through the real CLI: a truncated WAV is used as far as it
goes with one warning naming what is missing; devices, FIFOs and link loops are named for what they are."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from testkit.live import clip_path, free_endpoint
from tests.conftest import run_cli


def truncated_wav(ravdess: Path, folder: Path) -> Path:
    """A WAV whose header promises three clips of speech and whose data holds the first one."""
    samples, rate = soundfile.read(clip_path(ravdess, 3, 1), dtype="float32")
    whole = folder / "whole.wav"
    soundfile.write(whole, np.concatenate([samples] * 3), rate, subtype="PCM_16")
    cut = folder / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: 44 + 2 * samples.size])
    return cut


@pytest.mark.ravdess
def test_a_truncated_wav_is_classified_with_one_warning_naming_what_is_missing(tmp_path, ravdess):
    cut = truncated_wav(ravdess, tmp_path)
    warning = f"ser-stream: warning: {cut}: truncated: its header promises 10.41 s of audio but the file holds 3.47 s"
    classified = run_cli("classify", "--json", "--jobs", "1", str(cut))
    assert classified.returncode == 0, classified.stderr
    assert json.loads(classified.stdout)["file"] == str(cut)
    assert classified.stderr.splitlines() == [warning + "; the last 6.94 s are missing"]
    streamed = run_cli("run", "--source", str(cut), "--no-realtime", "--print", "--publish", free_endpoint())
    assert streamed.returncode == 0, streamed.stderr
    assert '"label"' in streamed.stdout
    warnings = [line for line in streamed.stderr.splitlines() if "warning" in line]
    assert warnings == [warning + "; the last 6.94 s are missing"]


def test_devices_fifos_and_link_loops_are_named_for_what_they_are(tmp_path):
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.wav"
    loop.symlink_to(tmp_path / "loop2.wav")
    (tmp_path / "loop2.wav").symlink_to(loop)
    cases = {
        "/dev/zero": "is a character device, not a regular file",
        "/dev/urandom": "is a character device, not a regular file",
        str(fifo): "is a named pipe (FIFO), not a regular file",  # and no waiting for a writer
        str(loop): "is a loop of symbolic links",
    }
    for path, reason in cases.items():
        classified = run_cli("classify", path, timeout=60)
        assert classified.returncode == 1 and classified.stderr == f"ser-stream: {path}: {reason}\n"
        streamed = run_cli("run", "--source", path, "--publish", free_endpoint(), timeout=60)
        assert streamed.returncode == 2 and streamed.stderr == f"ser-stream: {path}: {reason}\n"
