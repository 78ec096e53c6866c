"""Speaker normalisation in training, and protocol (c): a device hearing one voice.

Training standardises each voice's rows by that voice's own statistics (no labels needed), through
the serving code itself (`ser_stream.adapter.VoiceAdapter`), so that what the model learns from is
what a device hands it. Two ways, measured against each other under protocol (c):

- ``full``: each voice by the statistics of all of its clips (what a device has after a long while);
- ``online``: the voice's clips in a random order, each by the statistics of the clips before it,
  blended with the population prior as on a device, so the model also learns from the first
  utterances' rough statistics.

A speed-perturbed copy of an actor is a voice of its own (its pitch and tempo differ). Test clips
are standardised by all of their actor's clips (a device that has heard the voice a while), so
protocols (a) and (b) score the adapted models in that state.

Protocol (c) plays each held-out actor's clips in random orders through a fresh adapter: each clip
is classified with the statistics of what was heard before it (or, measured too, including it),
then added. The mixes: ``balanced`` (all of the actor's clips of the model's emotions),
``neutral-heavy`` (half neutral or calm: the device's everyday speech), ``moods`` (the balanced
clips in runs of one emotion: the statistics lean towards the mood of the moment) and ``after
another voice`` (a change of owner: another held-out actor first). Clips of emotions the model
does not have (neutral for the seed's four) go through the adapter as unlabelled speech but are
not scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin

from ser_stream.adapter import AdapterPrior, VoiceAdapter

from . import calibration as cal
from . import experiments as ex
from . import room_protocol as rp
from .dataset import TRAINING_DTYPE, Dataset
from .rooms import PROTOCOL_MICROPHONES

#: The shipped recipe's variants: without adaptation, and with each way of standardising training rows.
RECIPES = {
    "none": "no adaptation",
    "full": "adapted, trained on full voice statistics",
    "online": "adapted, trained on online voice statistics",
}
#: Random orders per held-out actor and mix in protocol (c): 20 × 20 actors, 400 clips at each position.
STREAM_ORDERS = 20
#: Utterances heard before the one classified, where protocol (c)'s curve is reported (and "all").
HEARD = (0, 1, 5, 10, 20)
#: The everyday speech of the neutral-heavy mix: half of its clips are of these emotions.
QUIET = ("neutral", "calm")
#: Moods: the balanced clips grouped by emotion (a run of each, the emotions in random order).
MOODS = "moods"
#: A change of voice: another held-out actor's balanced stream first, then this actor's, scored.
AFTER_ANOTHER = "after another voice"
#: Protocol (c)'s mixes; the shipped recipe is chosen by their mean (every one is a device's situation).
MIXES = ("balanced", "neutral-heavy", MOODS, AFTER_ANOTHER)
#: Forgetting horizons (utterances) that protocol (c) also plays the streams with, for the report.
HORIZONS = (25.0, 50.0, 100.0, 200.0)


def population_prior(
    X: np.ndarray, voices: np.ndarray, weight: float, horizon: float, var_floor: float
) -> AdapterPrior:
    """The prior a bundle carries: the mean over all rows, and the mean of each voice's own variance
    (the spread a per-voice standardisation leaves, not the spread between voices)."""
    X = np.asarray(X, dtype=np.float64)
    within = np.mean([X[voices == v].var(axis=0) for v in np.unique(voices)], axis=0)
    return AdapterPrior(X.mean(axis=0), within, weight, horizon, var_floor)


def normalise_voices(
    X: np.ndarray, voices: np.ndarray, prior: AdapterPrior, mode: str, seed: int, only: np.ndarray | None = None
) -> np.ndarray:
    """``X`` with each voice's rows standardised by its statistics: all of them (``full``) or, in a
    random order, those of the rows before each (``online``). With ``only`` (a mask), the statistics
    still come from every row, but only those rows are returned."""
    rng = np.random.default_rng(seed)
    out = np.empty(X.shape, dtype=TRAINING_DTYPE)
    for voice in np.unique(voices):
        rows = rng.permutation(np.flatnonzero(voices == voice))
        adapter = VoiceAdapter(prior)
        if mode == "online":
            out[rows] = adapter.hear(X[rows])
        else:
            for row in rows:
                adapter.update(X[row])
            out[rows] = adapter.normalise(X[rows])
    return out if only is None else out[only]


def voices_of(data: Dataset) -> np.ndarray:
    """Voice per row: the actor, and which copy (the original, or one speed) it is of that actor."""
    variant = np.arange(len(data.y)) // data.n_clips
    return data.groups[data.clip] * 100 + variant


@dataclass(frozen=True)
class Stream:
    """One held-out actor's clips, played in several random orders."""

    actor: int
    mix: str
    X: np.ndarray  # raw features, one row per clip
    y: np.ndarray  # label per clip
    scored: np.ndarray  # whether each clip's label is one of the model's
    orders: list[np.ndarray]
    lead_in: int = 0  # clips of another voice played first (AFTER_ANOTHER)


