"""RAVDESS names parse into all seven fields; scans skip and count bad names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser_stream.errors import UserError
from train.ravdess import SEED_EMOTIONS, parse_name, scan


def test_parse_all_seven_fields():
    clip = parse_name(Path("Actor_12/03-01-06-02-01-02-12.wav"))
    assert clip is not None
    assert (clip.modality, clip.vocal_channel, clip.emotion_code, clip.intensity) == (3, 1, 6, 2)
    assert (clip.statement, clip.repetition, clip.actor) == (1, 2, 12)
    assert clip.emotion == "fearful"
    assert parse_name(Path("03-01-07-01-02-01-24.FLAC")).emotion == "disgust"


@pytest.mark.parametrize(
    "name",
    [
        "03-01-09-01-01-01-01.wav",
        "03-01-01-03-01-01-01.wav",
        "03-01-01-01-01-01-25.wav",
        "03-01-01-01-01-01.wav",
        "readme.wav",
        "03-01-01-01-01-01-01.mp3",
        "3-1-1-1-1-1-1.wav",
    ],
)
def test_bad_names_are_rejected(name):
    assert parse_name(Path(name)) is None


def make_tree(root: Path, names: list[str]) -> None:
    for name in names:
        actor = name.split("-")[-1].split(".")[0] if name[0].isdigit() else "01"
        folder = root / f"Actor_{actor}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def test_scan_filters_emotions_and_actors_and_counts_skips(tmp_path):
    make_tree(
        tmp_path,
        [
            "03-01-02-01-01-01-01.wav",
            "03-01-03-01-01-01-01.wav",
            "03-01-01-01-01-01-01.wav",
            "03-01-02-01-01-01-02.flac",
            "03-02-02-01-01-01-02.wav",  # song, not speech
            "bogus-name.wav",
            "notes.txt",
        ],
    )
    found = scan(tmp_path, SEED_EMOTIONS)
    assert sorted(c.path.name for c in found.clips) == [
        "03-01-02-01-01-01-01.wav",
        "03-01-02-01-01-01-02.flac",
        "03-01-03-01-01-01-01.wav",
    ]
    assert sorted(p.name for p in found.skipped) == ["03-02-02-01-01-01-02.wav", "bogus-name.wav"]
    assert [c.actor for c in scan(tmp_path, SEED_EMOTIONS, {2}).clips] == [2]


def test_scan_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="no such data folder"):
        scan(tmp_path / "nope")
    with pytest.raises(UserError, match="no RAVDESS speech clips"):
        scan(tmp_path)


def test_shared_copy_has_sixty_clips_per_actor(ravdess):
    found = scan(ravdess)
    assert len(found.clips) == 60 * len({c.actor for c in found.clips})
    assert found.skipped == []
