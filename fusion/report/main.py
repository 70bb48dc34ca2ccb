"""The report step from the config (`report` section, logger.*) and its command line: read the experiment,
write report.html and report.md with the figures in report.files_dir, log them to an MLflow run (kind=report)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

from fusion.report.collect import ReportData, collect
from fusion.report.document import build
from fusion.report.render import to_html, to_markdown
from fusion.report.seeds_section import seeds_blocks
from fusion.tracking.compare import CompareError, log_comparison, selection_config, selection_parser
from fusion.tracking.compare import to_markdown as tables_markdown

REPORT_KIND = "report"  # tag `kind` of the report runs (the compare step leaves every run with a kind out)
FIGURE_SUFFIXES = {".png"}  # what files_dir may hold before it is replaced


class ReportError(CompareError):
    """The report cannot be written; the message says what to do."""


@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    files_dir: Path
    run_id: str | None


def run_report(cfg: DictConfig) -> tuple[ReportData, ReportFiles]:
    """The whole step: collect, draw, write both files, log them (report.log_to_mlflow)."""
    options = cfg.get("report")
    if options is None:
        raise ReportError("the parameters have no `report` section; regenerate params.yaml with `make params`.")
    html_path, markdown_path, files_dir = Path(options.html), Path(options.markdown), Path(options.files_dir)
    _check_replaceable(files_dir)
    files_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{files_dir.name}.", dir=files_dir.parent))
    try:
        data = collect(
            cfg.logger.tracking_uri,
            cfg.logger.experiment_name,
            list(options.tasks or []),
            bool(options.latest_only),
            list(options.curves or []),
            int(options.max_curve_runs),
            staging,
        )
        blocks = build(data, staging, int(options.max_curve_runs))
        blocks += seeds_blocks(cfg)  # over seeds: fusion/report/seeds_section.py
        html = to_html(blocks, f"Report: {data.comparison.experiment_name}")
        shutil.rmtree(files_dir, ignore_errors=True)
        staging.rename(files_dir)  # the figures under their final names, before the Markdown links to them
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    blocks = _moved(blocks, staging, files_dir)
    for path, text in ((html_path, html), (markdown_path, to_markdown(blocks, markdown_path.parent))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    run_id = None
    if options.log_to_mlflow:
        logged = [html_path, markdown_path, files_dir]
        run_id = log_comparison(
            data.comparison,
            tables_markdown(data.comparison),
            logged,
            str(options.run_name),
            kind=REPORT_KIND,
            experiment=cfg.logger.get("reports_experiment"),
        )
    return data, ReportFiles(html_path, markdown_path, files_dir, run_id)


def _check_replaceable(files_dir: Path) -> None:
    """files_dir is replaced by every report: refuse a folder holding anything but figures (a wrong setting)."""
    if not files_dir.exists():
        return
    foreign = [
        p
        for p in files_dir.rglob("*")
        if p.is_file() and p.suffix not in FIGURE_SUFFIXES and "explain" not in p.relative_to(files_dir).parts
    ]
    if not files_dir.is_dir() or foreign:
        raise ReportError(
            f"report.files_dir={files_dir} holds other files than the report's figures (e.g. "
            f"{(foreign or [files_dir])[0]}); the report replaces that folder. Point report.files_dir "
            f"at a folder of its own, e.g. outputs/report/report_files."
        )


def _moved(blocks, old: Path, new: Path):
    """The blocks with figure paths under `old` moved to `new` (the staging folder renamed into place)."""
    root = old.resolve()  # downloaded artifacts come back as absolute paths, drawn figures relative ones

    def move(value):
        if isinstance(value, Path) and value.resolve().is_relative_to(root):
            return new / value.resolve().relative_to(root)
        if isinstance(value, list):
            return [move(item) for item in value]
        if is_dataclass(value):
            return replace(value, **{f.name: move(getattr(value, f.name)) for f in fields(value)})
        return value

    return [move(block) for block in blocks]


# --- command line ----------------------------------------------------------------------------------------------

EPILOG = """examples:
  python -m fusion.report
  python -m fusion.report --task multiclass --all-runs --no-mlflow
  python pipelines/report.py logger.experiment_name=other report.html=/tmp/report.html report.max_curve_runs=5

Reads every finished training run of the experiment (logger.*), as the compare step does, and writes
report.html (one self-contained page: open it in any browser, no server), report.md with its figures in
report.files_dir, and logs all three to an MLflow run named `report` (tag kind=report; report runs never
appear in the compare tables)."""


OUTPUTS = {
    "html": "HTML output",
    "markdown": "Markdown output",
    "files_dir": "folder of the figures the Markdown links to",
}  # report.<key>


def build_parser() -> argparse.ArgumentParser:
    parser = selection_parser(
        "Turn the MLflow experiment into a report: runs table, training curves, per-class F1, "
        "robustness curves and the best run's attention figures, as HTML and Markdown.",
        EPILOG,
        "report",
        OUTPUTS,
        "fusion.report",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        data, files = run_report(selection_config(args, "report", OUTPUTS))
    except CompareError as exc:
        raise SystemExit(f"error: {exc}") from None
    for task in data.tasks:
        best = task.best.row
        print(
            f"{task.table.task}: {len(task.table.rows)} runs; best {best.modality} · {best.fusion} "
            f"{best.metric} {best.value:.3f} ({best.run_id[:8]})"
        )
    print(f"wrote {files.html} (self-contained), {files.markdown} (figures in {files.files_dir}/)")
    if files.run_id:
        print(f"logged to MLflow run {files.run_id} (kind={REPORT_KIND}): HTML, Markdown and figures as artifacts")


if __name__ == "__main__":
    main()
