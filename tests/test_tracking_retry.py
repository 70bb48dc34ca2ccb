"""fusion/tracking/retry.py without processes: what counts as a busy store, the backoff, the experiment-creation
race and the store-creation lock (tests/test_parallel_writers.py runs real writers)."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_ALREADY_EXISTS, TEMPORARILY_UNAVAILABLE

from fusion.config import compose
from fusion.tracking.retry import RetryingClient, exclusive, initialise_store, is_locked, with_retries

RETRY = compose().logger.retry


def locked() -> MlflowException:
    """What MLflow's SQLAlchemy store raises when SQLite's lock outlasts its busy timeout."""
    return MlflowException(sqlite3.OperationalError("database is locked"), error_code=TEMPORARILY_UNAVAILABLE)


def test_only_a_locked_database_counts_as_busy():
    assert is_locked(locked()) and is_locked(sqlite3.OperationalError("database table is locked"))
    assert not is_locked(MlflowException("database is locked", error_code=INVALID_PARAMETER_VALUE))
    assert not is_locked(MlflowException("deadline", error_code=TEMPORARILY_UNAVAILABLE))
    assert not is_locked(ValueError("bad value"))


def test_a_busy_call_is_retried_until_it_succeeds_and_other_errors_are_not(monkeypatch):
    waits = []
    monkeypatch.setattr("fusion.tracking.retry.time.sleep", waits.append)
    outcomes = iter([locked(), locked(), "logged"])

    def call():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert with_retries(call, attempts=3, first_wait_seconds=0.5) == "logged"
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0  # doubled, with jitter
    with pytest.raises(MlflowException, match="database is locked"):
        with_retries(lambda: (_ for _ in ()).throw(locked()), attempts=2, first_wait_seconds=0.0)
    calls = []
    with pytest.raises(ValueError):
        with_retries(
            lambda: calls.append(1) or (_ for _ in ()).throw(ValueError("no")), attempts=5, first_wait_seconds=0.0
        )
    assert calls == [1]


class _Experiment:
    experiment_id = "7"


class _RacingClient:
    """An MlflowClient whose experiment another process has just created."""

    def create_experiment(self, name, artifact_location=None):
        raise MlflowException(f"Experiment(name={name}) already exists.", error_code=RESOURCE_ALREADY_EXISTS)

    def get_experiment_by_name(self, name):
        return _Experiment()

    tracking_uri = "sqlite:///x.db"


def test_creating_an_experiment_another_process_created_returns_it():
    client = RetryingClient(_RacingClient(), RETRY.attempts, RETRY.first_wait_seconds)
    assert client.create_experiment("fusion", artifact_location="file:///a") == "7"
    assert client.tracking_uri == "sqlite:///x.db"  # attributes pass through


DATASET_RACE = (
    "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, "
    "datasets.digest"
)  # what an `mlflow server` over SQLite answers the run that lost the race


class _FailingOnceClient:
    """A real MlflowClient whose first log_inputs fails with ``message`` (e.g. another run inserted the same
    dataset between MLflow's lookup and its insert)."""

    def __init__(self, client, message: str):
        self.client, self.message, self.calls = client, message, 0

    def log_inputs(self, run_id, datasets=None):
        self.calls += 1
        if self.calls == 1:
            raise MlflowException(self.message, error_code=INVALID_PARAMETER_VALUE)
        return self.client.log_inputs(run_id, datasets=datasets)


def test_logging_a_dataset_another_run_inserted_first_is_retried(tmp_path):
    from mlflow.entities import Dataset, DatasetInput
    from mlflow.tracking import MlflowClient

    real = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = real.create_experiment("race", artifact_location=str(tmp_path / "artifacts"))
    run_id = real.create_run(experiment).info.run_id
    dataset = DatasetInput(Dataset(name="sample-train", digest="abc", source_type="local", source="/data"))
    racing = _FailingOnceClient(real, DATASET_RACE)
    RetryingClient(racing, RETRY.attempts, 0.0).log_inputs(run_id, datasets=[dataset])
    assert racing.calls == 2
    assert [i.dataset.name for i in real.get_run(run_id).inputs.dataset_inputs] == ["sample-train"]
    other = _FailingOnceClient(real, "UNIQUE constraint failed: runs.run_uuid")
    with pytest.raises(MlflowException, match="runs.run_uuid"):  # another error is not retried
        RetryingClient(other, RETRY.attempts, 0.0).log_inputs(run_id, datasets=[dataset])
    assert other.calls == 1


def test_a_new_sqlite_store_is_created_once_under_its_lock(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    initialise_store(uri, RETRY)
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "mlflow.db.lock").is_file()
    holding, release = threading.Event(), threading.Event()

    def hold():
        with exclusive(tmp_path / "mlflow.db.lock", 5):
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    with pytest.raises(TimeoutError, match="logger.retry.init_lock_seconds"):
        initialise_store(uri, {**RETRY, "init_lock_seconds": 0.3})
    release.set()
    holder.join()
    initialise_store("http://127.0.0.1:1", RETRY)  # not SQLite: left to MLflow, nothing is contacted
