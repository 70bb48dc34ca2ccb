"""What the robustness stage measured, apart from how it measured it (curves.py), so that writing and reporting
the results (report.py, the report stage) need not import the model, the data modules or the training code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Curves:
    """The clean metric, the metric per level of each curve (levels[0] = 0: the clean value) and with each
    modality removed, over `samples` test records."""

    clean: float
    levels: list[float]
    curves: dict[str, list[float]]
    without: dict[str, float]
    samples: int
