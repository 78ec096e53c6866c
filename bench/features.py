"""Features: `extract_features` against the seed's three-call librosa recipe, decoding excluded.

Each clip is decoded once, then the recipe and our extractor (the seed's 180 values, and the
shipped model's parameters) take turns on it for several rounds; a clip's time is its fastest
round (the least disturbed by other processes), the figure the median over clips. Both run
with BLAS in one thread, as the daemon and `classify` do.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soundfile

from bench.common import DEFAULT_DATA, clips, line, median, section, verdict
from ser_stream.features import SEED_PARAMS, extract_features
from ser_stream.model import default_model_path, load_bundle, single_threaded_blas
from testkit.recipe import seed_recipe

TARGET_SPEEDUP = 5.0


def run(data: Path = DEFAULT_DATA, count: int = 60, rounds: int = 5) -> None:
    single_threaded_blas()
    paths = clips(data, count)
    audio = [soundfile.read(path, dtype="float32")[0] for path in paths]
    shipped = load_bundle(default_model_path()).feature_params
    contenders = {
        "recipe": lambda samples: seed_recipe(samples, 16000),
        "seed": lambda samples: extract_features(samples, 16000, SEED_PARAMS),
        "shipped": lambda samples: extract_features(samples, 16000, shipped),
    }
    for compute in contenders.values():  # one-off costs (JIT, filter banks) are not per clip
        compute(audio[0])
    best: dict[str, list[float]] = {name: [] for name in contenders}
    worst_error = 0.0
    for samples in audio:
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for round_ in range(rounds):
            order = list(contenders)[round_ % 3 :] + list(contenders)[: round_ % 3]
            for name in order:
                started = time.perf_counter()
                contenders[name](samples)
                times[name].append(time.perf_counter() - started)
        for name, values in times.items():
            best[name].append(min(values))
        expected = seed_recipe(samples, 16000)
        error = np.abs(extract_features(samples, 16000) - expected).max() / np.abs(expected).max()
        worst_error = max(worst_error, float(error))
    seconds = sum(a.size for a in audio) / 16000 / len(audio)
    ms = {name: 1000 * median(values) for name, values in best.items()}
    speedup = ms["recipe"] / ms["seed"]
    per_clip = median([r / s for r, s in zip(best["recipe"], best["seed"], strict=True)])
    section(
        f"features ({len(audio)} RAVDESS clips, mean {seconds:.1f} s, {rounds} rounds each, no decoding, 1 BLAS thread)"
    )
    line("seed recipe (3 librosa calls)", f"{ms['recipe']:.2f} ms/clip (median)")
    line("extract_features, seed 180", f"{ms['seed']:.2f} ms/clip (median)")
    line(f"extract_features, shipped {shipped.n_features}", f"{ms['shipped']:.2f} ms/clip (median)")
    target = f"[target >= {TARGET_SPEEDUP:.0f}x: {verdict(speedup, TARGET_SPEEDUP, higher_is_better=True)}]"
    line("speed-up (ratio of medians)", f"{speedup:.2f}x  {target}")
    line("speed-up (median of per-clip ratios)", f"{per_clip:.2f}x")
    line("max |difference| / max |recipe value|", f"{worst_error:.1e}")


if __name__ == "__main__":
    run()
