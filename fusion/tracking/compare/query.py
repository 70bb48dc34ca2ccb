"""Reading the compare step's input: the experiment's finished training runs from MLflow, as one ranked table per
task (the data classes every other part of compare and the report work on)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from fusion.tracking.store import absolute_tracking_uri

DEFAULT_TASK = "multiclass"
DEFAULT_METRIC = "test/acc"
DEFAULT_MODE = "max"
F1_KEY = "test/f1_macro"
WITHOUT = "_without_"  # <metric>_without_<modality>: the metric with that modality removed
# The robustness stage's scores of the `all` curve (every modality perturbed at once; fusion/robustness/).
RELATIVE_KEY, EFFECTIVE_KEY = "robustness/relative_all", "robustness/effective_all"


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


def compare_runs(
    tracking_uri: str, experiment_name: str, tasks: Sequence[str] = (), latest_only: bool = True
) -> Comparison:
    """Read the experiment's finished training runs into one table per task (`tasks`: only these)."""
    uri = absolute_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise CompareError(
            f"no MLflow experiment '{experiment_name}' in {tracking_uri}. Train a model first (`python train.py`, "
            f"`make sweep` or `dvc repro`), or point at the right store with --tracking-uri/--experiment "
            f"(logger.tracking_uri, logger.experiment_name)."
        )
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
            f"(test_after_fit=true) or `dvc repro evaluate`."
        )
    present = sorted({r.task for r in rows})
    if tasks:
        missing = [t for t in tasks if t not in present]
        if missing:
            raise CompareError(
                f"no finished run of task {', '.join(map(repr, missing))} in experiment "
                f"'{experiment_name}'; tasks present: {', '.join(present)}. Drop --task or pick one."
            )
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
        without={k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)},
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
        superseded = [
            (row, newest[(row.modality, row.fusion)]) for row in rows if newest[(row.modality, row.fusion)] is not row
        ]
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
