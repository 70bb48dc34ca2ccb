"""The compare step: every finished training run of the MLflow experiment, one table per task, best first.

`python -m fusion.tracking.compare` (also `python pipelines/compare.py`, the DVC stage `compare` and
`make compare`) reads the runs, writes `compare.markdown` and `compare.csv` (params.yaml), prints the
Markdown and logs both files with a bar chart to a run named `compare` (tag kind=compare) in the experiment
`<experiment>-reports` (logger.reports_experiment), so the training experiment's table holds training runs only.
Runs with a `kind` tag (compare and report runs), unfinished runs and runs without their task's main test
metric are left out.

A run's task comes from its tag `task` or params `task/name`, `task/metric` (the main test metric key)
and `task/mode` (max or min; `task.name`-style keys are read too); runs without them are the original
task: multiclass, test/acc, max. Rows are compared only within a task.
"""

from __future__ import annotations

import argparse
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from fusion.config import load_params, stage_parser
from fusion.tracking.lineage import git_commit
from fusion.tracking.store import absolute_tracking_uri

DEFAULT_TASK = "multiclass"
DEFAULT_METRIC = "test/acc"
DEFAULT_MODE = "max"
F1_KEY = "test/f1_macro"
REPORTS_SUFFIX = "-reports"  # the compare and report runs of experiment X go to experiment X-reports
COMPARE_KIND = "compare"  # tag `kind` of the compare runs themselves; any run with a `kind` tag is not training
WITHOUT = "_without_"  # <metric>_without_<modality>: the metric with that modality removed
# The robustness stage's scores of the `all` curve (every modality perturbed at once; fusion/robustness/).
RELATIVE_KEY, EFFECTIVE_KEY = "robustness/relative_all", "robustness/effective_all"
NOTE_LIMIT = 7000  # MLflow truncates tag values at 8000 characters

CSV_COLUMNS = ("task", "metric", "mode", "rank", "modality", "fusion", "params_total", "params_trainable", "value",
               "f1_macro", "fusion_gain", "worst_without", "worst_without_modality", "relative_robustness_all",
               "effective_robustness_all", "epoch_seconds", "run_id",
               "git_commit", "git_dirty", "data_version", "baseline_run_id")


class CompareError(RuntimeError):
    """The runs cannot be compared; the message says what to do."""


@dataclass
class Row:
    """One finished training run, reduced to what the table shows."""

    run_id: str
    task: str
    metric: str
    mode: str
    modality: str
    fusion: str
    data_version: str
    git_commit: str
    git_dirty: bool
    start_time: int
    value: float
    f1_macro: float | None
    params_total: float | None
    params_trainable: float | None
    epoch_seconds: float | None
    without: dict[str, float]
    relative_robustness: float | None = None
    effective_robustness: float | None = None
    gain: float | None = None
    baseline: Row | None = None

    @property
    def unimodal(self) -> bool:
        return len(self.modality.split("+")) == 1

    @property
    def sign(self) -> int:
        """+1 where higher is better (mode max), -1 where lower is (mode min)."""
        return 1 if self.mode == "max" else -1

    @property
    def worst_without(self) -> tuple[str, float] | None:
        """(modality, metric) of the removal that hurts most, if the run logged any."""
        if not self.without:
            return None
        name = min(self.without, key=lambda m: self.sign * self.without[m])
        return name, self.without[name]


@dataclass
class TaskTable:
    """The rows of one task (one main metric and mode), best first."""

    task: str
    metric: str
    mode: str
    rows: list[Row]
    superseded: list[tuple[Row, Row]] = field(default_factory=list)  # (older run, the newer one shown)
    baselines: dict[str, Row] = field(default_factory=dict)  # data_version -> best unimodal row

    @property
    def show_f1(self) -> bool:
        return self.metric != F1_KEY and any(r.f1_macro is not None for r in self.rows)

    @property
    def show_robustness(self) -> bool:
        return any(r.relative_robustness is not None for r in self.rows)


@dataclass
class Comparison:
    experiment_name: str
    experiment_id: str
    tracking_uri: str
    tables: list[TaskTable]
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> run ids


# --- reading ---------------------------------------------------------------------------------------------------

