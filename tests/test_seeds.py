"""Comparisons over seeds (fusion/tracking/seeds.py) on a real SQLite MLflow store holding hand-made runs: the
grouping by configuration, mean ± std, the paired test against the best, the fusion gain and what is skipped."""

from __future__ import annotations

import csv
import io

import pytest
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri  # sets, then restores unset too
from omegaconf import OmegaConf

from fusion.tracking.seeds import RECORDS, seed_groups, seeds_csv

OPTIONS = OmegaConf.create({"ignore": ["seed"], "confidence": 0.95, "bootstrap_resamples": 500, "bootstrap_seed": 0})
RECORD_IDS = [f"r{i:02d}" for i in range(40)]


def _log(
    client: MlflowClient,
    experiment: str,
    modality: str,
    seed: int,
    acc: float,
    correct: int | None,
    extra_params: dict | None = None,
    tags: dict | None = None,
    finish: str = "FINISHED",
) -> str:
    """A finished run with the params and tags training logs, test/acc, and (with `correct`) a test_records.csv
    whose first `correct` records are right."""
    run = client.create_run(
        experiment, tags={"modality": modality, "fusion": "late", "task": "multiclass", **(tags or {})}
    )
    run_id = run.info.run_id
    for key, value in {
        "seed": seed,
        "modality/name": modality,
        "fusion/name": "late",
        "task/metric": "test/acc",
        "task/mode": "max",
        **(extra_params or {}),
    }.items():
        client.log_param(run_id, key, value)
    client.log_metric(run_id, "test/acc", acc)
    client.log_metric(run_id, "time/seconds_to_best", 10.0 + seed)
    if correct is not None:
        rows = io.StringIO()
        writer = csv.DictWriter(rows, fieldnames=["id", "correct"])
        writer.writeheader()
        writer.writerows({"id": i, "correct": int(n < correct)} for n, i in enumerate(RECORD_IDS))
        client.log_text(run_id, rows.getvalue(), RECORDS)
    client.set_terminated(run_id, finish)
    return run_id


@pytest.fixture()
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("seeds", artifact_location=str(tmp_path / "artifacts"))
    with _use_tracking_uri(uri):  # then back to what it was, unset included (other tests' MLflow calls see no change)
        yield client, experiment


def test_runs_are_grouped_by_everything_but_the_seed_with_their_statistics(store):
    client, experiment = store
    fused = [_log(client, experiment, "text+image", s, acc, 36) for s, acc in enumerate((0.90, 0.92, 0.94))]
    text = [_log(client, experiment, "text", s, acc, 20) for s, acc in enumerate((0.50, 0.52))]
    _log(client, experiment, "text+image", 3, 0.99, 40, finish="FAILED")  # not finished: left out
    _log(client, experiment, "text+image", 0, 0.10, 40, tags={"kind": "compare"})  # bookkeeping run: left out
    (table,) = seed_groups(client, experiment, OPTIONS)
    best, single = table
    assert {r.info.run_id for r in best.runs} == set(fused) and {r.info.run_id for r in single.runs} == set(text)
    assert best.summary.n == 3 and best.summary.mean == pytest.approx(0.92)
    assert best.summary.std == pytest.approx(0.02) and best.summary.low < 0.92 < best.summary.high
    assert single.summary.mean == pytest.approx(0.51)
    # paired over the 40 records: 36 right against 20 right, every seed alike -> a difference of -16/40, significant
    assert single.vs_best.estimate == pytest.approx(-16 / 40) and single.vs_best.significant
    assert best.vs_best is None and best.gain.estimate == pytest.approx(0.41) and best.gain.low > 0
    assert (best.label, single.label) == ("text+image · late", "text · late")
    rows = list(csv.DictReader(io.StringIO(seeds_csv([table]))))
    assert [(r["rank"], r["n_seeds"], r["seeds"]) for r in rows] == [("1", "3", "0 1 2"), ("2", "2", "0 1")]
    assert rows[1]["significant"] == "True" and rows[0]["significant"] == ""


def test_a_setting_other_than_the_seed_makes_its_own_group_named_by_that_setting(store):
    client, experiment = store
    for seed in (0, 1):
        _log(client, experiment, "text+image", seed, 0.80, 30, {"optim/lr": "0.001"})
        _log(client, experiment, "text+image", seed, 0.85, 30, {"optim/lr": "0.002"})
    (table,) = seed_groups(client, experiment, OPTIONS)
    assert [g.label for g in table] == ["text+image · late · optim.lr=0.002", "text+image · late · optim.lr=0.001"]
    assert all(g.summary.n == 2 for g in table)
    assert not table[1].vs_best.significant  # same records right in both: no difference to find
    ignored = OmegaConf.merge(OPTIONS, {"ignore": ["seed", "optim"]})
    (merged,) = seed_groups(client, experiment, ignored)
    assert len(merged) == 1 and merged[0].summary.n == 4
