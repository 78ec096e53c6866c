"""One training run: features, experiments, report and model bundle."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import joblib
import librosa
import numpy as np
import sklearn
from sklearn.base import ClassifierMixin

from ser_stream import __version__
from ser_stream.adapter import DEFAULT_HORIZON, DEFAULT_PRIOR_WEIGHT, DEFAULT_VAR_FLOOR, AdapterPrior
from ser_stream.errors import UserError
from ser_stream.features import IMPLEMENTATION as FEATURES_IMPLEMENTATION
from ser_stream.features import SEED_PARAMS, FeatureParams
from ser_stream.model import save_bundle, sha256_of
from ser_stream.model.calibration import voice_columns
from ser_stream.segmenter import SegmenterConfig

from . import adaptation as ad
from . import calibration as cal
from . import experiments as ex
from .augment import SPEEDS
from .cluster import Cluster, connect, fits_on
from .dataset import Dataset, fingerprint, load_dataset
from .heads import Heads, fit_heads, strong_of
from .ravdess import EMOTIONS, SEED_EMOTIONS, Clip, scan
from .report import plot_calibration, plot_confusion, plot_loss_curves, plot_streams, table, write_report
from .room_augment import with_room_copies
from .room_protocol import RoomStream, fold_rooms
from .room_report import plot_rooms, rooms_metrics

#: The shipped model's features: the seed's means, plus std and MFCC-delta spread, mel in log10.
SHIPPED_FEATURES = FeatureParams(statistics=("mean", "std", "delta_std"), mel_scale="log", voice=True)
#: Clips are cut to the span the daemon's default segmenter hands over, so training sees serving's input.
SHIPPED_TRIM = SegmenterConfig(sample_rate=SHIPPED_FEATURES.sample_rate)
#: The adapter of an adapted bundle (its prior's weight, horizon and variance floor): the serving defaults.
ADAPTATION = {"weight": DEFAULT_PRIOR_WEIGHT, "horizon": DEFAULT_HORIZON, "var_floor": DEFAULT_VAR_FLOOR}
#: Our MLP's training budget (DataFlair's, which the seed's experiments keep: 500 epochs, tol 1e-4). A fit
#: stops once 10 epochs in a row improve its training loss by less than ``tol``: at 1e-4 ours ran on for 90
#: to 250 epochs while protocols (b) to (d) no longer rose (README, "How a run stays short"). The search's
#: rungs are fractions of ``max_iter``, so 200 also makes its first rungs cheaper.
OURS_TRAINING: dict[str, Any] = {"max_iter": 200, "tol": 3e-4}
ARTICLE = "article's tuned MLP (logistic, (250, 150))"
#: The rows of the shipped recipe's variants ("ours": the shipped features, scaled, VAD-trimmed clips, speed copies).
RECIPE_ROWS = {mode: f"ours: {what}" for mode, what in ad.RECIPES.items()}


def shipped_row(mode: str, members: int) -> str:
    """The shipped model's row: its recipe's, or with several networks a row of its own (the recipes are
    chosen between with one network each)."""
    return RECIPE_ROWS[mode] if members == 1 else f"shipped: {ad.RECIPES[mode]}, {members} networks"


def default_name(emotions: tuple[str, ...]) -> str:
    """``ser-mlp`` for the seed's four emotions, ``ser-mlp-8`` for all eight, else the emotions' names."""
    if set(emotions) == set(SEED_EMOTIONS):
        return "ser-mlp"
    return f"ser-mlp-{len(EMOTIONS)}" if set(emotions) == set(EMOTIONS.values()) else "ser-mlp-" + "-".join(emotions)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, report and write the bundle; with ``args.dask``, the experiments' model fits run on that cluster."""
    with connect(args.dask) if args.dask else nullcontext() as cluster:
        return _run(args, cluster)


