"""Read what the report shows from the MLflow store: the compare step's tables, then per run its training curves,
per-class test F1 and robustness curves, and the best run's attention figures (artifact folder `explain/`).

Everything is read once here, so the figures and the rendering never talk to MLflow."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mlflow.tracking import MlflowClient

from fusion.robustness.tracking import LEVEL_KEY, curve_key, latest_per_step
from fusion.tasks import VOTE_VIEWS
from fusion.tracking.compare import F1_KEY, WITHOUT, Comparison, Row, TaskTable, compare_runs
from fusion.tracking.store import absolute_tracking_uri

EPOCH_KEY = "epoch"  # Lightning logs the epoch with every metric batch, at the same step
PER_CLASS_PREFIX = "test/f1_"  # test/f1_<class> (fusion/tasks/objectives.py)
# the averages, and each of them per view of a heads' vote (test/f1_macro_vote): no classes either
NOT_A_CLASS = {key + suffix for key in (F1_KEY, "test/f1_micro") for suffix in ("", *(f"_{v}" for v in VOTE_VIEWS))}
MODALITY_HEAD = "_head_"  # the per-modality heads' metrics, <metric>_head_<modality>, are no classes
ALL_CURVE = "all"  # every modality perturbed at once (fusion/robustness/curves.py ALL)
MODEL_DIR = "model"  # the run's logged MLflow model (fusion.serving)
EXPLAIN_DIR = "explain"  # the attention figures of a tested run (fusion/explain/)
EXPLAIN_SUMMARY = "summary.json"
CONTRIBUTION = "contribution.png"


@dataclass
class RunDetails:
    """One row's histories: training curves as (epoch, value) points, per-class test F1, robustness curves."""

    row: Row
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    per_class: dict[str, float] = field(default_factory=dict)
    levels: list[float] = field(default_factory=list)
    robustness: dict[str, list[float]] = field(default_factory=dict)  # curve name -> one value per level

    @property
    def label(self) -> str:
        return f"{self.row.modality} · {self.row.fusion} ({self.row.run_id[:8]})"


@dataclass
class SampleFigures:
    """One explained sample: a caption (id, label, prediction) and its figures."""

    caption: str
    images: list[Path]


@dataclass
class Explanation:
    """The best run's `explain/` folder, downloaded; `note` says why it is empty where it is."""

    run_id: str
    contribution: Path | None = None
    samples: list[SampleFigures] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)  # artifacts that are not pictures (text_attention.html)
    note: str = ""


@dataclass
class TaskReport:
    table: TaskTable
    curve_keys: list[str]
    runs: dict[str, RunDetails]  # run id -> details, for every row of the table
    explanation: Explanation

    @property
    def best(self) -> RunDetails:
        return self.runs[self.table.rows[0].run_id]

    def details(self) -> list[RunDetails]:
        """Every row's details, best first."""
        return [self.runs[row.run_id] for row in self.table.rows]


@dataclass
class ReportData:
    comparison: Comparison
    tasks: list[TaskReport]


def collect(
    tracking_uri: str,
    experiment_name: str,
    tasks: Sequence[str],
    latest_only: bool,
    curve_keys: Sequence[str],
    max_curve_runs: int,
    download_dir: Path,
) -> ReportData:
    """The compare tables (CompareError where there is nothing to report), then each row's details; the curves of
    the best `max_curve_runs` rows per task only. The best run's `explain/` goes to `download_dir`."""
    comparison = compare_runs(tracking_uri, experiment_name, tasks, latest_only)
    client = MlflowClient(tracking_uri=absolute_tracking_uri(tracking_uri))
    reports = []
    for table in comparison.tables:
        keys = list(dict.fromkeys([*curve_keys, validation_key(table.metric)]))
        runs = {}
        for rank, row in enumerate(table.rows):
            metrics = client.get_run(row.run_id).data.metrics
            details = RunDetails(row, per_class=per_class_f1(metrics))
            if rank < max_curve_runs:
                details.curves = training_curves(client, row.run_id, [k for k in keys if k in metrics])
            details.levels, details.robustness = robustness_curves(client, row.run_id, row.metric, metrics)
            runs[row.run_id] = details
        folder = download_dir / table.task
        reports.append(TaskReport(table, keys, runs, explanation(client, table.rows[0].run_id, folder)))
    return ReportData(comparison, reports)


def validation_key(metric: str) -> str:
    """The validation curve of a task's main test metric: test/acc -> val/acc."""
    return "val/" + metric.split("/", 1)[-1]


