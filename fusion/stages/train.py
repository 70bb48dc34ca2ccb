"""train(cfg): fit a fusion model on the preprocessed shards and track the run in MLflow."""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from fusion.data.ablation import WithoutModalities
from fusion.data.datamodule import MultimodalDataModule
from fusion.data.shards import DataSetupError
from fusion.search.trial import trial_callbacks
from fusion.stages.publish import publish_run
from fusion.tasks.objectives import Task
from fusion.tracking.datasets import log_datasets
from fusion.tracking.lineage import data_version
from fusion.tracking.mlflow_logger import build_logger, flat_params
from fusion.training.checkpoints import AtomicCheckpointIO, CheckpointError, network_state
from fusion.training.informative import check_modalities
from fusion.training.module import FusionModule, NonFiniteLossError
from fusion.training.resume import (
    RUN_CONFIG,
    RUN_INFO,
    ResumeError,
    ResumeState,
    check_same_config,
    read_resume_state,
    resolve_checkpoint,
)
from fusion.training.setup import build_callbacks, build_datamodule, build_module, set_torch_flags
from fusion.training.step_floor import automatic_ceiling
from fusion.training.test_records import log_test_records, outcome_metrics

# Errors that end a run with a message naming the fix (the CLIs print them without a traceback).
TRAINING_ERRORS = (NonFiniteLossError, ResumeError, CheckpointError, DataSetupError)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Seed, build data/model/logger/trainer from cfg, fit (or resume: cfg.ckpt_path), optionally test the
    best checkpoint (then again without each modality). Returns the last epoch's metrics (incl.
    <task.monitor>_best) and the test metrics."""
    pl.seed_everything(int(cfg.seed), workers=True)
    set_torch_flags(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = resolve_checkpoint(cfg.get("ckpt_path"), cfg.paths.checkpoint_dir)
    run_id = None
    if checkpoint is not None:
        state = read_resume_state(checkpoint)
        check_same_config(state, cfg, checkpoint)
        run_id = state["mlflow_run_id"]
        _announce_resume(checkpoint, run_id)
    datamodule = build_datamodule(cfg)
    datamodule.check_every_modality_trains()
    datamodule.check_validation_split()
    if cfg.test_after_fit:
        datamodule.check_test_split()
    module = build_module(cfg, datamodule)
    logger = build_logger(cfg, run_id=run_id)
    # an Optuna trial's pruning comes with its callbacks (only in a search: cfg.search)
    callbacks = [*build_callbacks(cfg), *trial_callbacks(cfg), ResumeState(logger.run_id, cfg)]
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger, plugins=[AtomicCheckpointIO()], **automatic_ceiling(cfg)
    )
    if checkpoint is None:
        _log_setup(logger, cfg, module, datamodule, output_dir)
    _write_run_info(output_dir, logger, trainer, status="running")
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
    fit_seconds, fit_cpu_seconds = time.perf_counter() - started, _cpu_seconds() - cpu_started
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.test_after_fit:
        trainer.test(module, datamodule=datamodule, ckpt_path="best", weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
        log_test_report(logger, module.task, module.test_report, output_dir, report_title(cfg))
        if cfg.get("test_records", False):
            outcome = log_test_records(trainer, module, datamodule, logger, output_dir)
            metrics.update(outcome_metrics(outcome or {}, module.task.name))
        if cfg.get("test_missing_modalities", False):
            metrics.update(missing_modality_metrics(trainer, module, datamodule, logger))
        check = cfg.balance.get("modality_check")
        if check is not None and check.enabled:
            metrics.update(check_modalities(trainer, module, datamodule, logger, float(check.alpha)))
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        publish_run(
            cfg,
            network_state(best) if best else module.net,
            datamodule,
            logger,
            output_dir / "explain",
            bundle_dir=output_dir / "bundle",
        )
    epochs = max(1, trainer.current_epoch)
    timing = {
        "time/fit_seconds": fit_seconds,
        "time/epoch_seconds": fit_seconds / epochs,
        "time/fit_cpu_seconds": fit_cpu_seconds,
    }
    logger.log_metrics(timing)
    metrics.update(timing)  # returned and in run.json too: the cost of a run that MLflow does not track
    _write_run_info(output_dir, logger, trainer, status="finished", metrics=metrics)
    return metrics


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (loader workers once they exit): the
    cost of fitting on a shared machine, where the wall clock also counts other people's work."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@rank_zero_only
def _announce_resume(checkpoint: Path, run_id: str) -> None:
    print(f"Resuming from {checkpoint} (MLflow run {run_id})", flush=True)


@rank_zero_only
def _log_setup(logger, cfg: DictConfig, module, datamodule: MultimodalDataModule, output_dir: Path) -> None:
    """Params (flattened config), parameter counts, the resolved config file and the dataset (one input per split)."""
    logger.log_hyperparams(flat_params(cfg))
    logger.log_metrics(
        {
            "params/total": module.net.num_parameters(),
            "params/trainable": module.net.num_parameters(trainable_only=True),
        }
    )
    config_path = output_dir / RUN_CONFIG
    config_path.write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    logger.experiment.log_artifact(logger.run_id, str(config_path))
    log_datasets(
        logger.experiment,
        logger.run_id,
        str(cfg.data.root),
        data_version(cfg.data.processed_dir),
        datamodule.records,
        datamodule.modalities,
    )


def report_title(cfg: DictConfig) -> str:
    return f"{cfg.modality.name} · {cfg.fusion.name} · test"


@rank_zero_only
def log_test_report(logger, task: Task, report: dict, output_dir: Path, title: str) -> Path:
    """The task's test figure (task.figure: confusion matrix, per-class F1 or predicted vs true) as an
    MLflow artifact, and its extra test metrics (per-class F1)."""
    png = task.plot(report, output_dir / task.figure, title)
    logger.experiment.log_artifact(logger.run_id, str(png))
    extra = task.report_scalars(report)
    if extra:
        logger.log_metrics(extra)
    return png


def missing_modality_metrics(
    trainer: pl.Trainer, module: FusionModule, datamodule: MultimodalDataModule, logger
) -> dict[str, float]:
    """Test the module's current weights with each modality of a multi-modal run missing for every test
    sample (present and masks False, content zeroed); logs `<task.metric>_without_<modality>` to the
    run. The test/* metrics of these passes are not logged: they would overwrite the real ones."""
    if len(datamodule.modalities) < 2:
        return {}
    metric = module.task.metric
    results = {}
    for modality in datamodule.modalities:
        loader = datamodule.loader("test", collate=WithoutModalities(datamodule.collate, [modality]))
        with _loggers_paused(trainer):
            tested = trainer.test(module, dataloaders=loader, verbose=False)[0]
        results[f"{metric}_without_{modality}"] = float(tested[metric])
    logger.log_metrics(results)
    return results


@contextmanager
def _loggers_paused(trainer: pl.Trainer) -> Iterator[None]:
    loggers = trainer.loggers
    trainer.loggers = []
    try:
        yield
    finally:
        trainer.loggers = loggers


@rank_zero_only
def _write_run_info(
    output_dir: Path, logger, trainer: pl.Trainer, status: str, metrics: dict[str, float] | None = None
) -> None:
    """run.json: the MLflow run and checkpoints, for the evaluate stage, search confirmation and people; written
    when training starts (status running) and when it ends (finished, with the metrics train() returns)."""
    ckpt = trainer.checkpoint_callback
    info = {
        "run_id": logger.run_id,
        "experiment_id": logger.experiment_id,
        "status": status,
        "best_checkpoint": ckpt.best_model_path if ckpt else None,
        "last_checkpoint": ckpt.last_model_path if ckpt else None,
    }
    if metrics is not None:
        info["metrics"] = metrics
    (output_dir / RUN_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