def _run(args: argparse.Namespace, cluster: Cluster | None) -> dict[str, Any]:
    started = time.perf_counter()
    name = args.name or default_name(args.emotions)
    report_dir = args.report or Path("reports") / name
    report_dir.mkdir(parents=True, exist_ok=True)

    clips = scan_clips(args)
    lap = stopwatch()
    data = load_features(args, clips)
    timings = {"features_s": lap()}
    log(f"features: {timings['features_s']:.1f} s")
    rooms = fold_rooms(data.ours, clips, SHIPPED_FEATURES, args.cache, args.jobs, args.seed)  # protocol (d)'s streams
    timings["room_streams_s"] = lap()
    labels = labels_of(args, data.seed)

    seeds = list(range(args.seed, args.seed + args.repeats))
    seed_grids = ex.QUICK_GRIDS if args.quick else (ex.ARCHITECTURE_GRID, ex.TRAINING_GRID)
    ours_grids = ex.QUICK_GRIDS if args.quick else (ex.ARCHITECTURE_GRID, ex.SHIPPED_TRAINING_GRID)
    with fits_on(cluster):
        seed_search = search_seed(data, seed_grids, args.seed, args.jobs)
        timings["seed_search_s"] = lap()
        streams, ours_search = search_shipped(data, labels, rooms, ours_grids, args.seed, args.jobs)
        timings["shipped_search_s"] = lap()
        protocols = plan_protocols(data, seed_search, ours_search, streams, rooms, seeds)
        outcome = collect(protocols, protocols.score(args.jobs), ours_search, args.adaptation)
        outcome, shipped = fit_shipped(outcome, data, ours_search.best_params, streams, rooms, seeds, args)
        timings["protocols_s"] = lap()
    plot_scores(outcome, labels, report_dir)

    final = finish(data, outcome, protocols, *shipped)
    plot_calibration(final.heads.metrics["calibration"], report_dir)
    model_metrics = models_metrics(outcome)
    manifest = build_manifest(args, data, labels, ours_search.best_params, final, outcome.chosen, model_metrics)
    bundle_path = save_bundle(final.model, manifest, args.out, name, extra_arrays=final.arrays)
    bundle_sha256 = sha256_of(bundle_path)
    timings |= {
        "final_s": lap(),
        "total_s": time.perf_counter() - started,
        "load_average": os.getloadavg()[0],  # the machine may be shared: these are wall-clock seconds
    }

    metrics = run_metrics(
        args,
        cluster,
        name=name,
        data=data,
        labels=labels,
        seeds=seeds,
        searches=(seed_search, ours_search),
        outcome=outcome,
        model_metrics=model_metrics,
        heads=final.heads,
        bundle_sha256=bundle_sha256,
        timings=timings,
    )
    write_report(report_dir, metrics)
    print(table(model_metrics))
    log(f"wrote {bundle_path} and {report_dir}/report.md in {metrics['timings']['total_s']:.0f} s")
    return metrics


@dataclass(frozen=True)
class Features:
    """The clips and their feature rows, which every later phase reads."""

    clips: list[Clip]
    seed: Dataset  # the seed's features, in float64 as the seed ran
    ours: Dataset  # the shipped features of VAD-trimmed clips, with speed and room copies
    unlabelled: Dataset | None  # everyday clips of the quiet emotions not trained on, heard in protocol (c)'s streams


def scan_clips(args: argparse.Namespace) -> list[Clip]:
    """The RAVDESS clips of the run's emotions and actors; a warning names the files that are not RAVDESS's."""
    found = scan(args.data, args.emotions, args.actors)
    if found.skipped:
        log(
            f"warning: skipped {len(found.skipped)} files whose names are not RAVDESS audio-only speech "
            f"(first: {found.skipped[0]})"
        )
    log(f"{len(found.clips)} clips, {len({c.actor for c in found.clips})} actors")
    return found.clips


def load_features(args: argparse.Namespace, clips: list[Clip]) -> Features:
    """Every feature set the run trains and tests on, from the cache where computed before."""
    seed_data = load_dataset(clips, SEED_PARAMS, args.cache, args.jobs, dtype=np.float64)  # as the seed ran
    ours = load_dataset(clips, SHIPPED_FEATURES, args.cache, args.jobs, SPEEDS, SHIPPED_TRIM)
    ours = with_room_copies(ours, clips, SHIPPED_FEATURES, args.cache, args.jobs, args.rooms, args.seed, SHIPPED_TRIM)
    everyday = [c for c in scan(args.data, ad.QUIET, args.actors).clips if c.emotion not in args.emotions]
    unlabelled = (
        load_dataset(everyday, SHIPPED_FEATURES, args.cache, args.jobs, SPEEDS, SHIPPED_TRIM) if everyday else None
    )
    return Features(clips, seed_data, ours, unlabelled)


