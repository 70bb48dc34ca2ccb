"""Writing a comparison: the Markdown tables (also the report's cells), the CSV and the bar chart; no MLflow
access here, so the report can reuse the cells and notes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fusion.tracking.compare.query import F1_KEY, Comparison, Row, TaskTable

CSV_COLUMNS = (
    "task",
    "metric",
    "mode",
    "rank",
    "modality",
    "fusion",
    "params_total",
    "params_trainable",
    "value",
    "f1_macro",
    "fusion_gain",
    "worst_without",
    "worst_without_modality",
    "relative_robustness_all",
    "effective_robustness_all",
    "epoch_seconds",
    "run_id",
    "git_commit",
    "git_dirty",
    "data_version",
    "baseline_run_id",
)


def _num(value: float | None, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)


def _count(value: float | None) -> str:
    return "" if value is None else f"{int(value):,}"


def _commit(row: Row) -> str:
    return row.git_commit[:7] + ("-dirty" if row.git_dirty else "") if row.git_commit else ""


def _worst(row: Row) -> str:
    worst = row.worst_without
    return "" if worst is None else f"{worst[1]:.3f} (w/o {worst[0]})"


ROBUSTNESS_HEADERS = ("relative robustness (all)", "effective robustness (all)")


def table_cells(table: TaskTable) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one task's Markdown table."""
    robust = table.show_robustness
    header = [
        "#",
        "modality",
        "fusion",
        "params total",
        "params trainable",
        table.metric,
        *([F1_KEY] if table.show_f1 else []),
        "fusion gain",
        "worst w/o one modality",
        *(ROBUSTNESS_HEADERS if robust else []),
        "s/epoch",
        "run",
        "commit",
    ]
    cells = [
        [
            str(rank),
            row.modality,
            row.fusion,
            _count(row.params_total),
            _count(row.params_trainable),
            _num(row.value),
            *([_num(row.f1_macro)] if table.show_f1 else []),
            _num(row.gain, "+.3f"),
            _worst(row),
            *([_num(row.relative_robustness), _num(row.effective_robustness, "+.3f")] if robust else []),
            _num(row.epoch_seconds, ".1f"),
            row.run_id[:8],
            _commit(row),
        ]
        for rank, row in enumerate(table.rows, start=1)
    ]
    return header, cells


def numeric_columns(table) -> set[str]:
    """The columns of table_cells that hold numbers (right-aligned in Markdown and HTML)."""
    return {
        "#",
        "params total",
        "params trainable",
        table.metric,
        F1_KEY,
        "fusion gain",
        "s/epoch",
        *ROBUSTNESS_HEADERS,
    }


def to_markdown(comparison: Comparison) -> str:
    lines = [f"# Runs of experiment `{comparison.experiment_name}`"]
    for table in comparison.tables:
        better = "higher" if table.mode == "max" else "lower"
        header, cells = table_cells(table)
        numeric = numeric_columns(table)
        lines += [
            "",
            f"## Task `{table.task}`: {table.metric} ({better} is better)",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(" ---: " if h in numeric else " --- " for h in header) + "|",
            *("| " + " | ".join(row) + " |" for row in cells),
            "",
        ]
        lines.append(gain_note(table))
        if table.show_robustness:
            lines += [
                "",
                "Robustness (the `robustness` stage, every modality perturbed at once; MultiBench): "
                "relative = area under the metric-vs-noise-level curve; effective = summed gap to the "
                "late-fusion curve shifted to the same clean value (0 for late itself, positive = "
                "degrades less).",
            ]
        if table.superseded:
            pairs = ", ".join(
                f"`{old.run_id[:8]}` → `{new.run_id[:8]}` ({new.modality} · {new.fusion})"
                for old, new in table.superseded
            )
            lines += [
                "",
                f"Superseded by a newer run of the same modality and fusion (`--all-runs` lists them): {pairs}.",
            ]
    if comparison.skipped:
        reasons = "; ".join(
            f"{why}: " + ", ".join(f"`{i[:8]}`" for i in ids) for why, ids in comparison.skipped.items()
        )
        lines += ["", f"Left out: {reasons}."]
    return "\n".join(lines) + "\n"


def gain_note(table: TaskTable) -> str:
    """The sentence under a task's table: how the fusion gain is computed and against which run."""
    formula = (
        f"{table.metric} minus the best unimodal run's"
        if table.mode == "max"
        else f"the best unimodal run's {table.metric} minus this run's (positive = better)"
    )
    refs = [
        f"data `{version}`: {row.modality} · {row.fusion} {row.value:.3f} (`{row.run_id[:8]}`)"
        for version, row in table.baselines.items()
    ]
    missing = sorted({row.data_version for row in table.rows} - set(table.baselines))
    if missing:
        refs.append("none on data " + ", ".join(f"`{version}`" for version in missing) + " (gain empty)")
    return f"Fusion gain: {formula} on the same data (`data_version`). Reference: {'; '.join(refs)}."


def to_csv(comparison: Comparison) -> str:
    """Every row of every task with full-precision values, full run ids and commits."""
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for table in comparison.tables:
        for rank, row in enumerate(table.rows, start=1):
            worst = row.worst_without or ("", None)
            writer.writerow(
                [
                    row.task,
                    row.metric,
                    row.mode,
                    rank,
                    row.modality,
                    row.fusion,
                    *("" if v is None else int(v) for v in (row.params_total, row.params_trainable)),
                    *("" if v is None else repr(v) for v in (row.value, row.f1_macro, row.gain, worst[1])),
                    worst[0],
                    *(
                        "" if v is None else repr(v)
                        for v in (row.relative_robustness, row.effective_robustness, row.epoch_seconds)
                    ),
                    row.run_id,
                    row.git_commit,
                    str(row.git_dirty).lower(),
                    row.data_version,
                    "" if row.baseline is None else row.baseline.run_id,
                ]
            )
    return sink.getvalue()


def plot_comparison(comparison: Comparison, path: str | Path) -> Path:
    """Horizontal bars of the main metric per run (one panel per task), best unimodal level dashed."""
    from fusion.tracking.figures import plt, save_figure  # the Agg backend and the shared save

    heights = [1.2 + 0.4 * len(table.rows) for table in comparison.tables]
    fig, axes = plt.subplots(
        len(heights), 1, figsize=(9, sum(heights)), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    for ax, table in zip(axes[:, 0], comparison.tables, strict=True):
        positions = range(len(table.rows))
        values = [row.value for row in table.rows]
        ax.barh(positions, values, color=["tab:gray" if row.unimodal else "tab:blue" for row in table.rows])
        ax.set_yticks(positions, labels=[f"{row.modality} · {row.fusion} ({row.run_id[:8]})" for row in table.rows])
        ax.invert_yaxis()  # best at the top
        for position, value in zip(positions, values, strict=True):
            ax.text(value, position, f" {value:.3f}", va="center", fontsize=8)
        for version, base in table.baselines.items():
            data = f", data {version}" if len(table.baselines) > 1 else ""
            ax.axvline(
                base.value,
                color="tab:red",
                linestyle="--",
                linewidth=1,
                label=f"best unimodal ({base.modality}{data}): {base.value:.3f}",
            )
        if table.baselines:
            ax.legend(loc="best", fontsize=8)
        ax.margins(x=0.12)
        ax.set_xlabel(f"{table.metric} ({'higher' if table.mode == 'max' else 'lower'} is better)")
        ax.set_title(f"task {table.task}: multimodal (blue) vs unimodal (gray)")
    return save_figure(fig, path)
