"""The report folder: metrics.json, loss curves, confusion matrices and report.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sklearn.metrics import ConfusionMatrixDisplay

from .experiments import Score

PROTOCOLS = {
    "split": "(a) random stratified 75/25 split",
    "actor": "(b) speaker-independent, GroupKFold by actor",
}


def plot_loss_curves(curves: dict[str, list[float]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        axes.plot(range(1, len(curve) + 1), curve, label=f"{name} ({len(curve)} epochs)")
    axes.set(
        xlabel="epoch", ylabel="training loss (log scale)", yscale="log", title="MLP training loss, split (a) seed 0"
    )
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion(score: Score, labels: list[str], title: str, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    ConfusionMatrixDisplay.from_predictions(
        score.y_true,
        score.y_pred,
        labels=labels,
        normalize="true",
        values_format=".2f",
        ax=axes,
        colorbar=False,
        xticks_rotation=45,
    )
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| model | (a) split, mean ± sd | (b) by actor, mean ± sd |", "|---|---|---|"]
    for name, row in rows.items():
        cells = [f"{100 * row[p]['mean']:.1f} ± {100 * row[p]['sd']:.1f} %" for p in ("split", "actor")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def where(dask: dict[str, Any] | None) -> str:
    """The cluster the model fits ran on, or nothing for a local run (whose report stays as it was)."""
    if dask is None:
        return ""
    size = f"{dask['workers']} workers, {dask['threads']} threads"
    return f"; model fits on the Dask cluster at {dask['scheduler']} ({size})"


def write_report(folder: Path, metrics: dict[str, Any]) -> None:
    """metrics.json and report.md; the PNGs are already in ``folder``."""
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    rows = metrics["models"]
    searches = metrics["grid_search"]
    search_lines = "\n".join(
        f"- **{name}**: best {s['best_params']} at {100 * s['best_score']:.1f} % (actor folds)"
        for name, s in searches.items()
    )
    text = f"""# Training report: {metrics["name"]}

Emotions: {", ".join(metrics["labels"])}; {metrics["n_clips"]} clips from {metrics["n_actors"]} actors,
{metrics["features"]["sample_rate"]} Hz. Protocol {PROTOCOLS["split"]} over seeds {metrics["seeds"]};
protocol {PROTOCOLS["actor"]}.

{table(rows)}

Model selection used protocol (b). Grid search:

{search_lines}

Shipped model features: {metrics["shipped_features"]["n_features"]} values
(statistics {metrics["shipped_features"]["statistics"]}, mel scale {metrics["shipped_features"]["mel_scale"]}).

## Loss curves

![loss curves](loss_curves.png)

## Confusion matrices of the shipped model (row-normalised)

![split](confusion_split.png) ![actor](confusion_actor.png)

Feature extraction {metrics["timings"]["features_s"]:.1f} s, total {metrics["timings"]["total_s"]:.1f} s
with {metrics["jobs"]} jobs{where(metrics.get("dask"))}.
"""
    (folder / "report.md").write_text(text)