#: The ways protocol (c) classifies a clip: with the statistics of the clips before it, of those and
#: itself, and of the whole stream (`Played`'s fields of the same names).
PLAYED_WAYS = ("excluding", "including", "after_all")


@dataclass(frozen=True)
class Played:
    """How a model did on a stream: per order and position, 1 right, 0 wrong, NaN unscored."""

    actor: int
    mix: str
    lead_in: int
    horizon: float | None  # the adapter's (None: no adapter)
    excluding: np.ndarray  # (orders, clips): classified with the statistics of the clips before it
    including: np.ndarray  # (orders, clips): ... of those and itself
    after_all: np.ndarray  # (orders, clips): every clip classified with the whole stream's statistics
    proba: np.ndarray  # (orders, clips, classes), float32: the probabilities of ``excluding``'s predictions
    labels: np.ndarray  # (orders, clips): each clip's label, in the order played
    voice: np.ndarray  # (orders, clips, voice statistics), float32: each clip's raw, for the calibration


def play(model: ClassifierMixin, stream: Stream, prior: AdapterPrior | None) -> Played:
    """``stream`` through a fresh adapter per order (or, without ``prior``, the raw features); each way
    of seeing the clips is classified in one call over every order (a call per order cost more than the
    network)."""
    orders = np.array(stream.orders)
    if prior is None:  # nothing to learn: every way of playing is the same, in any order
        seen = dict.fromkeys(PLAYED_WAYS, _proba(model, stream.X)[orders])
    else:
        ways = {way: np.empty((*orders.shape, stream.X.shape[1]), dtype=TRAINING_DTYPE) for way in PLAYED_WAYS}
        by_position = stream.X[orders.T]  # (clips, orders, features): every order's i-th clip at once
        adapter = VoiceAdapter(prior, voices=len(orders))  # a voice per order
        for i, rows in enumerate(by_position):
            ways["excluding"][:, i] = adapter.normalise(rows)
            adapter.update(rows)
            ways["including"][:, i] = adapter.normalise(rows)
        ways["after_all"][:] = adapter.normalise(by_position).transpose(1, 0, 2)
        seen = {way: _proba(model, X.reshape(-1, X.shape[-1])).reshape(*orders.shape, -1) for way, X in ways.items()}
    labels = stream.y[orders]
    unscored = ~stream.scored[orders]
    right = {}
    for way, proba in seen.items():
        right[way] = (np.asarray(model.classes_)[proba.argmax(axis=-1)] == labels).astype(float)
        right[way][unscored] = np.nan
    horizon = prior.horizon if prior else None
    proba = seen["excluding"].astype(np.float32)
    voice = cal.voice_of(stream.X)[orders].astype(np.float32)
    return Played(
        stream.actor, stream.mix, stream.lead_in, horizon, *(right[w] for w in PLAYED_WAYS), proba, labels, voice
    )


def _proba(model: ClassifierMixin, X: np.ndarray) -> np.ndarray:
    """The model's probabilities of ``X``'s rows (its ``predict`` is their argmax)."""
    return model.predict_proba(X.astype(TRAINING_DTYPE))


def play_all(
    streams: list[Stream], prior: AdapterPrior | None, model: ClassifierMixin, rooms: Sequence[rp.RoomStream] = ()
) -> list[Played | rp.RoomPlayed]:
    """Every stream of a fold through its fitted model (`experiments.Experiment`'s ``then``), with the
    prior's horizon and, for the report, with each of HORIZONS; then protocol (d)'s ``rooms``."""
    priors = [prior] + [replace(prior, horizon=h) for h in HORIZONS if prior and h != prior.horizon]
    return [play(model, stream, p) for p in priors for stream in streams] + rp.play_rooms(rooms, prior, model)