def labels_of(args: argparse.Namespace, seed_data: Dataset) -> list[str]:
    """The run's emotions the clips have, in the order asked: at least two, of at least two actors."""
    labels = [emotion for emotion in args.emotions if emotion in set(seed_data.labels)]
    if len(labels) < 2 or len(set(seed_data.groups)) < 2:
        raise UserError(f"{args.data}: need clips of at least two emotions and two actors")
    return labels


def ours_model(params: dict[str, Any], members: int = 1) -> Callable[[int], ClassifierMixin]:
    """Our MLP (behind a scaler; ``members`` of them, `ex.SeedEnsemble`) with ``params`` and our training
    budget, by random seed."""
    return lambda s: ex.mlp(ours_params(params), s, scaled=True, members=members)


def ours_params(params: dict[str, Any]) -> dict[str, Any]:
    """Every parameter our MLP is fitted with besides DataFlair's: the searched ones and the budget."""
    return {**OURS_TRAINING, **params}


def seed_model(params: dict[str, Any]) -> Callable[[int], ClassifierMixin]:
    """The seed's MLP (on unscaled features) with ``params``, by random seed."""
    return lambda s: ex.mlp(params, s, scaled=False)


def search_seed(data: Features, grids: tuple[dict[str, list[Any]], ...], seed: int, jobs: int) -> ex.SearchResult:
    """The seed's MLP searched on its own features, under protocol (b)'s folds."""
    log("successive halving on the seed features …")
    return ex.halving_search(lambda p: seed_model(p)(seed), ex.actor_design(data.seed), grids, jobs)


def search_shipped(
    data: Features,
    labels: list[str],
    rooms: list[list[RoomStream]],
    grids: tuple[dict[str, list[Any]], ...],
    seed: int,
    jobs: int,
) -> tuple[list[list[ad.Stream]], ex.SearchResult]:
    """Protocol (c)'s streams of each fold of (b), and the shipped model's search, whose best fits play them."""
    log("successive halving for the shipped model …")
    streams = ad.fold_streams(data.ours, data.unlabelled, labels, seed)
    # the search's best fits are the plain recipe's (b); they play its (c) and (d)
    plain = [partial(ad.play_all, fold, None, rooms=r) for fold, r in zip(streams, rooms, strict=True)]
    search = ex.halving_search(
        lambda p: ours_model(p)(seed), ex.actor_design(data.ours), grids, jobs, plain, last_at_full_budget=True
    )
    return streams, search


@dataclass(frozen=True)
class Protocols:
    """Every row's protocol experiments, as one batch (``collect`` reads its scores back in the batch's order)."""

    seed_rows: dict[str, tuple[Callable[[int], ClassifierMixin], dict[str, Any]]]  # row: its model by seed, params
    recipes: dict[str, ex.Experiment]  # per adapted recipe: (b) (the plain recipe's is the search's)
    searched: dict[str, ex.Score | None]  # per seed row: its (b), when the seed's search fitted it on the same folds
    batch: list[ex.Experiment]

    def score(self, jobs: int) -> Iterator[ex.Score]:
        """The batch's scores, in its order."""
        log(f"protocols (a) to (d): {sum(len(e.design.splits) for e in self.batch)} fits …")
        return iter(ex.score_all(self.batch, jobs))


def plan_protocols(
    data: Features,
    seed_search: ex.SearchResult,
    ours_search: ex.SearchResult,
    streams: list[list[ad.Stream]],
    rooms: list[list[RoomStream]],
    seeds: list[int],
) -> Protocols:
    """The seed's models under protocols (a) and (b), the shipped recipe's variants under (b) to (d)."""
    seed = seeds[0]
    seed_rows = {
        "dummy (stratified)": (ex.dummy, {"strategy": "stratified"}),
        "DataFlair MLP": (seed_model({}), ex.DATAFLAIR_PARAMS),
        "grid-searched MLP, seed features": (seed_model(seed_search.best_params), seed_search.best_params),
        ARTICLE: (seed_model(ex.ARTICLE_TUNED_PARAMS), ex.ARTICLE_TUNED_PARAMS),
    }
    recipes = ad.actor_experiments(ours_model(ours_search.best_params), data.ours, streams, seed, ADAPTATION, rooms)
    # protocol (b) of a seed model the search fitted on the same folds is the search's own score
    searched = {row: seed_search.score_of(make(seed)) for row, (make, _) in seed_rows.items()}
    batch = list(recipes.values())  # the longest fits first
    batch += [ex.split_experiment(make, data.seed, seeds) for make, _ in seed_rows.values()]
    batch += [ex.actor_experiment(make, data.seed, seed) for row, (make, _) in seed_rows.items() if not searched[row]]
    return Protocols(seed_rows, recipes, searched, batch)


