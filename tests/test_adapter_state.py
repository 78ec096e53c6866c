"""The adapter's state file: small, replaced atomically, and refused (never misapplied) when it does not fit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from ser_stream.adapter import AdapterPrior, VoiceAdapter
from ser_stream.adapter_state import STATE_FILE, StateRefused, load_state, save_state
from testkit.live import REPO

N = 421  # the shipped recipe's feature count
SHA = "a" * 64


def prior(n: int = N) -> AdapterPrior:
    return AdapterPrior(np.zeros(n), np.ones(n))


def heard(count: int, n: int = N, seed: int = 0) -> VoiceAdapter:
    adapter = VoiceAdapter(prior(n))
    for row in np.random.default_rng(seed).normal(2.0, 3.0, (count, n)):
        adapter.update(row)
    return adapter


def test_a_saved_state_loads_back_exactly_and_is_small(tmp_path):
    path = tmp_path / STATE_FILE
    adapter = heard(37)
    save_state(path, adapter, SHA)
    again = load_state(path, adapter.prior, SHA)
    assert again.heard == 37
    for key in ("mean", "sq_dev"):
        np.testing.assert_array_equal(again.state()[key], adapter.state()[key])
    assert again.state()["weight"] == adapter.state()["weight"]
    assert path.stat().st_size < 50_000
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]  # no temporary file left


def test_a_save_that_fails_before_the_rename_leaves_the_previous_file_loadable(tmp_path, monkeypatch):
    path = tmp_path / STATE_FILE
    save_state(path, heard(10), SHA)
    before = path.read_bytes()

    def no_rename(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="No space"):
        save_state(path, heard(20), SHA)
    assert path.read_bytes() == before
    assert load_state(path, prior(), SHA).heard == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]


SAVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    from ser_stream.adapter import AdapterPrior, VoiceAdapter
    from ser_stream.adapter_state import save_state

    path, n = Path(sys.argv[1]), 421
    adapter = VoiceAdapter(AdapterPrior(np.zeros(n), np.ones(n)))
    rng = np.random.default_rng(0)
    while True:
        adapter.update(rng.normal(size=n))
        save_state(path, adapter, "a" * 64)
        print(adapter.heard, flush=True)
    """
)


def test_a_process_killed_at_any_moment_of_its_saves_leaves_a_whole_state_file(tmp_path):
    """A saver in a tight loop of saves, SIGKILLed after a random number of them: wherever the kill
    lands (writing, syncing, renaming), the file is the last whole state, never a torn one."""
    path = tmp_path / STATE_FILE
    for saves in np.random.default_rng(1).integers(1, 200, size=12):
        saver = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        try:
            for _ in range(saves):
                assert saver.stdout.readline(), "the saver died on its own"
        finally:
            saver.kill()
            saver.communicate()
        assert load_state(path, prior(), SHA).heard >= saves  # it may have saved a few more


def npz_bytes(**arrays) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def saved_bytes(tmp_path, adapter=None, sha=SHA) -> bytes:
    path = tmp_path / "reference.npz"
    save_state(path, adapter if adapter is not None else heard(5), sha)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (lambda tmp: b"", "unreadable"),
        (lambda tmp: b"not a zip at all", "unreadable"),
        (lambda tmp: saved_bytes(tmp)[:-300], "unreadable"),  # truncated
        (lambda tmp: saved_bytes(tmp, sha="b" * 64), "made for another model (SHA-256 bbbbbbbbbbbb…)"),
        (lambda tmp: saved_bytes(tmp, heard(5, n=180)), "made for 180 features, the model has 421"),
        (lambda tmp: npz_bytes(mean=np.zeros(N)), "corrupt"),  # some other .npz
        (lambda tmp: npz_bytes(format=np.array("ser-stream.adaptation/9")), "not a state file of this version"),
        (lambda tmp: npz_bytes(data=np.array([{}], dtype=object)), "unreadable"),  # a pickle is never loaded
    ],
    ids=["empty", "garbage", "truncated", "another model", "another feature count", "foreign npz", "format", "pickle"],
)
def test_a_state_file_that_does_not_fit_is_refused_with_its_reason(tmp_path, content, reason):
    path = tmp_path / STATE_FILE
    path.write_bytes(content(tmp_path))
    with pytest.raises(StateRefused) as refused:
        load_state(path, prior(), SHA)
    assert reason in str(refused.value) and "\n" not in str(refused.value)


def test_impossible_numbers_in_a_well_formed_file_are_refused(tmp_path):
    path = tmp_path / STATE_FILE
    save_state(path, heard(5), SHA)
    with zipfile.ZipFile(path) as archive:
        arrays = {name[:-4]: np.load(archive.open(name)) for name in archive.namelist()}
    arrays["sq_dev"] = -arrays["sq_dev"]
    path.write_bytes(npz_bytes(**arrays))
    with pytest.raises(StateRefused, match="corrupt"):
        load_state(path, prior(), SHA)


@pytest.mark.parametrize("kind", ["directory", "fifo", "huge"])
def test_what_is_not_a_state_file_is_refused_without_reading_it_whole(tmp_path, kind):
    path = tmp_path / STATE_FILE
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    else:
        path.write_bytes(b"\0" * (2 << 20))
    with pytest.raises(StateRefused, match=r"directory|named pipe|larger than"):
        load_state(path, prior(), SHA)
