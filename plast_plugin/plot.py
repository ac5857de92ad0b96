"""The picture a user checks before spending GPU hours: per-layer overlap with the pivot for
each language against the pivot-vs-pivot noise floor, and MSD with the selected layers marked."""

from __future__ import annotations

import math
import os

from plast_plugin.errors import PlastError
from plast_plugin.core.selection_file import SelectionFile


def plot_selection(selection: SelectionFile, path: str | os.PathLike) -> None:
    from matplotlib.figure import Figure  # no pyplot: no backend to switch, no figure to close

    records = selection.layers
    if not records:
        raise PlastError("the selection has no per-layer statistics to plot")
    layers = [r.layer for r in records]
    languages = list(records[0].overlap)
    pivot = selection.data.get("pivot", "en")
    chosen = set(selection.selected_layers)

    fig = Figure(figsize=(max(8, 0.32 * len(layers) + 4), 7))
    top, bottom = fig.subplots(2, 1, sharex=True)
    for axis in (top, bottom):
        for layer in chosen:
            axis.axvspan(layer - 0.5, layer + 0.5, color="#ffd54f", alpha=0.35, lw=0)
    for lang in languages:
        top.plot(layers, [r.overlap[lang] for r in records], marker="o", ms=3, label=f"{lang} vs {pivot}")
    top.plot(layers, [r.noise_overlap for r in records], "k--", lw=1.5, label=f"{pivot} vs {pivot} (noise floor)")
    top.set_ylabel("overlap of activated neurons")
    top.set_ylim(0, 1.02)
    top.legend(fontsize=8, ncol=4, loc="lower right")
    top.set_title(
        f"PLAST layer statistics: {selection.model.name_or_path or selection.model.architecture} "
        f"- selected {selection.selected_layers} (rule {selection.rule}, shaded)"
    )
    # Undefined MSD (NaN; null in a file) draws no bar and stays out of the mean.
    msd = [r.msd for r in records]
    defined = [v for v in msd if not math.isnan(v)]
    mean_msd = sum(defined) / len(defined) if defined else float("nan")
    bars = bottom.bar(layers, msd, color=["#e65100" if i in chosen else "#90a4ae" for i in layers], label="MSD")
    # Above the mean but not chosen (e.g. deep layers outside the shallow block): hatched, so the
    # user sees what the rule left out rather than only what it took.
    left_out = False
    for layer, bar in zip(layers, bars):
        if layer not in chosen and msd[layer] > mean_msd:
            bar.set_hatch("//")
            bar.set_edgecolor("#e65100")
            left_out = True

    bottom.plot(layers, [r.noise_msd for r in records], "k--", lw=1.2, label="noise MSD")
    bottom.axhline(mean_msd, color="#1565c0", lw=1, label="mean MSD")
    bottom.set_ylabel(f"MSD ({selection.options.get('statistic', 'rate')})")
    bottom.set_xlabel("decoder layer")
    handles, _ = bottom.get_legend_handles_labels()
    if left_out:
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor="#90a4ae", edgecolor="#e65100", hatch="//", label="above mean, not selected"))
    bottom.legend(handles=handles, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
