"""The report's figures, drawn from collected data (no MLflow here): training curves, per-class F1 heat map,
robustness curves. Each returns the PNG's path, or None where there is nothing to draw."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fusion.report.collect import ALL_CURVE, RunDetails
from fusion.robustness.report import plot_curves
from fusion.tracking.figures import plt, save_figure

PANEL_WIDTH, PANEL_HEIGHT = 4.2, 3.3  # inches per curve panel
LEGEND_ROW_HEIGHT = 0.22  # inches per legend row under the panels


def plot_training_curves(runs: Sequence[RunDetails], keys: Sequence[str], path: Path, title: str) -> Path | None:
    """One panel per curve key, one line per run (same colour in every panel), x = epoch; a shared legend below."""
    keys = [key for key in keys if any(run.curves.get(key) for run in runs)]
    drawn = [run for run in runs if any(run.curves.get(key) for key in keys)]
    if not keys:
        return None
    legend_rows = (len(drawn) + 1) // 2
    fig, axes = plt.subplots(
        1,
        len(keys),
        figsize=(PANEL_WIDTH * len(keys), PANEL_HEIGHT + LEGEND_ROW_HEIGHT * legend_rows + 0.6),
        squeeze=False,
    )
    for ax, key in zip(axes[0], keys, strict=True):
        for index, run in enumerate(drawn):
            points = run.curves.get(key) or []
            if points:
                x, y = zip(*points, strict=True)
                ax.plot(
                    x,
                    y,
                    marker="o",
                    markersize=3,
                    color=f"C{index % 10}",
                    label=run.label,
                    linestyle="-" if index < 10 else "--",
                )
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes[0, 1:]:  # a run missing from the first panel still gets its legend entry
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.suptitle(title)
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, (LEGEND_ROW_HEIGHT * legend_rows + 0.2) / fig.get_figheight(), 1, 1))
    return _save(fig, path)


def plot_per_class(runs: Sequence[RunDetails], path: Path, title: str) -> Path | None:
    """Heat map runs (rows, best first) × classes (columns) of the test F1, the value in every cell."""
    runs = [run for run in runs if run.per_class]
    if not runs:
        return None
    classes = sorted({name for run in runs for name in run.per_class})
    values = np.array([[run.per_class.get(name, np.nan) for name in classes] for run in runs])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(classes) + 4.5), max(2.2, 0.45 * len(runs) + 1.6)))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="test F1")
    ax.set_xticks(np.arange(len(classes)), labels=classes, rotation=45, ha="right")
    ax.set_yticks(np.arange(len(runs)), labels=[run.label for run in runs])
    ax.set_xlabel("class")
    ax.set_title(title)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isnan(values[i, j]):
                ax.text(
                    j,
                    i,
                    f"{values[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if values[i, j] > 0.6 else "white",
                )
    return save_figure(fig, path)


def plot_robustness_all(
    runs: Sequence[RunDetails], metric: str, path: Path, title: str
) -> tuple[Path | None, list[RunDetails]]:
    """The `all` curve (every modality perturbed at once) of each run that has one, metric against noise level, for
    the runs measured at the same levels as the first (best) one; returns the PNG and the runs at other levels."""
    runs = [run for run in runs if ALL_CURVE in run.robustness]
    if not runs:
        return None, []
    same = [run for run in runs if run.levels == runs[0].levels]
    curves = {run.label: run.robustness[ALL_CURVE] for run in same}
    return plot_curves(path, runs[0].levels, curves, None, metric, title, ""), [r for r in runs if r not in same]


def plot_robustness_run(run: RunDetails, metric: str, path: Path, title: str) -> Path | None:
    """Every perturbation curve of one run (the robustness stage's own figure, redrawn from the store)."""
    if not run.robustness:
        return None
    return plot_curves(path, run.levels, run.robustness, None, metric, title, "")


def _save(fig, path: Path) -> Path:
    """Like fusion.tracking.figures.save_figure, keeping a layout already fixed by the caller."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
