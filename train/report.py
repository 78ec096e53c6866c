"""The report folder: metrics.json, loss curves, confusion matrices and report.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sklearn.metrics import ConfusionMatrixDisplay

from .adaptation import AFTER_ANOTHER, MIXES, MOODS, QUIET
from .experiments import Score
from .room_report import percent, room_section

PROTOCOLS = {
    "split": "(a) random stratified 75/25 split",
    "actor": "(b) speaker-independent, GroupKFold by actor",
    "stream": "(c) a device hearing one voice: each held-out actor's clips streamed in random orders",
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


def plot_streams(streams: dict[str, dict[str, Any]], path: Path) -> None:
    """Protocol (c): accuracy against the utterances heard before the one classified, one panel per mix."""
    mixes = sorted({mix for stream in streams.values() for mix in stream}, key=MIXES.index)
    columns = min(2, len(mixes))
    rows = -(-len(mixes) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4 * rows), sharey=True, squeeze=False)
    for axis, mix in zip(axes.flat, mixes, strict=False):
        for name, stream in streams.items():
            heard, accuracy = windows(stream[mix]["curve"])
            axis.plot(heard, [100 * a for a in accuracy], marker="o", label=name)
        axis.set(xlabel="utterances heard before the one classified", title=f"(c) {mix}", xscale="symlog")
        axis.grid(alpha=0.3)
        axis.set_ylabel("accuracy (%)")
    for axis in axes.flat[len(mixes) :]:
        axis.set_visible(False)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_calibration(calibration: dict[str, Any], folder: Path) -> None:
    """reliability.png (accuracy against confidence per bin, before and after the temperature) and
    coverage.png (accuracy of the most confident predictions against the share kept)."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    for axis, key in zip(axes, ("before", "after"), strict=True):
        summary = calibration[key]
        bins = summary["reliability"]
        lows, accuracies = [b["low"] for b in bins], [b["accuracy"] for b in bins]
        width = bins[0]["high"] - bins[0]["low"]
        axis.bar(lows, accuracies, width=width, align="edge", edgecolor="black", alpha=0.7, label="accuracy per bin")
        axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        axis.plot([b["confidence"] for b in bins], accuracies, "o", color="C3", label="at the bin's mean confidence")
        title = "before (T = 1)" if key == "before" else f"after (T = {calibration['temperature']:.2f} at the mean)"
        axis.set(xlabel="confidence (top label)", title=f"{title}: ECE {summary['ece']:.3f}", xlim=(0, 1), ylim=(0, 1))
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "reliability.png", dpi=100)
    plt.close(figure)

    rows = calibration["coverage"]
    abstention = calibration["abstention"]
    figure, axis = plt.subplots(figsize=(6.5, 4))
    axis.plot([100 * r["coverage"] for r in rows], [100 * r["accuracy"] for r in rows], marker="o")
    axis.axvline(100 * (1 - abstention["share"]), color="grey", linestyle="--", label="default threshold")
    axis.set(
        xlabel="coverage: most confident predictions kept (%)",
        ylabel="accuracy (%)",
        title="accuracy against coverage, (b) out of fold",
    )
    axis.invert_xaxis()
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "coverage.png", dpi=100)
    plt.close(figure)


def windows(curve: list[float | None]) -> tuple[list[float], list[float]]:
    """The curve averaged over windows 0, 1, 2–3, 4–7, 8–15, …, at their middles: one position's
    accuracy rests on a few hundred clips, too few to read a trend from."""
    middles, means, start = [], [], 0
    while start < len(curve):
        end = max(1, 2 * start)
        values = [v for v in curve[start:end] if v is not None]
        if values:
            middles.append((start + min(end, len(curve)) - 1) / 2)
            means.append(sum(values) / len(values))
        start = end
    return middles, means


def mean_sd(score: dict[str, Any]) -> str:
    """An accuracy's mean ± sd over folds or seeds, in percent."""
    return f"{100 * score['mean']:.1f} ± {100 * score['sd']:.1f} %"


