"""Adapter: what `VoiceAdapter` adds per utterance (normalise, then update), against feature extraction.

The shipped model's features of RAVDESS clips are computed once (the reference: extraction of
one utterance, its fastest of a few rounds), then the adapter takes each clip's features in turn
as the daemon would, many times over; a figure is a median, the verdict a ratio measured in the
same run. BLAS in one thread, as the daemon runs.

Then the worker's whole share, as `Worker` pays it per final utterance: the prediction through the
adapter (`Classifier.predict(features, adapter)`) against the model alone, and `Adaptation.learn`
with a state folder (the update, and every SAVE_EVERY utterances a copy handed to the writer
thread), whose mean is the per-utterance cost; then the writer thread's atomic save (temporary
file, fsync, rename) and the state file's size.
"""

from __future__ import annotations

import dataclasses
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from bench.common import DEFAULT_DATA, clips, line, median, section, verdict
from ser_stream.adapter import AdapterPrior, VoiceAdapter
from ser_stream.adapter_state import STATE_FILE, save_state
from ser_stream.features import extract_features
from ser_stream.model import Classifier, default_model_path, load_bundle, single_threaded_blas
from ser_stream.pipeline.adaptation import SAVE_EVERY, Adaptation
from ser_stream.settings import ModelSettings

TARGET_MS = 0.2
#: State arrays larger than this would not fit the issue's state-file budget.
TARGET_STATE_KB = 50.0


def run(data: Path = DEFAULT_DATA, count: int = 40, rounds: int = 3, passes: int = 50) -> None:
    single_threaded_blas()
    shipped = load_bundle(default_model_path())
    params = shipped.feature_params
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
    worker(dataclasses.replace(shipped, prior=adapter.prior), rows, passes, extract_ms)


def worker(bundle, rows: np.ndarray, passes: int, extract_ms: float) -> None:
    """The worker's share per final utterance: predicting through the adapter rather than with the model
    alone (the shipped one, no prior), and learning with a state folder (every SAVE_EVERY utterances a
    copy goes to the writer thread); then what a save costs that thread, and the file it writes."""
    plain, adapted = Classifier(load_bundle(default_model_path())), Classifier(bundle)
    with tempfile.TemporaryDirectory() as folder:
        adaptation = Adaptation.start(bundle, ModelSettings(state_dir=Path(folder)))
        predict_extra, learn = [], []
        for _ in range(passes):
            for row in rows:
                started = time.perf_counter()
                plain.predict(row)
                middle = time.perf_counter()
                adapted.predict(row, adaptation.adapter)
                done = time.perf_counter()
                adaptation.learn(row)
                learn.append(time.perf_counter() - done)
                predict_extra.append((done - middle) - (middle - started))
        adaptation.close()
        saves = []
        for _ in range(20):
            started = time.perf_counter()
            save_state(Path(folder) / STATE_FILE, adaptation.adapter, bundle.sha256)
            saves.append(time.perf_counter() - started)
        state_kb = (Path(folder) / STATE_FILE).stat().st_size / 1000
    per_utterance_ms = 1000 * (statistics.mean(learn) + max(0.0, median(predict_extra)))
    section(f"adapter in the worker (a state folder: a save every {SAVE_EVERY} utterances, on the writer thread)")
    line("predict through the adapter − the model alone", f"{1e6 * median(predict_extra):.1f} µs (median)")
    line("learn (update; a copy to the writer every 5th)", f"{1e6 * statistics.mean(learn):.1f} µs (mean)")
    target = f"[target < {TARGET_MS} ms: {verdict(per_utterance_ms, TARGET_MS)}]"
    line("adapter per utterance in the worker", f"{per_utterance_ms:.3f} ms {target}")
    line("adapter in the worker / features", f"{per_utterance_ms / extract_ms:.4f}")
    line("atomic save (write, fsync, rename), writer thread", f"{1000 * median(saves):.2f} ms (median)")
    line(
        "state file (adaptation.npz)",
        f"{state_kb:.1f} kB  [target < {TARGET_STATE_KB:.0f} kB: {verdict(state_kb, TARGET_STATE_KB)}]",
    )
