"""`logger=none`: a Lightning logger that records nothing, for machines without an MLflow store (a bare GPU box).

Training keeps its callbacks (the learning-rate monitor needs a logger), checkpoints, run folder and run.json;
every MLflow call of the run goes to a stand-in client that accepts it and does nothing."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers import Logger


class DiscardingClient:
    """Stands in for the MLflow client of a run that is not tracked: every method call is accepted and ignored."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class NoTrackingLogger(Logger):
    """Accepts metrics and hyperparameters and keeps none of them; `run_id` is None (nothing to resume or serve)."""

    run_id = None
    experiment_id = None

    @property
    def name(self) -> str:
        return "none"

    @property
    def version(self) -> None:
        return None

    @property
    def experiment(self) -> DiscardingClient:
        return DiscardingClient()

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        return None

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        return None
