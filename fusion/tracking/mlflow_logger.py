"""MLflow set-up: an explicit SQLite store and artifact folder, run name and lineage tags (or no tracking)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger

from fusion.config import flatten
from fusion.search.trial import trial_tags
from fusion.tracking.lineage import data_version, git_commit
from fusion.tracking.no_tracking import NoTrackingLogger
from fusion.tracking.retry import initialise_store, retrying
from fusion.tracking.store import absolute_tracking_uri, artifact_uri


def run_tags(cfg: DictConfig) -> dict[str, str]:
    commit, dirty = git_commit()
    return {
        "task": cfg.task.name,
        "modality": cfg.modality.name,
        "modality_slug": cfg.modality.slug,
        "fusion": cfg.fusion.name,
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "data_version": data_version(cfg.data.processed_dir),
        "data_root": str(cfg.data.root),
        **trial_tags(cfg),  # a search trial: nested under the study's run (fusion/search/)
    }


def build_logger(cfg: DictConfig, run_id: str | None = None) -> MLFlowLogger | NoTrackingLogger:
    """The run's logger: MLflow (conf/logger/mlflow.yaml), or one that records nothing (`logger=none`)."""
    if cfg.logger.get("name", "mlflow") == "none":
        return NoTrackingLogger()
    return build_mlflow_logger(cfg, run_id)


def build_mlflow_logger(cfg: DictConfig, run_id: str | None = None) -> MLFlowLogger:
    """Lightning's MLFlowLogger on the configured store; `run_id` continues an existing run. Safe with other
    processes writing to the same store (fusion/tracking/retry.py, ``logger.retry``)."""
    log = cfg.logger
    tracking_uri = absolute_tracking_uri(log.tracking_uri)
    initialise_store(tracking_uri, log.retry)
    logger = MLFlowLogger(
        experiment_name=log.experiment_name,
        run_name=log.run_name or f"{cfg.modality.slug}-{cfg.fusion.name}",
        tracking_uri=tracking_uri,
        artifact_location=artifact_uri(log.artifact_location),
        tags=None if run_id else run_tags(cfg),
        run_id=run_id,
        log_model=False,
    )
    logger._mlflow_client = retrying(logger._mlflow_client, log.retry)  # every call of the logger goes through it
    return logger


def flat_params(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as flat 'a/b/c' keys (MLflow keys must not hold '+')."""
    return flatten(OmegaConf.to_container(cfg, resolve=True), sep="/")
