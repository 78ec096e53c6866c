"""Room copies of training clips and protocol (d), on real RAVDESS clips: what is fitted, what is matched."""

from __future__ import annotations

import numpy as np
import pytest

from ser_stream.adapter import AdapterPrior, VoiceAdapter
from ser_stream.segmenter import SegmenterConfig
from train import experiments as ex
from train import room_protocol as rp
from train.augment import SPEEDS
from train.dataset import load_dataset
from train.pipeline import SHIPPED_FEATURES, SHIPPED_TRIM
from train.ravdess import scan
from train.room_augment import babble_actors, with_room_copies

#: Two emotions of ten actors: five folds of two actors, so babble has a fold-mate to come from.
EMOTIONS = ("happy", "sad")
ACTORS = set(range(1, 11))


@pytest.fixture(scope="module")
def small(ravdess, tmp_path_factory):
    clips = scan(ravdess, EMOTIONS, ACTORS).clips
    cache = tmp_path_factory.mktemp("features")
    return clips, cache, load_dataset(clips, SHIPPED_FEATURES, cache, 2, SPEEDS, SHIPPED_TRIM)


class Recorder:
    """A classifier that remembers the rows it was fitted on (and predicts one label)."""

    def fit(self, X, y):
        self.fitted = np.array(X)
        self.label = y[0]
        self.classes_ = np.array([self.label])
        return self

    def predict(self, X):
        return np.array([self.label] * len(X))

    def predict_proba(self, X):
        return np.ones((len(X), 1))


def fitted_rows(model: Recorder) -> np.ndarray:
    return model.fitted


def test_training_folds_get_room_copies_and_test_folds_never_do(small):
    clips, cache, data = small
    rooms = with_room_copies(data, clips, SHIPPED_FEATURES, cache, 2, 1, 0, SHIPPED_TRIM)
    n = data.n_clips
    assert rooms.X.shape == (len(data.y) + n, data.X.shape[1])
    copies = rooms.X[len(data.y) :]
    assert not rooms.original[len(data.y) :].any() and np.array_equal(rooms.clip[len(data.y) :], np.arange(n))
    assert not np.any(np.all(np.isclose(copies, data.X[:n]), axis=1))  # each copy differs from its clip

    design = ex.actor_design(rooms)
    folds = ex.actor_folds(rooms)
    experiment = ex.Experiment(lambda s: Recorder(), design, [0] * len(folds), [fitted_rows] * len(folds))
    (score,) = ex.score_all([experiment], jobs=1)
    mates = babble_actors(rooms)
    for (train_clips, test_clips), fitted in zip(folds, score.then, strict=True):
        fitted_set = {row.tobytes() for row in fitted}
        assert all(copies[c].tobytes() in fitted_set for c in train_clips)  # every training clip's room copy
        assert not any(copies[c].tobytes() in fitted_set for c in test_clips)  # no test clip's
        assert not any(rooms.X[c].tobytes() in fitted_set for c in test_clips)
        assert len(fitted) == len(train_clips) * (2 + len(SPEEDS))
        training_actors = set(rooms.groups[train_clips])
        assert all(set(mates[a]) <= training_actors and mates[a] for a in training_actors)  # babble: training voices


def test_room_copies_are_determined_by_the_seed(small, tmp_path):
    clips, cache, data = small
    first = with_room_copies(data, clips, SHIPPED_FEATURES, cache, 2, 1, 0, SHIPPED_TRIM)
    fresh = with_room_copies(data, clips, SHIPPED_FEATURES, tmp_path / "fresh", 2, 1, 0, SHIPPED_TRIM)
    other = with_room_copies(data, clips, SHIPPED_FEATURES, tmp_path / "other", 2, 1, 1, SHIPPED_TRIM)
    np.testing.assert_array_equal(first.X, fresh.X)
    assert not np.allclose(first.X[len(data.y) :], other.X[len(data.y) :])
    assert with_room_copies(data, clips, SHIPPED_FEATURES, cache, 2, 0, 0, SHIPPED_TRIM) is data