@dataclass(frozen=True)
class Outcome:
    """Every row's scores and parameters, the recipes' results, which recipe ships, and (once
    `fit_shipped` has measured it) the shipped model's result."""

    scores: dict[str, dict[str, ex.Score]]  # row: protocol: score
    params: dict[str, dict[str, Any]]
    results: dict[str, ad.Recipe]
    best: str  # the recipe protocols (c) and (d) choose
    chosen: str  # the recipe shipped: the best, unless --adaptation names one
    members: int = 1  # networks in the shipped model
    result: ad.Recipe | None = None  # the shipped model under protocols (a) to (d)

    @property
    def shipped(self) -> str:
        return shipped_row(self.chosen, self.members)


def collect(protocols: Protocols, done: Iterator[ex.Score], ours_search: ex.SearchResult, adaptation: str) -> Outcome:
    """The batch's scores by row, and the recipe chosen by protocols (c) and (d) (``adaptation`` 'auto') or named."""
    scores: dict[str, dict[str, ex.Score]] = {}
    params: dict[str, dict[str, Any]] = {}
    results = {
        mode: ad.recipe(mode, None, next(done) if mode in protocols.recipes else ours_search.best_fits, ADAPTATION)
        for mode in ad.RECIPES
    }
    for row, (_, row_params) in protocols.seed_rows.items():
        scores[row], params[row] = {"split": next(done)}, row_params
    for row in protocols.seed_rows:
        scores[row]["actor"] = protocols.searched[row] or next(done)
    best = max(results, key=lambda mode: results[mode].selection_accuracy)  # ties: the simpler recipe
    chosen = best if adaptation == "auto" else adaptation
    for mode, result in results.items():
        scores[RECIPE_ROWS[mode]] = {"actor": result.actor}
        params[RECIPE_ROWS[mode]] = ours_params(ours_search.best_params)
    log(f"shipped recipe: {ad.RECIPES[chosen]} (protocols (c), (d): {100 * results[chosen].selection_accuracy:.1f} %)")
    return Outcome(scores, params, results, best, chosen)


def fit_shipped(
    outcome: Outcome,
    data: Features,
    params: dict[str, Any],
    streams: list[list[ad.Stream]],
    rooms: list[list[RoomStream]],
    seeds: list[int],
    args: argparse.Namespace,
) -> tuple[Outcome, tuple[ClassifierMixin, np.ndarray, AdapterPrior | None]]:
    """``outcome`` with the shipped model's result: the chosen recipe with ``args.members`` networks,
    under protocol (a) (the article's, which its figures compare with; the variants not shipped are
    compared under (b) to (d), which choose) and, when several, under (b) to (d) again (the choice was
    made with one network each); and the model fitted on all the data, with its training rows and prior.
    In one batch, so the final fit takes the core the others leave idle."""
    chosen, seed, members = outcome.chosen, seeds[0], args.members
    make = ours_model(params, members)
    X, prior = ad.training_matrix(data.ours, chosen, ADAPTATION, seed)
    again = [ad.recipe_experiment(make, data.ours, streams, seed, ADAPTATION, chosen, rooms)] if members > 1 else []
    experiments = [*again, ad.split_experiment(make, data.ours, seeds, ADAPTATION, chosen)]  # the longest first
    fits = members * (sum(len(e.design.splits) for e in experiments) + 1)
    log(f"the shipped model ({members} network(s)) under protocols (a) to (d), and fitted: {fits} network fits …")
    (*again, split), (model,) = ex.score_and_fit(experiments, [(make(seed), X, data.ours.y)], args.jobs)
    result = ad.recipe(chosen, split, again[0], ADAPTATION) if again else replace(outcome.results[chosen], split=split)
    outcome = replace(outcome, members=members, result=result)
    scores = {**outcome.scores, outcome.shipped: {"split": split, "actor": result.actor}}
    row_params = {**ours_params(params), **({"members": members} if members > 1 else {})}
    return replace(outcome, scores=scores, params={**outcome.params, outcome.shipped: row_params}), (model, X, prior)


