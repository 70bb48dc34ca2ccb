"""Comparisons over seeds: the experiment's finished training runs grouped by configuration (every logged param
but the seed and the settings in compare.seeds.ignore), each group as mean ± std with its t-interval over the
seeds, the paired bootstrap of its test records against the best group (significance), the fusion gain over the
best single-modality group (Welch interval) and the time to its best validation value (cost).

Kept apart from fusion/tracking/compare (a small hook in its cli.py and in the report): `python train.py -m
seed=0,1,2 ...` makes the repeats; this module reads them."""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from fusion.tracking.stats import Difference, Summary, paired_bootstrap, summarise, welch_difference
from fusion.tracking.store import absolute_tracking_uri

RECORDS = "test_records.csv"  # fusion/training/test_records.py
SECONDS_KEY = "time/seconds_to_best"
CSV_COLUMNS = (
    "task",
    "metric",
    "rank",
    "configuration",
    "n_seeds",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "diff_vs_best",
    "diff_low",
    "diff_high",
    "p_vs_best",
    "significant",
    "gain",
    "gain_low",
    "gain_high",
    "seconds_to_best",
    "cost_rank",
    "seeds",
    "run_ids",
)


@dataclass
class Group:
    """The runs of one configuration (they differ only in the seed)."""

    task: str
    metric: str
    mode: str
    modality: str
    fusion: str
    params: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    label: str = ""
    summary: Summary | None = None
    seconds: Summary | None = None
    vs_best: Difference | None = None  # paired bootstrap over test records, sign-adjusted (positive: better)
    gain: Difference | None = None  # over the best single-modality group (multimodal groups only)

    @property
    def values(self) -> list[float]:
        return [r.data.metrics[self.metric] for r in self.runs]

    @property
    def unimodal(self) -> bool:
        return "+" not in self.modality


def _param(run: Run, key: str) -> str | None:
    return run.data.params.get(key.replace(".", "/")) or run.data.params.get(key)


def _config_key(run: Run, ignore: list[str]) -> tuple:
    keep = {
        k: v
        for k, v in run.data.params.items()
        if not any(k == p.rstrip("/") or k.startswith(p.rstrip("/") + "/") for p in ignore)
    }
    return tuple(sorted(keep.items()))


def seed_groups(client: MlflowClient, experiment_id: str, options: DictConfig) -> list[list[Group]]:
    """The finished training runs (no `kind` tag, with their task's main metric) grouped by configuration; one
    list per task, best mean first, with the statistics filled in."""
    ignore = list(options.ignore)
    groups: dict[tuple, Group] = {}
    for run in client.search_runs([experiment_id], max_results=5000):
        tags = run.data.tags
        metric = _param(run, "task.metric") or "test/acc"
        if tags.get("kind") or run.info.status != "FINISHED" or metric not in run.data.metrics:
            continue
        key = (tags.get("task", "multiclass"), metric, _config_key(run, ignore))
        if key not in groups:
            groups[key] = Group(
                key[0],
                metric,
                (_param(run, "task.mode") or "max").lower(),
                tags.get("modality", "?"),
                tags.get("fusion", "?"),
                dict(key[2]),
            )
        groups[key].runs.append(run)
    tables: dict[tuple[str, str], list[Group]] = {}
    for group in groups.values():
        tables.setdefault((group.task, group.metric), []).append(group)
    return [
        _fill(client, sorted(t, key=lambda g: -_sign(g) * summarise(g.values).mean), options)
        for _, t in sorted(tables.items())
    ]


def _sign(group: Group) -> int:
    return 1 if group.mode == "max" else -1


def _labels(table: list[Group]) -> None:
    """modality · fusion, plus the params that tell groups of the same modality and fusion apart."""
    for group in table:
        twins = [g for g in table if (g.modality, g.fusion) == (group.modality, group.fusion) and g is not group]
        differing = sorted({k for t in twins for k, v in t.params.items() if group.params.get(k) != v})
        extra = ", ".join(f"{k.replace('/', '.')}={group.params.get(k)}" for k in differing)
        group.label = f"{group.modality} · {group.fusion}" + (f" · {extra}" if extra else "")


def _fill(client: MlflowClient, table: list[Group], options: DictConfig) -> list[Group]:
    confidence = float(options.confidence)
    _labels(table)
    for group in table:
        group.summary = summarise(group.values, confidence)
        seconds = [r.data.metrics[SECONDS_KEY] for r in group.runs if SECONDS_KEY in r.data.metrics]
        group.seconds = summarise(seconds, confidence) if seconds else None
    best = table[0]
    best_records = _records(client, best)
    for group in table[1:]:
        records = _records(client, group)
        common = sorted(set(records) & set(best_records))
        if common:  # per-record outcome averaged over seeds; records are the same test split for both groups
            group.vs_best = paired_bootstrap(
                [records[i] for i in common],
                [best_records[i] for i in common],
                int(options.bootstrap_resamples),
                int(options.bootstrap_seed),
                confidence,
            )
    unimodal = [g for g in table if g.unimodal]
    if unimodal:
        reference = unimodal[0]  # best first: the best single-modality configuration
        for group in table:
            if not group.unimodal:
                diff = welch_difference(group.values, reference.values, confidence)
                s = _sign(group)
                low, high = sorted((s * diff.low, s * diff.high))
                group.gain = Difference(s * diff.estimate, low, high, diff.p_value)
    return table