def test_a_clip_is_scored_by_the_utterance_overlapping_its_speech_most():
    spans = np.array([[100, 200], [400, 500], [800, 900]])
    starts, ends = np.array([0, 150, 390, 600]), np.array([120, 260, 520, 700])
    clip, overlap = rp.match(starts, ends, spans)
    assert clip.tolist() == [0, 0, 1, -1] and overlap.tolist() == [20, 50, 100, 0]

    stream = rp.RoomStream(
        7, "babble 15 dB", np.zeros((4, 2)), clip, overlap, np.array([0, 0, 1, 0], bool), np.array(["a", "b", "a"])
    )

    class Says:
        classes_ = np.array(["a", "b"])

        def predict_proba(self, X):  # "b", "a", "b", "a": the second utterance (overlap 50) decides clip 0
            return np.array([[0.2, 0.8], [0.7, 0.3], [0.1, 0.9], [0.6, 0.4]])

    played = rp.play_room(Says(), stream, None)
    assert played.right.tolist() == [1.0, 1.0, 0.0]  # clip 1 right ("b"), clip 2 never found: wrong
    assert played.labels.tolist() == ["a", "a", "b", ""]  # each utterance's clip's label, none for the spurious one
    assert played.proba.shape == (4, 2) and played.voice.shape[0] == 4  # what the calibration is fitted on
    assert played.found.tolist() == [2, 1, 0] and (played.cut, played.spurious) == (1, 1)
    summary = rp.summarise([played])["babble 15 dB"]
    assert summary["accuracy"] == pytest.approx(2 / 3) and summary["missed"] == pytest.approx(1 / 3)
    assert summary["cut_share"] == pytest.approx(1 / 4)


def test_the_adapter_hears_every_utterance_in_stream_order_before_classifying_the_next():
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(5, 2))
    clip, overlap, cut = np.array([0, -1, 1, 2, 3]), np.full(5, 10), np.zeros(5, bool)
    stream = rp.RoomStream(1, "clean", X, clip, overlap, cut, np.array(["a"] * 4))
    prior = AdapterPrior(np.zeros(2), np.ones(2), weight=4.0, horizon=50.0)
    recorder = Recorder().fit(X, ["a"])
    seen = []
    recorder.predict_proba = lambda features: seen.append(np.array(features)) or np.ones((len(features), 1))
    played = rp.play_room(recorder, stream, prior)
    online, after_all = seen
    adapter = VoiceAdapter(prior)
    for row, shown in zip(X, online, strict=True):  # the spurious utterance (-1) too
        np.testing.assert_allclose(shown, adapter.normalise(row), rtol=1e-5)
        adapter.update(row)
    np.testing.assert_allclose(after_all, adapter.normalise(X), rtol=1e-5)
    assert played.right.tolist() == played.right_all_heard.tolist() == [1.0] * 4


def test_protocol_d_finds_about_one_utterance_per_clip_in_babble(ravdess, tmp_path):
    clips = scan(ravdess, EMOTIONS, {3, 4}).clips  # two folds of one actor: babble of the other
    data = load_dataset(clips, SHIPPED_FEATURES, tmp_path, 2, (), SHIPPED_TRIM)
    folds = rp.fold_rooms(data, clips, SHIPPED_FEATURES, tmp_path, 2, seed=0)
    assert [sorted({s.actor for s in fold}) for fold in folds] == [
        sorted(set(data.groups[test])) for _, test in ex.actor_folds(data)
    ]
    babble = [s for fold in folds for s in fold if s.room == "babble 15 dB"]
    assert len(babble) == 2 and all(len(s.y) == 16 and s.X.shape[1] == SHIPPED_FEATURES.n_features for s in babble)

    class Nobody:  # only the segmentation figures matter here
        classes_ = np.array(["?"])

        def predict_proba(self, X):
            return np.ones((len(X), 1))

    summary = rp.summarise([rp.play_room(Nobody(), s, None) for s in babble])["babble 15 dB"]
    assert 0.8 <= summary["utterances_per_clip"] <= 1.2
    assert summary["found_once"] >= 0.75 and summary["cut_share"] <= 0.1

    again = rp.fold_rooms(data, clips, SHIPPED_FEATURES, tmp_path / "again", 2, seed=0)
    for a, b in zip([s for f in folds for s in f], [s for f in again for s in f], strict=True):
        np.testing.assert_array_equal(a.X, b.X)  # computed afresh, the same: determined by the seed
        np.testing.assert_array_equal(a.clip, b.clip)


def test_the_streams_cache_is_keyed_by_the_segmenter_settings():
    assert rp.streams_key(SHIPPED_FEATURES, SegmenterConfig(sample_rate=16000), 0) != rp.streams_key(
        SHIPPED_FEATURES, SegmenterConfig(sample_rate=16000, noise_gate_db=0), 0
    )
