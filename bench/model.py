"""Model bundle: the data-only .npz against the joblib pickle it replaced, on disk and at load; and
the forward pass of the shipped bundles' networks against one of them alone.

The reference is the last pickle bundle and the code that loaded it, taken from git
(``REFERENCE``) into a temporary folder and run by this interpreter in the same run.
Each process imports the loader, loads the bundle once (what start-up pays) and then
``LOADS`` more times (what a SIGHUP reload pays); figures are medians over ``PROCESSES``.

``networks``: each shipped bundle's probabilities of one utterance (all its networks, averaged and
calibrated) against its first network alone, BLAS in one thread as the daemon runs; and the
features of the utterance, which the worker computes for the same utterance, as the scale.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from io import BytesIO
from pathlib import Path

import soundfile

from bench.common import DEFAULT_DATA, clips, line, median, python_start_s, section
from ser_stream.features import extract_features
from ser_stream.model import load_bundle, single_threaded_blas
from testkit.live import REPO

#: The last commit of the joblib bundle and its loader (SHA-256 check, then a pickle read without scikit-learn).
REFERENCE = "f6ea677"
PROCESSES = 7
LOADS = 20
#: Forward passes timed per bundle and way (one at a time, as the worker makes them).
PASSES = 2000
#: Run in a fresh process: import the loader, load once, load LOADS more times; prints seconds and where it ran.
PROBE = f"""
import sys, time
started = time.perf_counter()
from ser_stream.model import load_bundle
imported = time.perf_counter()
load_bundle(sys.argv[1])
first = time.perf_counter()
loads = []
for _ in range({LOADS}):
    t = time.perf_counter()
    load_bundle(sys.argv[1])
    loads.append(time.perf_counter() - t)
import ser_stream
heavy = [m for m in ("sklearn", "joblib") if m in sys.modules]
print(imported - started, first - imported, sorted(loads)[len(loads) // 2], ser_stream.__file__, *heavy)
"""


def checkout(commit: str, into: Path) -> Path:
    """``ser_stream/`` and ``models/`` of ``commit``, unpacked into ``into``."""
    archive = subprocess.run(["git", "archive", commit, "ser_stream", "models"], cwd=REPO, capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"bench: git archive {commit} failed (needs the repository's history): {archive.stderr!r}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def probe(code_root: Path, bundle: Path) -> tuple[float, float, float, str]:
    """(import s, first load s, median reload s, heavy modules loaded) in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(bundle)],
        cwd=code_root,  # the current folder comes first on sys.path: this code, not the installed one
        capture_output=True,
        text=True,
        check=True,
    )
    imported, first, reload, where, *heavy = result.stdout.split()
    if not Path(where).is_relative_to(code_root):
        raise SystemExit(f"bench: the probe ran {where}, not the code in {code_root}")
    return float(imported), float(first), float(reload), " ".join(heavy) or "none"


def run(data: Path = DEFAULT_DATA) -> None:
    loading()
    networks(data)


def networks(data: Path) -> None:
    """Per utterance: each shipped bundle's forward pass, against its first network alone and the features."""
    single_threaded_blas()
    samples = soundfile.read(clips(data, 1)[0], dtype="float32")[0]
    section(f"model: the forward pass of one utterance, {PASSES} passes, 1 BLAS thread")
    for name in ("ser-mlp", "ser-mlp-8"):
        bundle = load_bundle(REPO / "models" / f"{name}.npz")
        row = extract_features(samples, 16000, bundle.feature_params)
        features = []
        for _ in range(20):
            started = time.perf_counter()
            extract_features(samples, 16000, bundle.feature_params)
            features.append(time.perf_counter() - started)
        mlp = bundle.mlp
        first = replace(mlp, coefs=tuple(c[:1] for c in mlp.coefs), intercepts=tuple(b[:1] for b in mlp.intercepts))
        times = {}
        for way, network in (("all", mlp), ("first", first)):
            passes = []
            for _ in range(PASSES):
                started = time.perf_counter()
                network.predict_proba(row)
                passes.append(time.perf_counter() - started)
            times[way] = median(passes)
        everything, one, extraction = times["all"], times["first"], median(features)
        line(f"{name}: {mlp.members} networks", f"{1e6 * everything:.0f} µs (median)")
        line("  its first network alone (reference)", f"{1e6 * one:.0f} µs ({everything / one:.2f}x)")
        clip = f"  features of the {samples.size / 16000:.1f} s clip"
        line(clip, f"{1e3 * extraction:.2f} ms (networks: {everything / extraction:.1%})")


def loading() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-model-") as folder:
        old_root = checkout(REFERENCE, Path(folder))
        bundles = {
            "joblib (before)": (old_root, old_root / "models" / "ser-mlp.joblib"),
            "npz (now)": (REPO, REPO / "models" / "ser-mlp.npz"),
        }
        runs = {name: [] for name in bundles}
        floor = python_start_s()
        for _ in range(PROCESSES):
            for name, (root, bundle) in bundles.items():
                runs[name].append(probe(root, bundle))
        section(f"model: bundle size and load time, {PROCESSES} processes each, {LOADS} reloads per process")
        line("python -c pass", f"{floor * 1000:.0f} ms")
        figures = {}
        for name, (_, bundle) in bundles.items():
            size = bundle.stat().st_size + bundle.with_suffix(".json").stat().st_size
            imported, first, reload = (median([r[i] for r in runs[name]]) for i in range(3))
            figures[name] = (size, imported, first, reload)
            line(name, f"{size / 1e6:.2f} MB on disk (data + manifest)")
            line("  import the loader", f"{imported * 1000:.0f} ms")
            line("  first load (start-up)", f"{first * 1000:.1f} ms")
            line("  reload (median)", f"{reload * 1000:.2f} ms")
            line("  imports sklearn or joblib", runs[name][0][3])
        old, new = figures.values()
        line(
            "npz / joblib",
            " ".join(
                f"{label} {n / o:.2f}x"
                for label, o, n in zip(("size", "import", "first load", "reload"), old, new, strict=True)
            ),
        )


if __name__ == "__main__":
    run()
