"""The robustness stage's files: curves.csv (`dvc plots`: x = level, one column per curve), robustness.json
(`dvc metrics`) and robustness.png (the curves, the reference's dashed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Mapping, Sequence

from fusion.robustness.results import Curves
from fusion.robustness.tracking import Reference
from fusion.tracking.figures import plt, save_figure  # pyplot on the Agg backend

DECIMALS = 6  # of the metric values and scores in curves.csv and robustness.json (float32 metrics)
LEVEL_AXIS = "noise level (0 = clean, 1 = strongest)"


def write_curves_csv(path: Path, curves: Curves, columns: Sequence[str]) -> Path:
    """level, then one column per name of `columns`, empty for a curve not measured (a modality the run does
    not use): the columns stay those dvc.yaml's plot names, and a chart leaves the empty ones out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(["level", *columns])
        for step, level in enumerate(curves.levels):
            writer.writerow(
                [
                    level,
                    *(round(curves.curves[name][step], DECIMALS) if name in curves.curves else "" for name in columns),
                ]
            )
    return path


def summary(
    curves: Curves,
    metric: str,
    mode: str,
    relative: Mapping[str, float],
    effective: Mapping[str, float] | None,
    reference: Reference,
    run: Mapping[str, str],
) -> dict:
    """robustness.json: the clean metric, the scores per curve, the metric without each modality, the reference."""
    higher = mode == "max"
    return {
        "metric": metric,
        "clean": round(curves.clean, DECIMALS),
        "samples": curves.samples,
        "relative": _rounded(relative),
        **({"effective": _rounded(effective)} if effective is not None else {}),
        "without": _rounded(curves.without),
        "reference": reference.summary(),
        "higher_is_better": {"metric": higher, "relative": higher, "effective": True},
        **run,
    }


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {name: round(value, DECIMALS) for name, value in values.items()}


def write_json(path: Path, content: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return path


def plot_curves(
    path: Path,
    levels: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    reference: Mapping[str, Sequence[float]] | None,
    metric: str,
    title: str,
    reference_label: str,
) -> Path:
    """One solid line per curve; the reference run's curve of the same name dashed in the same colour."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for index, (name, values) in enumerate(curves.items()):
        colour = f"C{index % 10}"
        ax.plot(levels, values, marker="o", markersize=3, color=colour, label=name)
        if reference and name in reference:
            ax.plot(
                levels, reference[name], linestyle="--", linewidth=1, color=colour, label=f"{name} ({reference_label})"
            )
    ax.set_xlabel(LEVEL_AXIS)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return save_figure(fig, path)