def streams_for(
    data: Dataset, unlabelled: Dataset | None, test_clips: np.ndarray, labels: Sequence[str], seed: int
) -> list[Stream]:
    """Protocol (c)'s streams of the actors of ``test_clips`` (clip indices of ``data``); ``unlabelled``
    holds clips of emotions the model does not have, played but not scored."""
    streams = []
    pools = [(data.X[: data.n_clips], data.labels, data.groups)]
    if unlabelled is not None:
        pools.append((unlabelled.X[: unlabelled.n_clips], unlabelled.labels, unlabelled.groups))
    for actor in np.unique(data.groups[test_clips]):
        X = np.concatenate([X[groups == actor] for X, _, groups in pools]).astype(np.float64)
        y = np.concatenate([y[groups == actor] for _, y, groups in pools])
        scored = np.isin(y, labels)
        rng = np.random.default_rng([seed, int(actor)])
        quiet, other = np.flatnonzero(np.isin(y, QUIET)), np.flatnonzero(~np.isin(y, QUIET) & scored)
        half = min(len(quiet), len(other))
        mixes = {"balanced": np.flatnonzero(scored)}
        if half:
            mixes["neutral-heavy"] = np.concatenate([rng.choice(quiet, half, False), rng.choice(other, half, False)])
        for mix, clips in mixes.items():
            orders = [rng.permutation(len(clips)) for _ in range(STREAM_ORDERS)]
            streams.append(Stream(int(actor), mix, X[clips], y[clips], scored[clips], orders))
        clips = mixes["balanced"]
        runs = [
            np.concatenate([rng.permutation(np.flatnonzero(y[clips] == e)) for e in rng.permutation(labels)])
            for _ in range(STREAM_ORDERS)
        ]
        streams.append(Stream(int(actor), MOODS, X[clips], y[clips], scored[clips], runs))
    balanced = [stream for stream in streams if stream.mix == "balanced"]
    for before, stream in zip(balanced[-1:] + balanced[:-1], balanced if len(balanced) > 1 else [], strict=False):
        n = len(before.y)  # the previous actor of the fold, unscored, then this one
        orders = [np.concatenate([a, n + b]) for a, b in zip(before.orders, stream.orders, strict=True)]
        X, y = np.concatenate([before.X, stream.X]), np.concatenate([before.y, stream.y])
        scored = np.concatenate([np.zeros(n, bool), stream.scored])
        streams.append(Stream(stream.actor, AFTER_ANOTHER, X, y, scored, orders, lead_in=n))
    return streams


def adapted_design(
    data: Dataset, clip_splits: list[tuple[np.ndarray, np.ndarray]], settings: dict[str, float], mode: str, seed: int
) -> tuple[ex.Design, list[AdapterPrior]]:
    """One block of ``data.X`` per split, standardised per voice as serving will: the prior from the
    split's training clips; training rows (all copies) by ``mode``; test clips by all of their
    actor's clips. The blocks are stacked and each split's rows point into its own block."""
    voices = voices_of(data)
    n_rows = len(data.y)
    blocks, splits, priors = [], [], []
    for i, (train_clips, test_clips) in enumerate(clip_splits):
        train, test = data.rows(train_clips, test_clips)
        originals = train[data.original[train]]
        prior = population_prior(data.X[originals], voices[originals], **settings)
        block = np.zeros_like(data.X)
        block[train] = normalise_voices(data.X[train], voices[train], prior, mode, seed + i)
        heard = np.flatnonzero(data.original & np.isin(data.groups[data.clip], data.groups[test_clips]))
        block[test] = normalise_voices(data.X[heard], voices[heard], prior, "full", seed + i, np.isin(heard, test))
        blocks.append(block)
        splits.append((train + i * n_rows, test + i * n_rows))
        priors.append(prior)
    stacked = np.concatenate(blocks)
    return ex.Design(stacked, np.tile(data.y, len(blocks)), np.tile(data.clip, len(blocks)), splits), priors


def summarise(played: list[Played], horizon: float | None) -> dict[str, Any]:
    """Protocol (c) per mix, with the adapter's ``horizon``: accuracy after n utterances of the voice
    heard, after all, over the whole stream, per actor."""
    summary: dict[str, Any] = {}
    for mix in MIXES:
        runs = [p for p in played if p.mix == mix and p.horizon == horizon]
        if not runs:
            continue
        length = min(p.excluding.shape[1] - p.lead_in for p in runs)

        def at(key: str, n: int, runs=runs) -> float | None:
            return accuracy(np.concatenate([getattr(p, key)[:, p.lead_in + n] for p in runs]))

        summary[mix] = {
            "clips_per_stream": length,
            "orders": STREAM_ORDERS,
            "overall": accuracy(np.concatenate([p.excluding.ravel() for p in runs])),
            "heard": {str(n): at("excluding", n) for n in HEARD if n < length},
            "heard_including_current": {str(n): at("including", n - 1) for n in HEARD if 0 < n <= length},
            "overall_including_current": accuracy(np.concatenate([p.including.ravel() for p in runs])),
            "all": accuracy(np.concatenate([p.after_all.ravel() for p in runs])),
            "curve": [at("excluding", n) for n in range(length)],
            "per_actor": {str(p.actor): accuracy(p.excluding) for p in runs},
        }
    return summary


def horizon_sweep(played: list[Played]) -> dict[str, dict[str, float | None]]:
    """Whole-stream accuracy per forgetting horizon and mix (empty without an adapter)."""
    horizons = sorted({p.horizon for p in played if p.horizon is not None})
    mixes = [mix for mix in MIXES if any(p.mix == mix for p in played)]
    return {
        f"{h:g}": {
            mix: accuracy(np.concatenate([p.excluding.ravel() for p in played if p.mix == mix and p.horizon == h]))
            for mix in mixes
        }
        for h in horizons
    }


