"""The hyperparameter search for real (fusion/search/, conf/hparams_search/): a tiny 6-trial study is killed
after two complete trials and resumed, prunes deterministically, is tracked in MLflow, promotes a config that
reproduces its best trial, confirms its leaders over seeds, and accepts two worker processes on one study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from fusion.search.storage import open_storage
from tests.helpers.config import TINY_TRAINING

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
COMPLETE, PRUNED, FAIL, RUNNING = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.FAIL,
    optuna.trial.TrialState.RUNNING,
)
SQLITE_TIMEOUT = 60  # seconds to wait for a worker's schema creation or write lock
RUN_TIMEOUT = 300  # seconds for one search process (6 tiny trials take about a minute on 2 cores)
# trainer.max_epochs=2 trials are pruned at their epoch-1 report (no val/acc reaches 1.01), 1-epoch trials never
# reach a pruned step: pruning is deterministic. RandomSampler(seed=2) draws max_epochs 1, 1, 2, ... first.
SEARCH = """# @package _global_
defaults:
  - override /hydra/sweeper: fusion_optuna
test_missing_modalities: false
explain:
  enabled: false
serving:
  log_model: false
hydra:
  sweeper:
    study_name: {study}
    n_trials: {n_trials}
    heartbeat_seconds: 1
    grace_seconds: 2
    sampler:
      _target_: optuna.samplers.RandomSampler
      seed: 2
    pruner:
      _target_: optuna.pruners.ThresholdPruner
      lower: 1.01
      n_warmup_steps: 1
    params:
      trainer.max_epochs: choice(1, 2)
      optim.optimizer.lr: interval(1e-3, 3e-3)
"""
FIXED = [
    "modality=text",
    *[o for o in TINY_TRAINING if not o.startswith("trainer.max_epochs")],
    "callbacks.progress_bar.refresh_rate=0",
    "test_missing_modalities=false",
    "explain.enabled=false",
    "serving.log_model=false",
]


def _setup(tmp: Path, processed: Path, study: str, n_trials: int) -> tuple[list[str], Path]:
    """The search command (its own config dir with hparams_search/tiny.yaml) and the study's database."""
    (tmp / "cd" / "hparams_search").mkdir(parents=True, exist_ok=True)
    (tmp / "cd" / "hparams_search" / "tiny.yaml").write_text(SEARCH.format(study=study, n_trials=n_trials))
    db = tmp / "optuna.db"
    return [
        sys.executable,
        "train.py",
        "-m",
        "-cd",
        str(tmp / "cd"),
        "hparams_search=tiny",
        *_data(tmp, processed),
        f"hydra.sweeper.storage=sqlite:///{db}",
        f"hydra.sweep.dir={tmp / 'multirun'}",
    ], db


def _data(tmp: Path, processed: Path) -> list[str]:
    return [
        *FIXED,
        f"data.processed_dir={processed}",
        f"logger.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        f"logger.artifact_location={tmp / 'mlartifacts'}",
    ]


def _trials(db: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read while the search runs: through open_storage, which waits for the schema
    creation lock (opening the file while a worker creates it raced in Optuna's alembic_version insert)."""
    if not db.exists():
        return []
    try:
        storage = open_storage(f"sqlite:///{db}", None, None, 0, SQLITE_TIMEOUT)
        return optuna.load_study(study_name=study, storage=storage).trials
    except KeyError:  # the study is not created yet
        return []


def _check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"search failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )


@pytest.fixture(scope="module")
def killed_and_resumed(processed_dir, tmp_path_factory):
    """Start the 6-trial search, kill it once two trials are complete (and the third is running), rerun it."""
    tmp = tmp_path_factory.mktemp("search")
    args, db = _setup(tmp, processed_dir, "tiny", 6)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(tmp / "first.log", "w") as log:
        first = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + RUN_TIMEOUT
        try:
            while time.monotonic() < deadline and first.poll() is None:
                trials = _trials(db, "tiny")
                running = [t.number for t in trials if t.state == RUNNING]
                # the running trial's job has started (its Hydra folder exists), so its heartbeat is recorded
                if (
                    sum(t.state == COMPLETE for t in trials) >= 2
                    and running
                    and list((tmp / "multirun").glob(f"{running[0]}-*"))
                ):
                    break
                time.sleep(0.2)
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
                first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL, (
        f"the first search ended ({first.returncode}) before it could be killed:\n"
        f"{(tmp / 'first.log').read_text()[-5000:]}"
    )
    before = _trials(db, "tiny")
    second = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    _check(second)
    return tmp, db, before, _trials(db, "tiny")


def test_a_killed_search_resumes_without_repeating_a_trial(killed_and_resumed):
    _, _, before, after = killed_and_resumed
    done_before = {t.number: t for t in before if t.state in (COMPLETE, PRUNED)}
    assert sum(t.state == COMPLETE for t in before) == 2, [t.state for t in before]
    killed = [t.number for t in before if t.state == RUNNING]
    assert killed, "the first process was killed while a trial was running"
    by_number = {t.number: t for t in after}
    for number, trial in done_before.items():  # finished trials are kept as they were, not run again
        assert (by_number[number].state, by_number[number].params, by_number[number].datetime_complete) == (
            trial.state,
            trial.params,
            trial.datetime_complete,
        )
    assert all(by_number[n].state == FAIL for n in killed)  # the killed trial's heartbeat stopped
    finished = [t for t in after if t.state in (COMPLETE, PRUNED)]
    assert len(finished) == 6
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 6  # no parameters trained twice
    retried = [t for t in finished if t.system_attrs.get("failed_trial") in killed]
    assert retried and retried[0].params == by_number[killed[0]].params  # the killed trial's parameters ran again


def test_pruned_trials_are_marked_in_optuna_and_mlflow(killed_and_resumed):
    tmp, _, _, after = killed_and_resumed
    pruned = [t for t in after if t.state == PRUNED]
    assert pruned and all(t.params["trainer.max_epochs"] == 2 and max(t.intermediate_values) == 1 for t in pruned)
    assert all(t.params["trainer.max_epochs"] == 1 for t in after if t.state == COMPLETE)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fusion")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.kind = 'search'")
    for trial in pruned:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert (run.data.tags["search/state"], run.info.status) == ("PRUNED", "KILLED")
        assert "time/seconds_to_best" in run.data.metrics
    for trial in after:
        if trial.state in (COMPLETE, PRUNED):
            tags = client.get_run(trial.user_attrs["mlflow_run_id"]).data.tags
            assert (tags["mlflow.parentRunId"], tags["search/trial"]) == (parent.info.run_id, str(trial.number))
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"study_trials.csv", "best_config.yaml", "optimization_history.png", "param_importances.png"} <= artifacts
    assert parent.data.tags["search/n_pruned"] == str(len(pruned))


