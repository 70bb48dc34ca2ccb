"""Several processes writing to one MLflow store (parallel train.py runs, a sweep's jobs, two people on one machine).

SQLite lets one writer at a time. MLflow waits for the lock itself (``PRAGMA busy_timeout``, 20 s per statement)
and its HTTP client retries a busy ``mlflow server``; what it does not cover, and what this module adds:

- **A new SQLite store created by several processes at once**: each runs MLflow's schema migrations on the same
  file and all but one fail ("table _alembic_tmp_latest_metrics already exists", "Online migration expected to
  match one row"). `initialise_store` lets one process create it under an exclusive file lock (``<db>.lock``).
- **"database is locked" after the busy timeout** (a long commit elsewhere, a slow disk): `RetryingClient` retries
  the call with exponential backoff. MLflow rolls the failed transaction back, so a retry writes it once.
- **Two processes creating the same experiment**: the second gets RESOURCE_ALREADY_EXISTS; `RetryingClient`'s
  create_experiment returns the experiment the first one created.
- **Two runs logging the same new dataset at once** (log_input): MLflow looks the dataset up, then inserts it, so
  the slower insert fails on the datasets table's unique key; `RetryingClient`'s log_inputs retries, and the
  retry finds the dataset the other run inserted.

The settings are ``logger.retry`` (conf/logger/mlflow.yaml)."""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, TEMPORARILY_UNAVAILABLE, ErrorCode

from fusion.tracking.store import SQLITE_PREFIX

LOCKED = ("database is locked", "database table is locked")
DATASET_RACE = "unique constraint failed: datasets."  # another run inserted the same dataset first
LOCK_SUFFIX = ".lock"
LOCK_POLL_SECONDS = 0.1  # how often a process waiting for the store's creation lock tries again


def is_locked(exc: BaseException) -> bool:
    """Whether an MLflow store call failed because another process held SQLite's write lock."""
    message = str(getattr(exc, "message", exc)).lower()
    busy = not isinstance(exc, MlflowException) or exc.error_code == ErrorCode.Name(TEMPORARILY_UNAVAILABLE)
    return busy and any(text in message for text in LOCKED)


def lost_dataset_race(exc: BaseException) -> bool:
    """Whether log_inputs failed because another run inserted the same dataset between MLflow's lookup and insert."""
    return DATASET_RACE in str(getattr(exc, "message", exc)).lower()


def with_retries(
    call: Callable[[], Any],
    attempts: int,
    first_wait_seconds: float,
    transient: Callable[[BaseException], bool] = is_locked,
) -> Any:
    """``call()``, again after 1×, 2×, 4×, ... ``first_wait_seconds`` (plus up to as much jitter) while it fails
    with a ``transient`` error ("database is locked" by default), at most ``attempts`` times in all."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts - 1 or not transient(exc):
                raise
            wait = first_wait_seconds * 2**attempt
            time.sleep(wait + random.uniform(0, wait))


class RetryingClient:
    """An MlflowClient whose every call is retried on "database is locked", whose log_inputs is also retried when
    another run inserted the same dataset first, and whose create_experiment returns the existing experiment when
    another process created it first."""

    def __init__(self, client: Any, attempts: int, first_wait_seconds: float):
        self._client, self._attempts, self._first_wait = client, int(attempts), float(first_wait_seconds)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def retried(*args: Any, **kwargs: Any) -> Any:
            return with_retries(lambda: attribute(*args, **kwargs), self._attempts, self._first_wait)

        return retried

    def log_inputs(self, run_id: str, *args: Any, **kwargs: Any) -> Any:
        return with_retries(
            lambda: self._client.log_inputs(run_id, *args, **kwargs),
            self._attempts,
            self._first_wait,
            lambda exc: is_locked(exc) or lost_dataset_race(exc),
        )

    def create_experiment(self, name: str, *args: Any, **kwargs: Any) -> str:
        try:
            return with_retries(
                lambda: self._client.create_experiment(name, *args, **kwargs), self._attempts, self._first_wait
            )
        except MlflowException as exc:
            if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            existing = self.get_experiment_by_name(name)
            if existing is None:
                raise
            return existing.experiment_id


def retrying(client: Any, retry: Mapping[str, Any]) -> RetryingClient:
    """``client`` wrapped with the ``logger.retry`` settings."""
    return RetryingClient(client, retry["attempts"], retry["first_wait_seconds"])


@contextmanager
def exclusive(lock_path: Path, timeout_seconds: float) -> Iterator[None]:
    """An exclusive lock on ``lock_path`` (created if needed), waited for at most ``timeout_seconds``."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{lock_path} was held by another process for over {timeout_seconds:.0f} s "
                        f"(logger.retry.init_lock_seconds); if no other run is starting, "
                        "delete it"
                    ) from None
                time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def initialise_store(tracking_uri: str, retry: Mapping[str, Any]) -> None:
    """Create (or migrate) a SQLite store while holding ``<db>.lock``, so processes starting together against a
    new store do not run MLflow's schema migrations at the same time. Other stores are left to MLflow."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return
    from mlflow.tracking import MlflowClient

    with sqlite_creation_lock(tracking_uri, float(retry["init_lock_seconds"])):
        retrying(MlflowClient(tracking_uri), retry).search_experiments(max_results=1)


@contextmanager
def sqlite_creation_lock(uri: str, timeout_seconds: float) -> Iterator[None]:
    """``<db>.lock`` held for a ``sqlite:///`` URI, so that one process at a time creates (or migrates) the
    database's schema; nothing to hold for other URIs (their servers serialise it)."""
    if not uri.startswith(SQLITE_PREFIX):
        yield
        return
    database = Path(uri[len(SQLITE_PREFIX) :])
    with exclusive(database.with_name(database.name + LOCK_SUFFIX), timeout_seconds):
        yield