def accuracy(right: np.ndarray) -> float | None:
    """The mean of the scored entries (1 right, 0 wrong; NaN unscored), None when none is scored."""
    scored = right[~np.isnan(right)]
    return float(scored.mean()) if scored.size else None


def training_matrix(
    data: Dataset, mode: str, settings: dict[str, float], seed: int
) -> tuple[np.ndarray, AdapterPrior | None]:
    """The final model's rows for recipe ``mode``, and the prior its bundle carries (from every actor)."""
    if mode == "none":
        return data.X, None
    voices = voices_of(data)
    prior = population_prior(data.X[data.original], voices[data.original], **settings)
    return normalise_voices(data.X, voices, prior, mode, seed), prior


@dataclass
class Recipe:
    """One variant of the shipped recipe under protocols (a), (b) and (c)."""

    mode: str
    split: ex.Score | None  # protocol (a): measured for the recipe chosen only
    actor: ex.Score
    stream: dict[str, Any]  # summarise()
    horizons: dict[str, dict[str, float | None]]  # horizon_sweep()
    rooms: dict[str, dict[str, Any]]  # protocol (d): room_protocol.summarise()
    microphones: dict[str, dict[str, Any]]  # protocol (e): room_protocol.summarise(..., PROTOCOL_MICROPHONES)

    @property
    def stream_accuracy(self) -> float:
        """Protocol (c), whole streams, the mean over the mixes."""
        return float(np.mean([mix["overall"] for mix in self.stream.values()]))

    @property
    def selection_accuracy(self) -> float:
        """What the shipped recipe is chosen by: protocol (c) and, when measured, protocol (d) (the
        mean over its rooms), equally weighted."""
        return float(np.mean([self.stream_accuracy] + ([rp.mean_accuracy(self.rooms)] if self.rooms else [])))


def fold_streams(data: Dataset, unlabelled: Dataset | None, labels: Sequence[str], seed: int) -> list[list[Stream]]:
    """Protocol (c)'s streams of each fold of protocol (b)."""
    return [streams_for(data, unlabelled, test, labels, seed) for _, test in ex.actor_folds(data)]


def actor_experiments(
    make: Callable[[int], Any],
    data: Dataset,
    streams: list[list[Stream]],
    seed: int,
    settings: dict[str, float],
    rooms: list[list[rp.RoomStream]] | None = None,
) -> dict[str, ex.Experiment]:
    """`recipe_experiment` of every adapted recipe. The plain recipe's (b) fits are the successive
    halving's own (the same fits, streams played)."""
    return {
        mode: recipe_experiment(make, data, streams, seed, settings, mode, rooms) for mode in RECIPES if mode != "none"
    }


def recipe_experiment(
    make: Callable[[int], Any],
    data: Dataset,
    streams: list[list[Stream]],
    seed: int,
    settings: dict[str, float],
    mode: str,
    rooms: list[list[rp.RoomStream]] | None = None,
) -> ex.Experiment:
    """Protocol (b) of recipe ``mode``, whose fits play (c)'s ``streams`` and (d)'s ``rooms`` (per fold)."""
    folds = ex.actor_folds(data)
    rooms = rooms or [[] for _ in folds]
    if mode == "none":
        design, priors = ex.actor_design(data), [None] * len(folds)
    else:
        design, priors = adapted_design(data, folds, settings, mode, seed)
    then = [partial(play_all, fold, prior, rooms=r) for fold, prior, r in zip(streams, priors, rooms, strict=True)]
    return ex.Experiment(make, design, [seed] * len(folds), then)


def split_experiment(
    make: Callable[[int], Any], data: Dataset, seeds: Sequence[int], settings: dict[str, float], mode: str
) -> ex.Experiment:
    """Protocol (a) of one recipe: the article's protocol, measured for the recipe that ships."""
    if mode == "none":
        return ex.split_experiment(make, data, seeds)
    split, _ = adapted_design(data, [ex.split_clips(data, s) for s in seeds], settings, mode, seeds[0])
    return ex.Experiment(make, split, seeds)


def recipe(mode: str, split: ex.Score | None, actor: ex.Score, settings: dict[str, float]) -> Recipe:
    played = [p for fold in actor.then for p in fold if isinstance(p, Played)]
    rooms = [p for fold in actor.then for p in fold if isinstance(p, rp.RoomPlayed)]
    horizon = None if mode == "none" else settings["horizon"]
    stream, horizons = summarise(played, horizon), horizon_sweep(played)
    return Recipe(mode, split, actor, stream, horizons, rp.summarise(rooms), rp.summarise(rooms, PROTOCOL_MICROPHONES))