def compare_runs(tracking_uri: str, experiment_name: str, tasks: Sequence[str] = (),
                 latest_only: bool = True) -> Comparison:
    """Read the experiment's finished training runs into one table per task (`tasks`: only these)."""
    uri = absolute_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise CompareError(
            f"no MLflow experiment '{experiment_name}' in {tracking_uri}. Train a model first (`python train.py`, "
            f"`make sweep` or `dvc repro`), or point at the right store with --tracking-uri/--experiment "
            f"(logger.tracking_uri, logger.experiment_name).")
    rows, skipped = [], {}
    for run in _all_runs(client, experiment.experiment_id):
        if run.data.tags.get("kind"):  # a compare or report run, not a training run
            continue
        row, reason = _row(run)
        if row is None:
            skipped.setdefault(reason, []).append(run.info.run_id)
        else:
            rows.append(row)
    skipped = dict(sorted(skipped.items()))
    if not rows:
        raise CompareError(
            f"experiment '{experiment_name}' in {tracking_uri} holds no finished training run with its test metric "
            f"(e.g. {DEFAULT_METRIC}){_skipped_hint(skipped)}. Train and test a model first: `python train.py` "
            f"(test_after_fit=true) or `dvc repro evaluate`.")
    present = sorted({r.task for r in rows})
    if tasks:
        missing = [t for t in tasks if t not in present]
        if missing:
            raise CompareError(f"no finished run of task {', '.join(map(repr, missing))} in experiment "
                               f"'{experiment_name}'; tasks present: {', '.join(present)}. Drop --task or pick one.")
        rows = [r for r in rows if r.task in tasks]
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.task, row.metric, row.mode), []).append(row)
    tables = [_table(*key, group, latest_only) for key, group in sorted(groups.items())]
    return Comparison(experiment_name, experiment.experiment_id, tracking_uri, tables, skipped)


def _all_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _setting(run: Run, key: str) -> str | None:
    """A flattened config param, `task/metric` as train.py logs it or `task.metric`."""
    params = run.data.params
    return params.get(key.replace(".", "/")) or params.get(key)


def _row(run: Run) -> tuple[Row | None, str]:
    """The run as a Row, or (None, why it is left out)."""
    tags, metrics = run.data.tags, run.data.metrics
    metric = _setting(run, "task.metric") or DEFAULT_METRIC
    mode = (_setting(run, "task.mode") or DEFAULT_MODE).lower()
    if run.info.status != "FINISHED":
        return None, "not finished"
    if mode not in ("max", "min"):
        return None, f"task.mode '{mode}' is neither max nor min"
    if metric not in metrics:
        return None, f"no {metric}"
    prefix = metric + WITHOUT
    return Row(
        run_id=run.info.run_id,
        task=tags.get("task") or _setting(run, "task.name") or DEFAULT_TASK,
        metric=metric,
        mode=mode,
        modality=tags.get("modality") or _setting(run, "modality.name") or "?",
        fusion=tags.get("fusion") or _setting(run, "fusion.name") or "?",
        data_version=tags.get("data_version", ""),
        git_commit=tags.get("git_commit", ""),
        git_dirty=tags.get("git_dirty") == "true",
        start_time=run.info.start_time or 0,
        value=metrics[metric],
        f1_macro=metrics.get(F1_KEY),
        params_total=metrics.get("params/total"),
        params_trainable=metrics.get("params/trainable"),
        epoch_seconds=metrics.get("time/epoch_seconds"),
        without={k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)},
        relative_robustness=metrics.get(RELATIVE_KEY),
        effective_robustness=metrics.get(EFFECTIVE_KEY),
    ), ""


def _table(task: str, metric: str, mode: str, rows: list[Row], latest_only: bool) -> TaskTable:
    """Keep the newest run per (modality, fusion), rank, and measure each run against the best unimodal one."""
    rows = sorted(rows, key=lambda r: -r.start_time)
    superseded = []
    # The reference of each data version: the best unimodal run on it (with latest_only, the newest run per
    # modality and fusion on that data), even where a newer run on other data supersedes it in the table.
    candidates = list(_newest(rows, lambda r: (r.modality, r.fusion, r.data_version)).values()) if latest_only else rows
    if latest_only:
        newest = _newest(rows, lambda r: (r.modality, r.fusion))
        superseded = [(row, newest[(row.modality, row.fusion)]) for row in rows
                      if newest[(row.modality, row.fusion)] is not row]
        rows = list(newest.values())
    rows.sort(key=lambda r: (-r.sign * r.value, -r.start_time))
    baselines: dict[str, Row] = {}
    for row in sorted(candidates, key=lambda r: (-r.sign * r.value, -r.start_time)):  # best first
        if row.unimodal:
            baselines.setdefault(row.data_version, row)
    for row in rows:
        row.baseline = baselines.get(row.data_version)
        if row.baseline is not None:
            base = row.baseline.value
            row.gain = row.value - base if row.mode == "max" else base - row.value  # not sign * (…): no -0.000
    return TaskTable(task, metric, mode, rows, superseded, baselines)


