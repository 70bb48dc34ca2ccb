"""train(cfg): fit a fusion model on the preprocessed shards and track the run in MLflow."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from fusion.tracking.figures import plot_confusion_matrix
from fusion.tracking.mlflow_logger import build_mlflow_logger, flat_params
from fusion.training.setup import build_callbacks, build_datamodule, build_module

RUN_INFO = "run.json"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Seed, build data/model/logger/trainer from cfg, fit, optionally test the best checkpoint."""
    pl.seed_everything(int(cfg.seed), workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    logger = build_mlflow_logger(cfg)
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=logger)

    _log_setup(logger, cfg, module, output_dir)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    fit_seconds = time.perf_counter() - started
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.test_after_fit:
        trainer.test(module, datamodule=datamodule, ckpt_path="best")
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
        log_test_report(logger, module.test_report, datamodule.classes, output_dir, cfg)
    epochs = max(1, trainer.current_epoch)
    logger.log_metrics({"time/fit_seconds": fit_seconds, "time/epoch_seconds": fit_seconds / epochs})
    _write_run_info(output_dir, logger, trainer)
    return metrics


@rank_zero_only
def _log_setup(logger, cfg: DictConfig, module, output_dir: Path) -> None:
    """Params (flattened config), parameter counts and the resolved config file."""
    logger.log_hyperparams(flat_params(cfg))
    logger.log_metrics({"params/total": module.net.num_parameters(),
                        "params/trainable": module.net.num_parameters(trainable_only=True)})
    config_path = output_dir / "config.yaml"
    config_path.write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    logger.experiment.log_artifact(logger.run_id, str(config_path))


@rank_zero_only
def log_test_report(logger, report: dict, classes: list[str], output_dir: Path, cfg: DictConfig) -> Path:
    """Confusion matrix PNG and per-class F1 of the test split, as MLflow artifacts."""
    title = f"{cfg.modality.name} · {cfg.fusion.name} · test"
    png = plot_confusion_matrix(report["confusion"].numpy(), classes, output_dir / "confusion_matrix.png", title)
    logger.experiment.log_artifact(logger.run_id, str(png))
    per_class = {f"test/f1_{name}": float(v) for name, v in zip(classes, report["f1_per_class"])}
    logger.log_metrics(per_class)
    return png


@rank_zero_only
def _write_run_info(output_dir: Path, logger, trainer: pl.Trainer) -> None:
    """run.json: the MLflow run and checkpoints, for the evaluate stage and for people."""
    ckpt = trainer.checkpoint_callback
    info = {"run_id": logger.run_id, "experiment_id": logger.experiment_id,
            "best_checkpoint": ckpt.best_model_path if ckpt else None,
            "last_checkpoint": ckpt.last_model_path if ckpt else None}
    (output_dir / RUN_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