def _records(client: MlflowClient, group: Group) -> dict[str, float]:
    """{record id: mean outcome over the group's seeds} from each run's test_records.csv (runs without it skip)."""
    sums: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for run in group.runs:
            if not any(a.path == RECORDS for a in client.list_artifacts(run.info.run_id)):
                continue
            path = client.download_artifacts(run.info.run_id, RECORDS, folder)
            with open(path, newline="", encoding="utf-8") as source:
                for row in csv.DictReader(source):
                    sums.setdefault(row["id"], []).append(float(row["correct"]))
    n = max((len(v) for v in sums.values()), default=0)
    return {k: sum(v) / len(v) for k, v in sums.items() if len(v) == n}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None or value != value else f"{value:.{digits}f}"


def _interval(d: Difference | None) -> str:
    if d is None:
        return ""
    if d.low != d.low:
        return f"{d.estimate:+.3f}"
    return f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"


def _cost_ranks(table: list[Group]) -> dict[int, int]:
    timed = sorted((g for g in table if g.seconds), key=lambda g: g.seconds.mean)
    return {id(g): i + 1 for i, g in enumerate(timed)}


def seeds_cells(table: list[Group]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one task's table; `*` marks a group significantly worse than the best (paired bootstrap
    over the test records: the interval of the difference excludes 0)."""
    metric = table[0].metric
    header = [
        "rank",
        "configuration",
        "seeds",
        f"{metric} mean ± std [95% CI]",
        "vs best (paired)",
        "sig.",
        "fusion gain [CI]",
        "s to best",
        "cost rank",
    ]
    costs = _cost_ranks(table)
    rows = []
    for rank, g in enumerate(table, 1):
        sig = "" if g.vs_best is None else ("*" if g.vs_best.significant else "n.s.")
        rows.append(
            [
                str(rank),
                g.label,
                str(g.summary.n),
                g.summary.text(),
                _interval(g.vs_best),
                sig,
                _interval(g.gain),
                _fmt(g.seconds.mean if g.seconds else None, 1),
                str(costs.get(id(g), "")),
            ]
        )
    return header, rows


def seeds_markdown(tables: list[list[Group]], confidence: float) -> str:
    lines = [
        f"## Over seeds: configurations with mean ± std and {confidence:.0%} t-interval",
        "",
        "A configuration is every setting but the seed. `vs best`: the paired bootstrap of the per-record test "
        "outcome (averaged over seeds) against the best configuration; `*` its interval excludes 0 "
        "(significant), `n.s.` not. Fusion gain: over the best single-modality configuration (Welch interval "
        "over seeds). Cost: mean seconds to the best validation value (time/seconds_to_best).",
        "",
    ]
    for table in tables:
        header, rows = seeds_cells(table)
        lines += [
            f"### {table[0].task} ({table[0].metric})",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def seeds_csv(tables: list[list[Group]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for table in tables:
        costs = _cost_ranks(table)
        for rank, g in enumerate(table, 1):
            d, gain, s = g.vs_best, g.gain, g.summary
            writer.writerow(
                {
                    "task": g.task,
                    "metric": g.metric,
                    "rank": rank,
                    "configuration": g.label,
                    "n_seeds": s.n,
                    "mean": s.mean,
                    "std": s.std,
                    "ci_low": s.low,
                    "ci_high": s.high,
                    "diff_vs_best": d.estimate if d else "",
                    "diff_low": d.low if d else "",
                    "diff_high": d.high if d else "",
                    "p_vs_best": d.p_value if d else "",
                    "significant": d.significant if d else "",
                    "gain": gain.estimate if gain else "",
                    "gain_low": gain.low if gain else "",
                    "gain_high": gain.high if gain else "",
                    "seconds_to_best": g.seconds.mean if g.seconds else "",
                    "cost_rank": costs.get(id(g), ""),
                    "seeds": " ".join(sorted(_param(r, "seed") or "" for r in g.runs)),
                    "run_ids": " ".join(r.info.run_id for r in g.runs),
                }
            )
    return out.getvalue()


def run_seeds(cfg: DictConfig, csv_path: Path) -> tuple[str, list[Path]]:
    """compare.seeds from the config: (Markdown section, [its CSV at ``csv_path``]); empty when disabled, or
    when no configuration was trained with more than one seed (an interval of one run says nothing)."""
    options = cfg.compare.get("seeds")
    if not options or not options.enabled:
        return "", []
    client = MlflowClient(tracking_uri=absolute_tracking_uri(cfg.logger.tracking_uri))
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    tables = seed_groups(client, experiment.experiment_id, options) if experiment else []
    tasks = set(cfg.compare.get("tasks") or [])  # the tasks compare shows (all when none is named)
    tables = [table for table in tables if not tasks or table[0].task in tasks]
    if not any(len(group.runs) > 1 for table in tables for group in table):
        return "", []
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    csv_path.write_text(seeds_csv(tables), encoding="utf-8")
    return seeds_markdown(tables, float(options.confidence)), [csv_path]
