"""One training run: features, experiments, report and model bundle."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import joblib
import librosa
import numpy as np
import sklearn

from ser_stream import __version__
from ser_stream.errors import UserError
from ser_stream.features import IMPLEMENTATION as FEATURES_IMPLEMENTATION
from ser_stream.features import SEED_PARAMS, FeatureParams
from ser_stream.model import save_bundle, sha256_of
from ser_stream.segmenter import SegmenterConfig

from . import experiments as ex
from .augment import SPEEDS
from .cluster import Cluster, connect, fits_on
from .dataset import fingerprint, load_dataset
from .ravdess import SEED_EMOTIONS, scan
from .report import plot_confusion, plot_loss_curves, table, write_report

#: The shipped model's features: the seed's means, plus std and MFCC-delta spread, mel in log10.
SHIPPED_FEATURES = FeatureParams(statistics=("mean", "std", "delta_std"), mel_scale="log")
#: Clips are cut to the span the daemon's default segmenter hands over, so training sees serving's input.
SHIPPED_TRIM = SegmenterConfig(sample_rate=SHIPPED_FEATURES.sample_rate)


def default_name(emotions: tuple[str, ...]) -> str:
    return "ser-mlp" if set(emotions) == set(SEED_EMOTIONS) else f"ser-mlp-{len(emotions)}emo"


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

    found = scan(args.data, args.emotions, args.actors)
    if found.skipped:
        log(
            f"warning: skipped {len(found.skipped)} files whose names are not RAVDESS audio-only speech "
            f"(first: {found.skipped[0]})"
        )
    clips = found.clips
    log(f"{len(clips)} clips, {len({c.actor for c in clips})} actors")

    t = time.perf_counter()
    seed_data = load_dataset(clips, SEED_PARAMS, args.cache, args.jobs)
    ours = load_dataset(clips, SHIPPED_FEATURES, args.cache, args.jobs, SPEEDS, SHIPPED_TRIM)
    features_s = time.perf_counter() - t
    log(f"features: {features_s:.1f} s")
    labels = [emotion for emotion in args.emotions if emotion in set(seed_data.labels)]
    if len(labels) < 2 or len(set(seed_data.groups)) < 2:
        raise UserError(f"{args.data}: need clips of at least two emotions and two actors")

    seeds = list(range(args.seed, args.seed + args.repeats))
    grids = ex.QUICK_GRIDS if args.quick else (ex.ARCHITECTURE_GRID, ex.TRAINING_GRID)
    jobs, seed = args.jobs, args.seed

    def both(make, data, search: ex.SearchResult | None = None) -> dict[str, ex.Score]:
        """Protocols (a) and (b); (b) from ``search`` when it already fitted this model on those folds."""
        actor = search.score_of(make(seed)) if search else None
        return {
            "split": ex.score_split(make, data, seeds, jobs),
            "actor": actor or ex.score_actor(make, data, seed, jobs),
        }

    scores: dict[str, dict[str, ex.Score]] = {}
    params: dict[str, dict[str, Any]] = {}
    with fits_on(cluster):
        log("grid search on the seed features …")
        seed_search = ex.grid_search(
            lambda p: ex.mlp(p, seed, scaled=False), ex.actor_design(seed_data), grids, seed, jobs
        )
        log("dummy, DataFlair MLP …")
        scores["dummy (stratified)"] = both(ex.dummy, seed_data)
        params["dummy (stratified)"] = {"strategy": "stratified"}
        scores["DataFlair MLP"] = both(lambda s: ex.mlp({}, s, scaled=False), seed_data, seed_search)
        params["DataFlair MLP"] = ex.DATAFLAIR_PARAMS
        scores["grid-searched MLP, seed features"] = both(
            lambda s: ex.mlp(seed_search.best_params, s, scaled=False), seed_data, seed_search
        )
        params["grid-searched MLP, seed features"] = seed_search.best_params
        scores["article's tuned MLP (logistic, (250, 150))"] = both(
            lambda s: ex.mlp(ex.ARTICLE_TUNED_PARAMS, s, scaled=False), seed_data, seed_search
        )
        params["article's tuned MLP (logistic, (250, 150))"] = ex.ARTICLE_TUNED_PARAMS
        log("successive halving for the shipped model …")
        ours_search = ex.grid_search(
            lambda p: ex.mlp(p, seed, scaled=True), ex.actor_design(ours), grids, seed, jobs, "mlp__", halving=True
        )
        shipped = "shipped: scaled MLP, richer features, VAD-trimmed, speed-perturbed copies"
        scores[shipped] = both(lambda s: ex.mlp(ours_search.best_params, s, scaled=True), ours)
        params[shipped] = ours_search.best_params

    # protocol (a)'s first fit of each is seed 0's split: its loss curve is the one plotted
    curves = {
        label: scores[row]["split"].curves[0]
        for label, row in (
            ("DataFlair", "DataFlair MLP"),
            ("article tuned", "article's tuned MLP (logistic, (250, 150))"),
            ("shipped", shipped),
        )
    }
    plot_loss_curves(curves, report_dir / "loss_curves.png")
    for protocol, title in (("split", "(a) random split, pooled over seeds"), ("actor", "(b) by actor, pooled")):
        plot_confusion(scores[shipped][protocol], labels, f"shipped, {title}", report_dir / f"confusion_{protocol}.png")

    final = ex.fit(ex.mlp(ours_search.best_params, seed, scaled=True), ours)
    model_metrics = {
        row: {"params": jsonable(params[row]), **{p: s.to_dict() for p, s in by_protocol.items()}}
        for row, by_protocol in scores.items()
    }
    searches = {
        "seed features, unscaled": search_dict(seed_search),
        "shipped features, scaled": search_dict(ours_search),
    }
    manifest = {
        "labels": labels,
        "sample_rate": SHIPPED_FEATURES.sample_rate,
        "features": SHIPPED_FEATURES.to_dict(),
        "trim": asdict(SHIPPED_TRIM),
        "estimator": {
            "type": "StandardScaler + MLPClassifier",
            "params": jsonable(ours_search.best_params),
            "random_state": seed,
        },
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
            "augmentation": {"speed_perturbation": list(SPEEDS)},
            "fingerprint_sha256": fingerprint(clips, seed_data.digests, Path(args.data)),
        },
        "metrics": {
            row: {p: {"mean": m[p]["mean"], "sd": m[p]["sd"]} for p in ("split", "actor")}
            for row, m in model_metrics.items()
        },
    }
    bundle_path = save_bundle(ex.without_optimizer_state(final), manifest, args.out, name)

    metrics = {
        "name": name,
        "labels": labels,
        "n_clips": len(clips),
        "n_actors": len(set(seed_data.groups)),
        "augmentation_speeds": list(SPEEDS),
        "seeds": seeds,
        "jobs": jobs,
        **({"dask": cluster.to_dict()} if cluster else {}),
        "quick": args.quick,
        "features": SEED_PARAMS.to_dict(),
        "shipped_features": {**SHIPPED_FEATURES.to_dict(), "n_features": SHIPPED_FEATURES.n_features},
        "models": model_metrics,
        "grid_search": searches,
        "bundle_sha256": sha256_of(bundle_path),
        "timings": {"features_s": features_s, "total_s": time.perf_counter() - started},
    }
    write_report(report_dir, metrics)
    print(table(model_metrics))
    log(f"wrote {bundle_path} and {report_dir}/report.md in {metrics['timings']['total_s']:.0f} s")
    return metrics


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
