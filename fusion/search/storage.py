"""The study's database: any Optuna RDB URL; a relative sqlite:/// path is made absolute (like mlflow.db), and
SQLite gets a lock timeout so that several worker processes can share one file, and its schema is created under
``<db>.lock`` (workers starting together on a new file raced in Optuna's schema creation)."""

from __future__ import annotations

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from fusion.tracking.retry import sqlite_creation_lock
from fusion.tracking.store import absolute_tracking_uri


def open_storage(
    url: str, heartbeat_seconds: int | None, grace_seconds: int | None, retry_failed: int, sqlite_timeout_seconds: float
) -> RDBStorage:
    """RDBStorage with heartbeats (a trial whose process died is marked FAIL after `grace_seconds` and its
    parameters are queued again up to `retry_failed` times: Optuna 5's stale-trial callback, which replaced the
    deprecated RetryFailedTrialCallback); heartbeat_seconds=None: no heartbeat."""
    url = absolute_tracking_uri(url)
    engine_kwargs = {"connect_args": {"timeout": sqlite_timeout_seconds}} if url.startswith("sqlite") else {}
    options = (
        {}
        if heartbeat_seconds is None
        else {
            "heartbeat_interval": int(heartbeat_seconds),
            "grace_period": None if grace_seconds is None else int(grace_seconds),
            "heartbeat_stale_trial_callback": (
                RetryHeartbeatStaleTrialCallback(max_retry=int(retry_failed)) if retry_failed else None
            ),
        }
    )
    with sqlite_creation_lock(url, sqlite_timeout_seconds):
        return RDBStorage(url, engine_kwargs=engine_kwargs, **options)


def finished_count(study: optuna.Study) -> int:
    """Trials that count towards n_trials: complete or pruned (failed ones are retried, not counted)."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))