def table(rows: dict[str, dict[str, Any]]) -> str:
    """Every model under (a) and (b); the shipped recipe's variants under (c) too (whole streams)."""
    lines = [
        f"| model | (a) split, mean ± sd | (b) by actor, mean ± sd | {' | '.join(f'(c) {mix}' for mix in MIXES)} |",
        "|---|---|---|" + "---|" * len(MIXES),
    ]
    for name, row in rows.items():
        cells = [mean_sd(row[p]) if p in row else "—" for p in ("split", "actor")]
        stream = row.get("stream", {})
        cells += [percent(stream[mix]["overall"]) if mix in stream else "—" for mix in MIXES]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def stream_table(streams: dict[str, dict[str, Any]]) -> str:
    """Protocol (c) per recipe and mix: accuracy after n utterances heard, after all, over the whole stream."""
    heard = sorted({n for s in streams.values() for m in s.values() for n in m["heard"]}, key=int)
    lines = [
        f"| recipe | mix | {' | '.join(f'{n} heard' for n in heard)} | all heard | whole stream "
        "| whole stream, current included |",
        "|---|---|" + "---|" * (len(heard) + 3),
    ]
    for name, stream in streams.items():
        for mix, m in stream.items():
            cells = [percent(m["heard"].get(n)) for n in heard]
            cells += [percent(m["all"]), percent(m["overall"]), percent(m["overall_including_current"])]
            lines.append(f"| {name.split(' + ')[-1]} | {mix} | {' | '.join(cells)} |")
    return "\n".join(lines)


def horizon_table(rows: dict[str, dict[str, Any]]) -> str:
    """Whole-stream accuracy of each adapted variant per forgetting horizon and mix."""
    swept = {name: row["horizons"] for name, row in rows.items() if row.get("horizons")}
    mixes = [mix for mix in MIXES if any(mix in by_mix for h in swept.values() for by_mix in h.values())]
    lines = [f"| recipe | horizon | {' | '.join(mixes)} |", "|---|---|" + "---|" * len(mixes)]
    for name, horizons in swept.items():
        for horizon, by_mix in horizons.items():
            lines.append(f"| {name} | {horizon} | " + " | ".join(percent(by_mix.get(mix)) for mix in mixes) + " |")
    return "\n".join(lines)