def _newest(rows: list[Row], key) -> dict:
    """The first row (rows are newest first) of each key."""
    newest: dict = {}
    for row in rows:
        newest.setdefault(key(row), row)
    return newest


def _skipped_hint(skipped: dict[str, list[str]]) -> str:
    return "" if not skipped else " (left out: " + "; ".join(f"{len(ids)} {why}" for why, ids in skipped.items()) + ")"


# --- writing ---------------------------------------------------------------------------------------------------

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
    header = ["#", "modality", "fusion", "params total", "params trainable", table.metric,
              *([F1_KEY] if table.show_f1 else []), "fusion gain", "worst w/o one modality",
              *(ROBUSTNESS_HEADERS if robust else []), "s/epoch", "run", "commit"]
    cells = [[str(rank), row.modality, row.fusion, _count(row.params_total), _count(row.params_trainable),
              _num(row.value), *([_num(row.f1_macro)] if table.show_f1 else []), _num(row.gain, "+.3f"),
              _worst(row), *([_num(row.relative_robustness), _num(row.effective_robustness, "+.3f")] if robust else []),
              _num(row.epoch_seconds, ".1f"), row.run_id[:8], _commit(row)]
             for rank, row in enumerate(table.rows, start=1)]
    return header, cells


def to_markdown(comparison: Comparison) -> str:
    lines = [f"# Runs of experiment `{comparison.experiment_name}`"]
    for table in comparison.tables:
        better = "higher" if table.mode == "max" else "lower"
        header, cells = table_cells(table)
        numeric = {"#", "params total", "params trainable", table.metric, F1_KEY, "fusion gain", "s/epoch",
                   *ROBUSTNESS_HEADERS}
        lines += ["", f"## Task `{table.task}`: {table.metric} ({better} is better)", "",
                  "| " + " | ".join(header) + " |",
                  "|" + "|".join(" ---: " if h in numeric else " --- " for h in header) + "|",
                  *("| " + " | ".join(row) + " |" for row in cells), ""]
        lines.append(gain_note(table))
        if table.show_robustness:
            lines += ["", "Robustness (the `robustness` stage, every modality perturbed at once; MultiBench): "
                          "relative = area under the metric-vs-noise-level curve; effective = summed gap to the "
                          "late-fusion curve shifted to the same clean value (0 for late itself, positive = "
                          "degrades less)."]
        if table.superseded:
            pairs = ", ".join(f"`{old.run_id[:8]}` → `{new.run_id[:8]}` ({new.modality} · {new.fusion})"
                              for old, new in table.superseded)
            lines += ["", f"Superseded by a newer run of the same modality and fusion (`--all-runs` lists "
                          f"them): {pairs}."]
    if comparison.skipped:
        reasons = "; ".join(f"{why}: " + ", ".join(f"`{i[:8]}`" for i in ids)
                            for why, ids in comparison.skipped.items())
        lines += ["", f"Left out: {reasons}."]
    return "\n".join(lines) + "\n"


def gain_note(table: TaskTable) -> str:
    """The sentence under a task's table: how the fusion gain is computed and against which run."""
    formula = (f"{table.metric} minus the best unimodal run's" if table.mode == "max"
               else f"the best unimodal run's {table.metric} minus this run's (positive = better)")
    refs = [f"data `{version}`: {row.modality} · {row.fusion} {row.value:.3f} (`{row.run_id[:8]}`)"
            for version, row in table.baselines.items()]
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
            writer.writerow([
                row.task, row.metric, row.mode, rank, row.modality, row.fusion,
                *("" if v is None else int(v) for v in (row.params_total, row.params_trainable)),
                *("" if v is None else repr(v) for v in (row.value, row.f1_macro, row.gain, worst[1])),
                worst[0], *("" if v is None else repr(v) for v in (row.relative_robustness, row.effective_robustness,
                                                                  row.epoch_seconds)), row.run_id,
                row.git_commit, str(row.git_dirty).lower(), row.data_version,
                "" if row.baseline is None else row.baseline.run_id])
    return sink.getvalue()