def plot_scores(outcome: Outcome, labels: list[str], report_dir: Path) -> None:
    """The report's figures of the protocols' scores."""
    scores, shipped = outcome.scores, outcome.shipped
    # protocol (a)'s first fit of each is seed 0's split: its loss curve is the one plotted
    curves = {
        label: scores[row]["split"].curves[0]
        for label, row in (("DataFlair", "DataFlair MLP"), ("article tuned", ARTICLE), ("shipped", shipped))
    }
    plot_loss_curves(curves, report_dir / "loss_curves.png")
    for protocol, title in (("split", "(a) random split, pooled over seeds"), ("actor", "(b) by actor, pooled")):
        plot_confusion(scores[shipped][protocol], labels, f"shipped, {title}", report_dir / f"confusion_{protocol}.png")
    results = recipe_results(outcome)
    plot_streams({row: r.stream for row, r in results.items()}, report_dir / "streams.png")
    plot_rooms({row: r.rooms for row, r in results.items()}, report_dir / "rooms.png")


@dataclass(frozen=True)
class Final:
    """The bundle's estimator, fitted on every training row, its adapter's prior (adapted recipes) and its heads."""

    model: ClassifierMixin
    prior: AdapterPrior | None
    heads: Heads

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The bundle's arrays besides the estimator's."""
        prior = {"adaptation_mean": self.prior.mean, "adaptation_var": self.prior.var} if self.prior else {}
        return {**prior, **self.heads.arrays}


def finish(
    data: Features,
    outcome: Outcome,
    protocols: Protocols,
    model: ClassifierMixin,
    X: np.ndarray,
    prior: AdapterPrior | None,
) -> Final:
    """The chosen recipe's final ``model`` (fitted on its training rows ``X``) with its heads
    (calibration, intensity) from its protocol (b)."""
    chosen = outcome.chosen
    shipped_b = protocols.recipes[chosen].design if chosen != "none" else ex.actor_design(data.ours)  # its (b)
    horizon = None if chosen == "none" else ADAPTATION["horizon"]
    strong = strong_of(data.clips)
    columns = voice_columns(SHIPPED_FEATURES, cal.COVARIATES)
    heads = fit_heads(outcome.result.actor, horizon, shipped_b, strong, model, X, data.ours.clip, data.ours.X, columns)
    return Final(model, prior, heads)


def models_metrics(outcome: Outcome) -> dict[str, dict[str, Any]]:
    """metrics.json's ``models``: per row, its parameters and scores, and the recipes' streams, rooms and
    microphones."""
    model_metrics = {
        row: {"params": jsonable(outcome.params[row]), **{p: s.to_dict() for p, s in by_protocol.items()}}
        for row, by_protocol in outcome.scores.items()
    }
    for row, result in recipe_results(outcome).items():
        model_metrics[row]["stream"] = result.stream
        if result.horizons:
            model_metrics[row]["horizons"] = result.horizons
        model_metrics[row]["rooms"] = result.rooms
        model_metrics[row]["microphones"] = result.microphones
    return model_metrics


def recipe_results(outcome: Outcome) -> dict[str, ad.Recipe]:
    """Per row, the result of a recipe's variant under protocols (b) to (d), and the shipped model's."""
    results = {RECIPE_ROWS[mode]: result for mode, result in outcome.results.items()}
    return {**results, **({outcome.shipped: outcome.result} if outcome.result else {})}


def build_manifest(
    args: argparse.Namespace,
    data: Features,
    labels: list[str],
    params: dict[str, Any],
    final: Final,
    chosen: str,
    model_metrics: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The bundle's manifest: what serving needs to use the model, where it came from, how well it did."""
    clips = data.clips
    return {
        "labels": labels,
        "sample_rate": SHIPPED_FEATURES.sample_rate,
        "features": SHIPPED_FEATURES.to_dict(),
        "trim": asdict(SHIPPED_TRIM),
        "estimator": {
            "type": "StandardScaler + MLPClassifier" + (f" × {args.members}, averaged" if args.members > 1 else ""),
            "params": jsonable(ours_params(params)),
            "random_state": args.seed,
            **({"members": args.members} if args.members > 1 else {}),
        },
        **({"adaptation": adaptation_section(final.prior, chosen)} if final.prior else {}),
        **final.heads.sections,
        "versions": {
            "ser_stream": __version__,
            "scikit_learn": sklearn.__version__,
            "librosa": librosa.__version__,
            "features": FEATURES_IMPLEMENTATION,
            "numpy": np.__version__,
            "joblib": joblib.__version__,
        },
        "training_data": {
            "name": "RAVDESS speech (audio-only)",
            "licence": "CC BY-NC-SA 4.0",
            "clips": len(clips),
            "actors": sorted({clip.actor for clip in clips}),
            "augmentation": {"speed_perturbation": list(SPEEDS), "rooms": rooms_metrics(args.rooms)},
            "fingerprint_sha256": fingerprint(clips, data.seed.digests, Path(args.data)),
        },
        "metrics": {
            row: {
                **{p: {"mean": m[p]["mean"], "sd": m[p]["sd"]} for p in ("split", "actor") if p in m},
                **({"stream": {mix: s["overall"] for mix, s in m["stream"].items()}} if "stream" in m else {}),
                **({"room": {room: r["accuracy"] for room, r in m["rooms"].items()}} if m.get("rooms") else {}),
                **(
                    {"microphone": {mic: r["accuracy"] for mic, r in m["microphones"].items()}}
                    if m.get("microphones")
                    else {}
                ),
            }
            for row, m in model_metrics.items()
        },
    }