def training_curves(client: MlflowClient, run_id: str, keys: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
    """(epoch, value) per logged point of each key, the latest value where a step was logged again (a resume).
    x is the 1-based epoch; a run without the `epoch` metric counts its points instead."""
    epochs = latest_per_step(client, run_id, EPOCH_KEY)
    curves = {}
    for key in keys:
        values = latest_per_step(client, run_id, key)
        steps = sorted(values)
        curves[key] = [
            (epochs[step] + 1 if step in epochs else index + 1, values[step]) for index, step in enumerate(steps)
        ]
    return curves


def per_class_f1(metrics: dict[str, float]) -> dict[str, float]:
    """test/f1_<class> -> {class: F1}, in class order as logged (sorted by name)."""
    return {
        key[len(PER_CLASS_PREFIX) :]: value
        for key, value in sorted(metrics.items())
        if key.startswith(PER_CLASS_PREFIX)
        and key not in NOT_A_CLASS
        and WITHOUT not in key
        and MODALITY_HEAD not in key
    }


def robustness_curves(
    client: MlflowClient, run_id: str, metric: str, metrics: dict[str, float]
) -> tuple[list[float], dict[str, list[float]]]:
    """The noise levels and every `robustness/<metric>_<curve>` of the run (empty where the robustness stage never
    ran on it); a curve with fewer points than levels is left out."""
    if LEVEL_KEY not in metrics:
        return [], {}
    by_step = latest_per_step(client, run_id, LEVEL_KEY)
    levels = [by_step[step] for step in sorted(by_step)]
    prefix = curve_key(metric, "")
    curves = {}
    for key in sorted(k for k in metrics if k.startswith(prefix) and k != LEVEL_KEY):
        values = latest_per_step(client, run_id, key)
        if all(step in values for step in range(len(levels))):
            curves[key[len(prefix) :]] = [values[step] for step in range(len(levels))]
    if ALL_CURVE in curves:  # the all-at-once curve last, as the robustness stage draws it
        curves[ALL_CURVE] = curves.pop(ALL_CURVE)
    return levels, curves


def explanation(client: MlflowClient, run_id: str, folder: Path) -> Explanation:
    """Download the run's `explain/` and group its PNGs per sample, as its summary.json lists them (`files`:
    sample id -> paths relative to explain/); PNGs it does not list are grouped by their folder."""
    if not client.list_artifacts(run_id, EXPLAIN_DIR):
        explain = (
            f"explain some of its test samples with `python -m fusion.explain run_id={run_id} sample_id=<record id>`"
            if client.list_artifacts(run_id, MODEL_DIR)
            else "retrain it (it has no logged model to explain either)"
        )
        return Explanation(
            run_id,
            note=f"the best run ({run_id[:8]}) has no {EXPLAIN_DIR}/ artifact folder: it was "
            f"tested before attention figures were logged (or with explain.enabled=false); "
            f"{explain}, then run the report again.",
        )
    folder.mkdir(parents=True, exist_ok=True)
    root = Path(client.download_artifacts(run_id, EXPLAIN_DIR, str(folder)))
    summary_file = root / EXPLAIN_SUMMARY
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else {}
    pictures = sorted(p for p in root.rglob("*.png") if p.name != CONTRIBUTION or p.parent != root)
    listed = set()
    samples = []
    files = summary.get("files") or {}
    for sample in summary.get("samples") or [{"id": sample_id} for sample_id in files]:
        images = [root / rel for rel in files.get(str(sample.get("id")), []) if str(rel).endswith(".png")]
        images = [image for image in images if image.is_file()]
        listed.update(images)
        if images:
            samples.append(SampleFigures(_sample_caption(sample), images))
    leftover: dict[Path, list[Path]] = {}
    for picture in pictures:
        if picture not in listed:
            leftover.setdefault(picture.parent, []).append(picture)
    samples += [
        SampleFigures(f"`{parent.relative_to(root.parent).as_posix()}/`", images) for parent, images in leftover.items()
    ]
    contribution = root / CONTRIBUTION
    extras = sorted(p.relative_to(root.parent).as_posix() for p in root.rglob("*") if p.suffix == ".html")
    note = "" if samples or contribution.is_file() else f"the {EXPLAIN_DIR}/ folder of {run_id[:8]} holds no PNG."
    return Explanation(run_id, contribution if contribution.is_file() else None, samples, extras, note)


def _sample_caption(sample: dict) -> str:
    parts = [f"sample `{sample.get('id')}`"]
    for key in ("label", "prediction"):
        if sample.get(key) is not None:
            parts.append(f"{key} {sample[key]}")
    return ", ".join(parts)