def plot_comparison(comparison: Comparison, path: str | Path) -> Path:
    """Horizontal bars of the main metric per run (one panel per task), best unimodal level dashed."""
    from fusion.tracking.figures import plt, save_figure  # the Agg backend and the shared save

    heights = [1.2 + 0.4 * len(table.rows) for table in comparison.tables]
    fig, axes = plt.subplots(len(heights), 1, figsize=(9, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
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
            ax.axvline(base.value, color="tab:red", linestyle="--", linewidth=1,
                       label=f"best unimodal ({base.modality}{data}): {base.value:.3f}")
        if table.baselines:
            ax.legend(loc="best", fontsize=8)
        ax.margins(x=0.12)
        ax.set_xlabel(f"{table.metric} ({'higher' if table.mode == 'max' else 'lower'} is better)")
        ax.set_title(f"task {table.task}: multimodal (blue) vs unimodal (gray)")
    return save_figure(fig, path)


def reports_experiment(experiment_name: str, configured: str | None = None) -> str:
    """The experiment that holds the compare and report runs of `experiment_name` (logger.reports_experiment;
    default `<experiment>-reports`), so the training-run table of the UI shows training runs only."""
    return configured or f"{experiment_name}{REPORTS_SUFFIX}"


def log_comparison(comparison: Comparison, markdown: str, files: Sequence[Path], run_name: str = "compare",
                   kind: str = COMPARE_KIND, experiment: str | None = None) -> str:
    """A finished run with tag kind=`kind` in the reports experiment (`reports_experiment`), holding the files (a
    folder keeps its name as the artifact folder) and naming the experiment it read; returns its id."""
    client = MlflowClient(tracking_uri=absolute_tracking_uri(comparison.tracking_uri))
    name = reports_experiment(comparison.experiment_name, experiment)
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(
        name, artifact_location=_shared_artifacts(client, comparison.experiment_id))
    commit, dirty = git_commit()
    tags = {"kind": kind, "git_commit": commit, "git_dirty": str(dirty).lower(),
            "source_experiment": comparison.experiment_name,
            "mlflow.note.content": markdown if len(markdown) <= NOTE_LIMIT else f"See the {kind}.md artifact."}
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    try:
        client.log_param(run_id, "tasks", ",".join(t.task for t in comparison.tables))
        client.log_metric(run_id, "runs", sum(len(t.rows) for t in comparison.tables))
        for path in map(Path, files):
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=path.name)
            else:
                client.log_artifact(run_id, str(path))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _shared_artifacts(client: MlflowClient, experiment_id: str) -> str | None:
    """The training experiment's artifact location (e.g. mlartifacts/, one folder per run id), so the reports
    experiment does not use MLflow's default ./mlartifacts of whatever folder the command runs in."""
    return client.get_experiment(experiment_id).artifact_location


def run_compare(cfg: DictConfig) -> tuple[Comparison, str, str | None]:
    """The whole step from the config: (comparison, its Markdown, the compare run's id or None)."""
    options = cfg.get("compare")
    if options is None:
        raise CompareError("the parameters have no `compare` section; regenerate params.yaml with `make params`.")
    comparison = compare_runs(cfg.logger.tracking_uri, cfg.logger.experiment_name, list(options.tasks or []),
                              bool(options.latest_only))
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
    run_id = (log_comparison(comparison, markdown, files, options.run_name,
                             experiment=cfg.logger.get("reports_experiment")) if options.log_to_mlflow else None)
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


def selection_parser(description: str, epilog: str, section: str, outputs: dict[str, str]) -> argparse.ArgumentParser:
    """The command line of the steps that read the experiment (compare, report): the store, experiment, tasks and
    runs to read, one option per output file (`--<key>` sets `<section>.<key>`) and --no-mlflow."""
    parser = stage_parser(description, epilog)
    parser.add_argument("--tracking-uri", help="MLflow store (default: logger.tracking_uri)")
    parser.add_argument("--experiment", help="MLflow experiment (default: logger.experiment_name)")
    parser.add_argument("--task", action="append", help="only this task; repeatable (default: every task present)")
    parser.add_argument("--all-runs", action="store_true",
                        help="keep re-runs (default: only the newest run per modality and fusion)")
    for key, what in outputs.items():
        parser.add_argument("--" + key.replace("_", "-"), help=f"{what} (default: {section}.{key})")
    parser.add_argument("--no-mlflow", action="store_true", help=f"do not log a {section} run to MLflow")
    return parser


def selection_config(args: argparse.Namespace, section: str, outputs: dict[str, str]) -> DictConfig:
    """params.yaml, then key=value overrides, then the options of selection_parser."""
    cfg = load_params(args.params, args.overrides)
    options = {"logger.tracking_uri": args.tracking_uri, "logger.experiment_name": args.experiment,
               f"{section}.tasks": args.task, f"{section}.latest_only": False if args.all_runs else None,
               f"{section}.log_to_mlflow": False if args.no_mlflow else None,
               **{f"{section}.{key}": getattr(args, key) for key in outputs}}
    for key, value in options.items():
        if value is not None:
            OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    return selection_parser("Compare the finished training runs of the MLflow experiment: one table per task, "
                            "best first, with the gain over the best unimodal run.", EPILOG, "compare", OUTPUTS)


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


if __name__ == "__main__":
    main()
