"""Model bundle: the data-only .npz against the joblib pickle it replaced, on disk and at load.

The reference is the last pickle bundle and the code that loaded it, taken from git
(``REFERENCE``) into a temporary folder and run by this interpreter in the same run.
Each process imports the loader, loads the bundle once (what start-up pays) and then
``LOADS`` more times (what a SIGHUP reload pays); figures are medians over ``PROCESSES``.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from bench.common import line, median, python_start_s, section
from testkit.live import REPO

#: The last commit of the joblib bundle and its loader (SHA-256 check, then a pickle read without scikit-learn).
REFERENCE = "f6ea677"
PROCESSES = 7
LOADS = 20
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


def run() -> None:
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
