"""The report's content as blocks (fusion/report/render.py): summary, then per task the runs table, training
curves, per-class F1, robustness curves and the best run's attention figures. Figures are drawn into `files_dir`."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from fusion.report import figures
from fusion.report.collect import ALL_CURVE, ReportData, TaskReport
from fusion.report.render import Block, Figure, Gallery, Heading, Paragraph, Table
from fusion.tracking.compare.render import gain_note, numeric_columns, table_cells

NONE_LOGGED = "none logged"


def build(data: ReportData, files_dir: Path, max_curve_runs: int) -> list[Block]:
    comparison = data.comparison
    blocks: list[Block] = [
        Heading(1, f"Report of experiment `{comparison.experiment_name}`"),
        Paragraph(
            f"MLflow store `{comparison.tracking_uri}`, experiment id {comparison.experiment_id}; generated "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
            f"{sum(len(t.table.rows) for t in data.tasks)} runs in {len(data.tasks)} task(s)."
        ),
        *_summary(data),
    ]
    for task in data.tasks:
        blocks += _task(task, files_dir, max_curve_runs)
    return blocks


def _date(milliseconds: int) -> str:
    return (
        datetime.fromtimestamp(milliseconds / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M") if milliseconds else ""
    )


def _summary(data: ReportData) -> list[Block]:
    header = ["task", "main metric", "best run", "value", "fusion gain", "data version", "commit", "date (UTC)", "runs"]
    rows = []
    for task in data.tasks:
        best, table = task.best.row, task.table
        better = "higher" if table.mode == "max" else "lower"
        rows.append(
            [
                f"`{table.task}`",
                f"{table.metric} ({better} is better)",
                f"{best.modality} · {best.fusion} (`{best.run_id[:8]}`)",
                f"{best.value:.3f}",
                "" if best.gain is None else f"{best.gain:+.3f}",
                f"`{best.data_version}`" if best.data_version else "",
                best.git_commit[:7] + ("-dirty" if best.git_dirty else ""),
                _date(best.start_time),
                str(len(table.rows)),
            ]
        )
    blocks: list[Block] = [Heading(2, "Summary", "summary"), Table(header, rows, {"value", "fusion gain", "runs"})]
    skipped = data.comparison.skipped
    if skipped:
        reasons = "; ".join(f"{why}: " + ", ".join(f"`{i[:8]}`" for i in ids) for why, ids in skipped.items())
        blocks.append(Paragraph(f"Left out (not finished, or no test metric): {reasons}.", note=True))
    return blocks


def _task(task: TaskReport, files_dir: Path, max_curve_runs: int) -> list[Block]:
    table, name = task.table, task.table.task
    better = "higher" if table.mode == "max" else "lower"
    header, cells = table_cells(table)
    numeric = numeric_columns(table)
    blocks: list[Block] = [
        Heading(2, f"Task `{name}`: {table.metric} ({better} is better)", f"task-{name}"),
        Heading(3, "Runs", f"{name}-runs"),
        Paragraph(
            f"Best first (highlighted). `{table.metric}` is the main test metric; `worst w/o one modality`: "
            f"the metric with the modality whose removal hurts most left out at test."
        ),
        Table(
            header,
            [
                [f"`{c}`" if h in ("run", "commit") and c else c for h, c in zip(header, row, strict=True)]
                for row in cells
            ],
            numeric,
            best_first=True,
        ),
        Paragraph(gain_note(table)),
    ]
    if table.superseded:
        pairs = ", ".join(f"`{old.run_id[:8]}` → `{new.run_id[:8]}`" for old, new in table.superseded)
        blocks.append(
            Paragraph(f"Older runs of the same modality and fusion left out (`--all-runs` keeps them): {pairs}.")
        )
    return (
        blocks
        + _curves(task, files_dir, max_curve_runs)
        + _per_class(task, files_dir)
        + _robustness(task, files_dir)
        + _attention(task)
    )


def _curves(task: TaskReport, files_dir: Path, max_curve_runs: int) -> list[Block]:
    name = task.table.task
    runs = task.details()
    shown = runs[:max_curve_runs]
    path = figures.plot_training_curves(
        shown, task.curve_keys, files_dir / f"{name}_training_curves.png", f"task {name}: training curves"
    )
    blocks: list[Block] = [Heading(3, "Training curves", f"{name}-curves")]
    if path is None:
        return blocks + [Paragraph(f"Training curves ({', '.join(task.curve_keys)}): {NONE_LOGGED}.", note=True)]
    capped = (
        f" The best {max_curve_runs} of {len(runs)} runs are drawn (report.max_curve_runs)."
        if len(runs) > max_curve_runs
        else ""
    )
    return blocks + [Figure(path, f"{', '.join(task.curve_keys)} per epoch, one line per run.{capped}")]


def _per_class(task: TaskReport, files_dir: Path) -> list[Block]:
    name = task.table.task
    blocks: list[Block] = [Heading(3, "Per-class F1", f"{name}-per-class")]
    if name == "regression":
        return blocks + [Paragraph("Not applicable: a regression task has no classes.", note=True)]
    path = figures.plot_per_class(
        task.details(), files_dir / f"{name}_per_class_f1.png", f"task {name}: test F1 per class"
    )
    if path is None:
        return blocks + [Paragraph(f"Per-class test F1 (`test/f1_<class>`): {NONE_LOGGED}.", note=True)]
    return blocks + [Figure(path, "Test F1 of each class (columns) for each run (rows, best first).")]


def _robustness(task: TaskReport, files_dir: Path) -> list[Block]:
    name, metric = task.table.task, task.table.metric
    blocks: list[Block] = [Heading(3, "Robustness", f"{name}-robustness")]
    path, other_levels = figures.plot_robustness_all(
        task.details(),
        metric,
        files_dir / f"{name}_robustness_all.png",
        f"task {name}: every modality perturbed at once",
    )
    if path is None:
        return blocks + [
            Paragraph(
                f"Robustness curves: {NONE_LOGGED} (run the `robustness` stage: "
                f"`dvc repro robustness` or `python pipelines/robustness.py`).",
                note=True,
            )
        ]
    other = (
        ""
        if not other_levels
        else " Not drawn, measured at other noise levels: " + ", ".join(run.label for run in other_levels) + "."
    )
    blocks.append(
        Figure(
            path,
            f"`{metric}` against the noise level of the `{ALL_CURVE}` curve (every modality of "
            f"the run perturbed at once), per run that has one.{other}",
        )
    )
    best = next(run for run in task.details() if run.robustness)
    rank = task.table.rows.index(best.row) + 1
    path = figures.plot_robustness_run(
        best, metric, files_dir / f"{name}_robustness_best.png", f"{best.label}: every perturbation"
    )
    which = "the best run" if rank == 1 else f"the best run with robustness curves (rank {rank})"
    return blocks + [Figure(path, f"Each perturbation's curve of {which}, {best.label}.")]


def _attention(task: TaskReport) -> list[Block]:
    name, explained = task.table.task, task.explanation
    best = task.best
    blocks: list[Block] = [
        Heading(3, "Attention figures of the best run", f"{name}-attention"),
        Paragraph(f"Run {best.label}."),
    ]
    if explained.contribution is not None:
        blocks.append(
            Figure(
                explained.contribution,
                "Modality contributions: how much the prediction and the metric drop when each modality is removed.",
            )
        )
    for sample in explained.samples:
        blocks.append(Gallery(sample.caption, [Figure(image, f"`{image.name}`") for image in sample.images]))
    if explained.extras:
        blocks.append(
            Paragraph(
                "Also in the run's artifacts (open them from MLflow): "
                + ", ".join(f"`{extra}`" for extra in explained.extras)
                + "."
            )
        )
    if explained.note:
        blocks.append(Paragraph(explained.note, note=True))
    return blocks