def run_metrics(
    args: argparse.Namespace,
    cluster: Cluster | None,
    *,
    name: str,
    data: Features,
    labels: list[str],
    seeds: list[int],
    searches: tuple[ex.SearchResult, ex.SearchResult],
    outcome: Outcome,
    model_metrics: dict[str, dict[str, Any]],
    heads: Heads,
    bundle_sha256: str,
    timings: dict[str, float],
) -> dict[str, Any]:
    """metrics.json: what was trained on and how, every row's scores, the searches (seed's, shipped's), the heads."""
    return {
        "name": name,
        "labels": labels,
        "n_clips": len(data.clips),
        "n_actors": len(set(data.seed.groups)),
        "augmentation_speeds": list(SPEEDS),
        "rooms": rooms_metrics(args.rooms),
        "seeds": seeds,
        "jobs": args.jobs,
        **({"dask": cluster.to_dict()} if cluster else {}),
        "quick": args.quick,
        "features": SEED_PARAMS.to_dict(),
        "shipped_features": {**SHIPPED_FEATURES.to_dict(), "n_features": SHIPPED_FEATURES.n_features},
        "models": model_metrics,
        "shipped": outcome.shipped,
        "adaptation": {
            **ADAPTATION,
            "recipes": ad.RECIPES,
            "best": outcome.best,
            "chosen": outcome.chosen,
            "orders": ad.STREAM_ORDERS,
        },
        "grid_search": {
            "seed features, unscaled": search_dict(searches[0]),
            "shipped features, scaled": search_dict(searches[1]),
        },
        **heads.metrics,
        "bundle_sha256": bundle_sha256,
        "timings": timings,
    }


def adaptation_section(prior: AdapterPrior, mode: str) -> dict[str, Any]:
    """The manifest's ``adaptation``: how serving standardises features (the arrays travel in the bundle)."""
    return {
        "method": "per-voice standardisation: running mean and variance of the utterances heard "
        "(ser_stream.adapter.VoiceAdapter), blended with the population prior",
        **prior.settings(),
        "training": {"mode": mode, "what": ad.RECIPES[mode]},
        "classify": "each utterance with the statistics of those heard before it, then added to them",
        "prior": "adaptation_mean: mean over the training clips; adaptation_var: mean of each actor's own variance",
    }


def stopwatch() -> Callable[[], float]:
    """A function that returns the seconds since it last returned (or was made)."""
    last = [time.perf_counter()]

    def lap() -> float:
        now = time.perf_counter()
        seconds, last[0] = now - last[0], now
        return seconds

    return lap


def search_dict(result: ex.SearchResult) -> dict[str, Any]:
    return {
        "best_params": jsonable(result.best_params),
        "best_score": result.best_score,
        "stages": jsonable(result.stages),
    }


def jsonable(value: Any) -> Any:
    """Tuples (hidden layer sizes) as lists, recursively, for JSON."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