def per_actor_table(streams: dict[str, dict[str, Any]], mix: str) -> str:
    """Protocol (c), whole streams of one mix, per held-out actor: does any voice lose by adaptation?"""
    names = [name for name, stream in streams.items() if mix in stream]
    actors = sorted({a for name in names for a in streams[name][mix]["per_actor"]}, key=int)
    lines = ["| actor | " + " | ".join(n for n in names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {a} | " + " | ".join(percent(streams[n][mix]["per_actor"][a]) for n in names) + " |" for a in actors]
    return "\n".join(lines)


def confidence_text(metrics: dict[str, Any]) -> str:
    """report.md's section on the calibration, the abstention threshold and the intensity head."""
    c, intensity = metrics["calibration"], metrics["intensity"]["protocol_b"]
    before, after, abstention = c["before"], c["after"], c["abstention"]
    rows = "\n".join(
        f"| {100 * r['coverage']:.0f} % | {percent(r['accuracy'])} | {r['min_confidence']:.3f} |" for r in c["coverage"]
    )
    figures = "\n".join(
        f"| {name} | {s['ece']:.3f} | {s['nll']:.3f} | {percent(s['mean_confidence'])} | {percent(s['accuracy'])} |"
        for name, s in (("before (T = 1)", before), (f"after (T = {c['temperature']:.3f} at the mean)", after))
    )
    covariates = c.get("covariates")
    weights = (
        ", ".join(f"{name} {w:+.2f}" for name, w in zip(covariates["features"], covariates["weights"], strict=True))
        if covariates
        else "none"
    )
    rooms = "\n".join(
        f"| {room} | {m['predictions']} | {m['before']:.3f} | {m['constant']:.3f} | {m['after']:.3f} "
        f"| {m['mean_temperature']:.2f} | {percent(m['abstained'])} | {percent(m['accuracy_all'])} → "
        f"{percent(m['accuracy_kept'])} |"
        for room, m in c.get("rooms", {}).items()
    )
    streamed = "\n".join(
        f"| {mix} | {m['before']:.3f} → {m['after']:.3f} | {percent(m['abstained'])} "
        f"| {percent(m['accuracy_all'])} → {percent(m['accuracy_kept'])} | {percent(m.get('unlabelled_abstained'))} |"
        for mix, m in c["streamed"].items()
    )
    a, auc = intensity["accuracy"], intensity["roc_auc"]
    emotional = intensity.get("roc_auc_without_neutral")
    without_neutral = f", {emotional['mean']:.3f} ± {emotional['sd']:.3f} without neutral" if emotional else ""
    return f"""## Calibration, abstention and intensity

Fitted on the {c["n_predictions"]} {c["fitted_on"]}. Temperature scaling: the output logits divided
by T, the top label never changes; T = {c["temperature"]:.3f} · exp(Σ wᵢ zᵢ) of the utterance's standardised
raw voice statistics zᵢ, fitted by minimising the negative log-likelihood (weights per standard
deviation: {weights}; one T fitted on the same predictions: {c["constant_temperature"]:.3f}).
Expected calibration error (ECE): top label, {c["ece_bins"]} equal-width confidence bins.

| probabilities | ECE | NLL | mean confidence | accuracy |
|---|---|---|---|---|
{figures}

![reliability before and after](reliability.png)

The check as a device meets them: protocol (c)'s predictions of the same fits (each utterance
classified with the statistics of those heard before it, whole streams), per mix; the last column:
the share of clips of an emotion the model has no label for (neutral, for the seed's four) that
fall below the threshold, i.e. come out uncertain:

| mix | ECE before → after | below `min_confidence` | accuracy: all → kept | unlabelled speech below it |
|---|---|---|---|---|
{streamed}

In the rooms of protocol (d) and through the microphones of (e) (every utterance that overlaps a
clip, as the same fits classified it; (e) is not fitted on): ECE of the network's probabilities, with
one temperature, and with the covariates; the mean T; the share below `min_confidence`:

| room | utterances | ECE before | one T | with covariates | mean T | below `min_confidence` | accuracy: all → kept |
|---|---|---|---|---|---|---|---|
{rooms}

**Abstention**: `min_confidence` {abstention["min_confidence"]:.3f}, the calibrated confidence below which
{100 * abstention["share"]:.0f} % of these predictions fall ({percent(abstention["abstained"])} of them
abstain). The kept predictions are right {percent(abstention["accuracy_kept"])} of the time, all of
them {percent(abstention["accuracy_all"])}.

| coverage (most confident kept) | accuracy | lowest confidence kept |
|---|---|---|
{rows}

![accuracy against coverage](coverage.png)

**Intensity head** (P(strong), logistic regression on the network's standardised input), protocol (b),
per fold mean ± sd: accuracy {mean_sd(a)}, ROC AUC {auc["mean"]:.3f} ±
{auc["sd"]:.3f}{without_neutral} ({percent(intensity["strong_share"])} of the rows are strong);
{metrics["intensity"]["neutral"]}.
"""


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
    shipped = metrics["shipped_features"]
    voice_text = ", then the pitch and voice-quality statistics" if shipped.get("voice") else ""
    search_lines = "\n".join(
        f"- **{name}**: best {s['best_params']} at {100 * s['best_score']:.1f} % (actor folds)"
        for name, s in searches.items()
    )
    streams = {name: row["stream"] for name, row in rows.items() if "stream" in row}
    adaptation = metrics["adaptation"]
    t = metrics["timings"]
    actor_tables = "\n\n".join(
        f"{mix}:\n\n{per_actor_table(streams, mix)}" for mix in MIXES if any(mix in s for s in streams.values())
    )
    text = f"""# Training report: {metrics["name"]}

Emotions: {", ".join(metrics["labels"])}; {metrics["n_clips"]} clips from {metrics["n_actors"]} actors,
{metrics["features"]["sample_rate"]} Hz. Protocol {PROTOCOLS["split"]} over seeds {metrics["seeds"]};
protocol {PROTOCOLS["actor"]}; protocol {PROTOCOLS["stream"]}.

{table(rows)}

"ours": {shipped["n_features"]} features, scaled, clips cut to the span the daemon's
segmenter hands over, speed-perturbed training copies ({", ".join(map(str, metrics["augmentation_speeds"]))}); the
same hyperparameters, searched without adaptation, in every variant.
**Shipped: {metrics["shipped"].removeprefix("shipped: ")}.** Hyperparameters were selected by protocol (b); the
recipe by protocols (c) and (d) together, each variant with one network: the mean of (c)'s whole streams
over its mixes and (d)'s accuracy over its rooms. Both searches are staged successive halving over
training epochs under protocol (b)'s folds (architecture, then training settings; a third of the
candidates go on with three times the epochs):

{search_lines}

Shipped model features: {shipped["n_features"]} values
(statistics {shipped["statistics"]}, mel scale {shipped["mel_scale"]}{voice_text}).

## Protocol (c): a device hearing one voice

For each held-out actor of protocol (b)'s folds, that actor's clips in {adaptation["orders"]} random
orders, through a fresh adapter (prior weight {adaptation["weight"]:g} utterances, horizon
{adaptation["horizon"]:g}, variance floor {adaptation["var_floor"]:g} × the prior's). Each clip is
classified with the statistics of the clips heard before it, blended with the prior (0 heard: the
prior alone), then added to them. **balanced**: all of the actor's clips of the model's emotions;
**neutral-heavy**: as many {" or ".join(QUIET)} clips as others, drawn at random; clips of an
emotion the model does not have (neutral for the seed's four) are heard by the adapter but not
scored. **{MOODS}**: the balanced clips in runs of one emotion, the emotions in random order (the
statistics lean towards the mood of the moment). **{AFTER_ANOTHER}**: a change of voice: the
balanced stream of another actor of the same fold first (heard, not scored), then this actor's;
"n heard" counts this actor's clips.
"all heard": every clip classified with the whole stream's statistics (two passes over the
stream); "current included": each clip classified after adding it.
Test clips under (a) and (b) are standardised by all of their actor's clips.

{stream_table(streams)}

![accuracy against utterances heard](streams.png)

The forgetting horizon: the same fitted models, the streams played with other horizons (whole
streams; the shipped horizon is {adaptation["horizon"]:g}). After a change of voice, the new voice holds
half of the statistics' weight after about 0.69 × horizon utterances, 90 % after 2.3 × horizon.

{horizon_table(rows)}

Per held-out actor, whole streams:

{actor_tables}

{room_section(metrics)}

{confidence_text(metrics)}
## Loss curves

![loss curves](loss_curves.png)

## Confusion matrices of the shipped model (row-normalised)

![split](confusion_split.png) ![actor](confusion_actor.png)

Total {metrics["timings"]["total_s"]:.0f} s with {metrics["jobs"]} jobs{where(metrics.get("dask"))}: feature
extraction {t["features_s"]:.1f} s, protocol (d)'s streams {t["room_streams_s"]:.1f} s, the search on the seed
features {t["seed_search_s"]:.0f} s, the search
for ours {t["shipped_search_s"]:.0f} s, the protocols' other fits and the final model {t["protocols_s"]:.0f} s,
plots and the heads {t["final_s"]:.0f} s (wall clock; load average {t["load_average"]:.1f} at the end).
"""
    (folder / "report.md").write_text(text)