def test_the_promoted_config_reproduces_the_best_trial(killed_and_resumed, processed_dir):
    tmp, db, _, after = killed_and_resumed
    out = tmp / "cd" / "experiment" / "winner.yaml"
    promoted = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusion.search",
            "promote",
            "--study",
            "tiny",
            "--storage",
            f"sqlite:///{db}",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _check(promoted)
    best = max((t for t in after if t.state == COMPLETE), key=lambda t: t.value)
    text = out.read_text()
    assert f"trial {best.number}" in text and "seed: 42" in text
    run_dir = tmp / "retrain"
    retrain = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-cd",
            str(tmp / "cd"),
            "+experiment=winner",
            *_data(tmp, processed_dir),
            f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    _check(retrain)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    again = client.get_run(json.loads((run_dir / "run.json").read_text())["run_id"]).data.metrics
    trial_run = client.get_run(best.user_attrs["mlflow_run_id"]).data.metrics
    assert again["val/acc_best"] == pytest.approx(best.value, abs=1e-6)
    assert again["val/loss"] == pytest.approx(trial_run["val/loss"], abs=1e-6)  # the same training, not a tie


def test_confirm_retrains_the_leaders_over_seeds_and_promotes_the_best_mean(killed_and_resumed):
    tmp, db, _, after = killed_and_resumed
    runs, out = tmp / "confirm", tmp / "cd" / "experiment" / "confirmed.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusion.search",
            "confirm",
            "--study",
            "tiny",
            "--storage",
            f"sqlite:///{db}",
            "--top",
            "2",
            "--seeds",
            "42,0",
            "--runs-dir",
            str(runs),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    _check(result)
    complete = sorted((t for t in after if t.state == COMPLETE), key=lambda t: (-t.value, t.number))
    confirmed = json.loads((runs / "confirm.json").read_text())["trials"]
    assert sorted(row["trial"] for row in confirmed) == sorted(t.number for t in complete[:2])
    by_number = {t.number: t for t in complete}
    for row in confirmed:
        values = row["values"]
        # seed 42 is the study's own: the retraining reproduces the trial's objective
        assert values["42"] == pytest.approx(by_number[row["trial"]].value, abs=1e-6)
        mean = (values["42"] + values["0"]) / 2
        std = abs(values["42"] - values["0"]) / 2**0.5  # sample std of two values
        assert row["mean"] == pytest.approx(mean) and row["std"] == pytest.approx(std)
    assert confirmed[0]["mean"] >= confirmed[1]["mean"]
    header = out.read_text().splitlines()[1]
    assert f"trial {confirmed[0]['trial']} " in header and "fusion.search confirm" in header
    assert f"{confirmed[0]['mean']:.4f} ± {confirmed[0]['std']:.4f}" in out.read_text()
    assert "mean ± std" in result.stdout and f"wrote {out}" in result.stdout


def test_two_workers_share_one_study(processed_dir, tmp_path):
    args, db = _setup(tmp_path, processed_dir, "parallel", 4)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    workers = [
        subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=RUN_TIMEOUT)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    trials = _trials(db, "parallel")
    finished = [t for t in trials if t.state in (COMPLETE, PRUNED)]
    assert 4 <= len(finished) <= 5  # a worker may finish the trial it had started when the other reached 4
    assert all("[search] trial" in o for o in outputs)  # both workers ran trials
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fusion")
    assert len(client.search_runs([experiment.experiment_id], "tags.kind = 'search'")) == 1
