"""Adapter: what `VoiceAdapter` adds per utterance (normalise, then update), against feature extraction.

The shipped model's features of RAVDESS clips are computed once (the reference: extraction of
one utterance, its fastest of a few rounds), then the adapter takes each clip's features in turn
as the daemon would, many times over; a figure is a median, the verdict a ratio measured in the
same run. BLAS in one thread, as the daemon runs.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import soundfile

from bench.common import DEFAULT_DATA, clips, line, median, section, verdict
from ser_stream.adapter import AdapterPrior, VoiceAdapter
from ser_stream.features import extract_features
from ser_stream.model import default_model_path, load_bundle, single_threaded_blas

TARGET_MS = 0.2
#: State arrays larger than this would not fit the issue's state-file budget.
TARGET_STATE_KB = 50.0


def run(data: Path = DEFAULT_DATA, count: int = 40, rounds: int = 3, passes: int = 50) -> None:
    single_threaded_blas()
    params = load_bundle(default_model_path()).feature_params
    audio = [soundfile.read(path, dtype="float32")[0] for path in clips(data, count)]
    extract_features(audio[0], 16000, params)  # filter banks: once, not per utterance
    features, extraction = [], []
    for samples in audio:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            row = extract_features(samples, 16000, params)
            times.append(time.perf_counter() - started)
        features.append(row)
        extraction.append(min(times))
    rows = np.stack(features)
    adapter = VoiceAdapter(AdapterPrior(rows.mean(axis=0), rows.var(axis=0)))
    per_utterance = []
    for _ in range(passes):
        for row in rows:
            started = time.perf_counter()
            adapter.normalise(row)
            adapter.update(row)
            per_utterance.append(time.perf_counter() - started)
    buffer = io.BytesIO()
    np.savez(buffer, **adapter.state())
    adapter_ms, extract_ms = 1000 * median(per_utterance), 1000 * median(extraction)
    section(f"adapter ({params.n_features} features, {count} RAVDESS clips × {passes} passes, 1 BLAS thread)")
    line("features of one utterance (reference)", f"{extract_ms:.2f} ms (median)")
    target = f"[target < {TARGET_MS} ms: {verdict(adapter_ms, TARGET_MS)}]"
    line("adapter: normalise + update", f"{1000 * adapter_ms:.1f} µs (median) {target}")
    line("adapter / features", f"{adapter_ms / extract_ms:.4f}")
    size_kb = buffer.getbuffer().nbytes / 1000
    line(
        "adapter state (npz)",
        f"{size_kb:.1f} kB  [target < {TARGET_STATE_KB:.0f} kB: {verdict(size_kb, TARGET_STATE_KB)}]",
    )


if __name__ == "__main__":
    run()
