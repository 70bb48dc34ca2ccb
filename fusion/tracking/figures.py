"""Figures people look at: the confusion matrix with counts, class names and a colour bar; per-class
bars (multilabel F1); predicted against true values (regression)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str], path: str | Path, title: str) -> Path:
    """Row-normalised colours, raw counts in the cells; rows are true classes."""
    confusion = np.asarray(confusion)
    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.zeros_like(confusion, dtype=float), where=totals > 0)
    size = max(5.0, 0.55 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    for i in range(confusion.shape[0]):
        for j in range(confusion.shape[1]):
            ax.text(
                j,
                i,
                str(int(confusion[i, j])),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if normalised[i, j] > 0.5 else "black",
            )
    return save_figure(fig, path)


def plot_per_class(
    values: Sequence[float], class_names: Sequence[str], path: str | Path, title: str, xlabel: str = "F1"
) -> Path:
    """Horizontal bars, one per class (e.g. the test F1 of each label of a multilabel task)."""
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.4 * len(class_names) + 1)))
    positions = np.arange(len(class_names))
    ax.barh(positions, values, color="tab:blue")
    ax.set_yticks(positions, labels=class_names)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    for y, value in zip(positions, values, strict=True):
        ax.text(min(float(value), 0.9) + 0.01, y, f"{float(value):.2f}", va="center", ha="left", fontsize=8)
    return save_figure(fig, path)


def plot_scatter(actual: np.ndarray, predicted: np.ndarray, path: str | Path, title: str) -> Path:
    """Predicted against true values, with the identity line (a perfect model lies on it)."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(actual, predicted, s=12, alpha=0.6)
    both = np.concatenate([actual, predicted]) if actual.size else np.zeros(1)
    lo, hi = float(both.min()), float(both.max())
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1, label="y = x")
    ax.axhline(0.0, color="lightgrey", linewidth=0.8)
    ax.axvline(0.0, color="lightgrey", linewidth=0.8)
    ax.set_xlabel("true value")
    ax.set_ylabel("predicted value")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
