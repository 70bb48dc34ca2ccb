"""The compare step from the config (run_compare) and its command line; selection_parser/selection_config, the
options of the steps that read the experiment, are shared with fusion.report (one definition for both)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from fusion.config import load_params, stage_parser
from fusion.tracking.compare.log import log_comparison
from fusion.tracking.compare.query import CompareError, Comparison, compare_runs
from fusion.tracking.compare.render import plot_comparison, to_csv, to_markdown


def run_compare(cfg: DictConfig) -> tuple[Comparison, str, str | None]:
    """The whole step from the config: (comparison, its Markdown, the compare run's id or None)."""
    options = cfg.get("compare")
    if options is None:
        raise CompareError("the parameters have no `compare` section; regenerate params.yaml with `make params`.")
    comparison = compare_runs(
        cfg.logger.tracking_uri, cfg.logger.experiment_name, list(options.tasks or []), bool(options.latest_only)
    )
    from fusion.tracking.seeds import run_seeds  # over seeds: mean ± std, intervals, significance (compare.seeds)

    seeds_csv = Path(options.csv).with_name(f"{Path(options.csv).stem}_seeds.csv")  # beside compare.csv
    seeds_markdown, seeds_files = run_seeds(cfg, seeds_csv)
    markdown = to_markdown(comparison) + ("\n" + seeds_markdown if seeds_markdown else "")
    files = []
    for path, text in ((options.markdown, markdown), (options.csv, to_csv(comparison))):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        files.append(path)
    files += [plot_comparison(comparison, options.chart), *seeds_files]
    run_id = (
        log_comparison(comparison, markdown, files, options.run_name, experiment=cfg.logger.get("reports_experiment"))
        if options.log_to_mlflow
        else None
    )
    return comparison, markdown, run_id


# --- command line ----------------------------------------------------------------------------------------------

EPILOG = """examples:
  python -m fusion.tracking.compare
  python -m fusion.tracking.compare --task regression --all-runs --no-mlflow
  python pipelines/compare.py logger.experiment_name=other compare.markdown=/tmp/compare.md

Reads every finished training run of the experiment (logger.*), writes compare.markdown, compare.csv
and compare.chart, prints the Markdown and logs the three files to an MLflow run named `compare`
(tag kind=compare; compare runs never appear in the tables)."""


OUTPUTS = {"markdown": "Markdown output", "csv": "CSV output", "chart": "bar chart PNG"}  # compare.<key> files


def selection_parser(
    description: str, epilog: str, section: str, outputs: dict[str, str], module: str
) -> argparse.ArgumentParser:
    """The command line of the steps that read the experiment (compare, report): the store, experiment, tasks and
    runs to read, one option per output file (`--<key>` sets `<section>.<key>`) and --no-mlflow. Run as
    `python -m <module>`, the usage line says so (argparse would say `__main__.py`)."""
    parser = stage_parser(description, epilog)
    if Path(sys.argv[0]).name == "__main__.py":
        parser.prog = f"python -m {module}"
    parser.add_argument("--tracking-uri", help="MLflow store (default: logger.tracking_uri)")
    parser.add_argument("--experiment", help="MLflow experiment (default: logger.experiment_name)")
    parser.add_argument("--task", action="append", help="only this task; repeatable (default: every task present)")
    parser.add_argument(
        "--all-runs", action="store_true", help="keep re-runs (default: only the newest run per modality and fusion)"
    )
    for key, what in outputs.items():
        parser.add_argument("--" + key.replace("_", "-"), help=f"{what} (default: {section}.{key})")
    parser.add_argument("--no-mlflow", action="store_true", help=f"do not log a {section} run to MLflow")
    return parser


def selection_config(args: argparse.Namespace, section: str, outputs: dict[str, str]) -> DictConfig:
    """params.yaml, then key=value overrides, then the options of selection_parser."""
    cfg = load_params(args.params, args.overrides)
    options = {
        "logger.tracking_uri": args.tracking_uri,
        "logger.experiment_name": args.experiment,
        f"{section}.tasks": args.task,
        f"{section}.latest_only": False if args.all_runs else None,
        f"{section}.log_to_mlflow": False if args.no_mlflow else None,
        **{f"{section}.{key}": getattr(args, key) for key in outputs},
    }
    for key, value in options.items():
        if value is not None:
            OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    return selection_parser(
        "Compare the finished training runs of the MLflow experiment: one table per task, "
        "best first, with the gain over the best unimodal run.",
        EPILOG,
        "compare",
        OUTPUTS,
        "fusion.tracking.compare",
    )


def config_from_args(args: argparse.Namespace) -> DictConfig:
    return selection_config(args, "compare", OUTPUTS)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        _, markdown, run_id = run_compare(config_from_args(args))
    except CompareError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(markdown, end="")
    if run_id:
        print(f"\nlogged to MLflow run {run_id} (kind=compare): Markdown, CSV and chart as artifacts")
