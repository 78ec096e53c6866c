"""Protocols (d) and (e) and the room copies in the report: the manifest's record, tables and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .room_augment import POOL_CLIPS
from .room_protocol import GAP_S
from .rooms import AUGMENT_RT60_S, AUGMENT_SNR_DB, BABBLE_VOICES, PROTOCOL_MICROPHONES, PROTOCOL_ROOMS


def rooms_metrics(copies: int) -> dict[str, Any]:
    """How the training rows heard rooms (the manifest's ``training_data.augmentation.rooms``)."""
    return {
        "copies_per_clip": copies,
        "rooms": "per actor and copy one of: pink noise, babble, reverberation, reverberation and noise",
        "snr_db": list(AUGMENT_SNR_DB),
        "snr_against": "the voice's active level (all the actor's clips), not each clip's",
        "rt60_s": list(AUGMENT_RT60_S),
        "babble": f"{BABBLE_VOICES} voices from {POOL_CLIPS} clips of the other actors of the clip's by-actor fold",
    }


def percent(value: float | None) -> str:
    """A share as the reports write it; no value as a dash."""
    return "—" if value is None else f"{100 * value:.1f} %"


def room_table(rows: dict[str, dict[str, Any]], section: str = "rooms") -> str:
    """Protocol (d) (``section`` "microphones": (e)) per recipe and room: accuracy over clips, then the
    segmentation figures."""
    rooms = [room.name for room in (PROTOCOL_ROOMS if section == "rooms" else PROTOCOL_MICROPHONES)]
    lines = [f"| recipe | {' | '.join(rooms)} | mean |", "|---|" + "---|" * (len(rooms) + 1)]
    measured = {name: row[section] for name, row in rows.items() if row.get(section)}
    for name, by_room in measured.items():
        for key, how in (("accuracy", ""), ("accuracy_all_heard", ", all heard")):
            cells = [percent(by_room[room][key]) if room in by_room else "—" for room in rooms]
            mean = np.mean([r[key] for r in by_room.values()])
            lines.append(f"| {name}{how} | {' | '.join(cells)} | {percent(float(mean))} |")
    if not measured:
        return ""
    segmentation = next(iter(measured.values()))  # the same utterances whatever the model
    lines += [
        "",
        "| room | utterances per clip | found once | missed | spurious per clip | cut at max |",
        "|---|---|---|---|---|---|",
    ]
    for room in rooms:
        if room in segmentation:
            r = segmentation[room]
            lines.append(
                f"| {room} | {r['utterances_per_clip']:.2f} | {percent(r['found_once'])} | {percent(r['missed'])} "
                f"| {r['spurious_per_clip']:.2f} | {percent(r['cut_share'])} |"
            )
    return "\n".join(lines)


def plot_rooms(rooms: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """Protocol (d): accuracy per room, one bar per recipe."""
    names = [room.name for room in PROTOCOL_ROOMS]
    figure, axes = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(1, len(rooms))
    for i, (recipe, by_room) in enumerate(rooms.items()):
        heights = [100 * by_room[n]["accuracy"] if n in by_room else 0.0 for n in names]
        axes.bar(np.arange(len(names)) + i * width - 0.4 + width / 2, heights, width, label=recipe)
    axes.set_xticks(range(len(names)), names, rotation=15)
    axes.set(ylabel="accuracy over clips (%)", ylim=(0, 100), title="protocol (d): held-out voices streamed in rooms")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def room_section(metrics: dict[str, Any]) -> str:
    """The report's protocol (d) section."""
    copies = metrics["rooms"]["copies_per_clip"]
    return f"""## Protocol (d): the room

For each held-out actor of protocol (b)'s folds, that actor's clips in one random order, {GAP_S:g} s of
silence between clips, heard in each room: clean, pink noise at 20 and 10 dB, babble of {BABBLE_VOICES}
voices (other held-out actors of the fold) at 15 and 10 dB, reverberation (RT60 0.5 s). The stream goes
through the daemon's segmenter (default settings) and, in the adapted recipes, the adapter (each
utterance with the statistics of those before it); each utterance is matched to the clip whose speech
it overlaps most, and a clip is scored by the utterance overlapping it most (none: wrong); "all
heard": every utterance classified with the whole stream's statistics (two passes). The same
fitted fold models as protocol (c). Training rows: {copies} room cop{"y" if copies == 1 else "ies"} per clip
(SNR {AUGMENT_SNR_DB[0]:g}–{AUGMENT_SNR_DB[1]:g} dB against the voice's level, not each clip's;
RT60 {AUGMENT_RT60_S[0]:g}–{AUGMENT_RT60_S[1]:g} s; `--rooms`). The recipe is chosen by protocols (c) and (d)
together (the mean of their means).

{room_table(metrics["models"])}

![protocol (d)](rooms.png)

## Protocol (e): other microphones

The same held-out voices, streams and fitted models as protocol (d), in a quiet room heard through
microphones other than RAVDESS's studio one (a zero-phase magnitude response: second-order band
edges, the level kept): {", ".join(room.name for room in PROTOCOL_MICROPHONES)}. Measured, not chosen by.

{room_table(metrics["models"], "microphones")}
"""
