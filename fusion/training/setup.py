"""Build the objects a run needs from the config: data, model, callbacks (shared by train and evaluate)."""

from __future__ import annotations

import logging

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, EarlyStopping, LearningRateMonitor, TQDMProgressBar

from fusion.data.augment import build_augment
from fusion.data.datamodule import MultimodalDataModule
from fusion.models.builder import build_model
from fusion.tasks.objectives import build_task
from fusion.training.best_checkpoint import BestCheckpoint
from fusion.training.module import FusionModule
from fusion.training.step_floor import StepFloor, automatic_ceiling
from fusion.training.throughput import DataWaitMonitor
from fusion.training.time_to_best import TimeToBest
from fusion.training.weight_averaging import WeightEMA

log = logging.getLogger(__name__)


def set_torch_flags(cfg: DictConfig) -> None:
    """The process-wide torch switches the config holds (trainer.deterministic itself is Lightning's)."""
    torch.utils.deterministic.fill_uninitialized_memory = bool(cfg.get("fill_uninitialized_memory", False))


def build_datamodule(cfg: DictConfig) -> MultimodalDataModule:
    data = cfg.data
    return MultimodalDataModule(
        data.processed_dir,
        list(cfg.modality.names),
        batch_size=int(data.batch_size),
        num_workers=int(data.num_workers),
        pin_memory=data.pin_memory,
        persistent_workers=bool(data.persistent_workers),
        task=cfg.task.name,
        shuffle=bool(data.get("shuffle", True)),
        prefetch_factor=data.get("prefetch_factor"),
        seed=int(cfg.seed),
        shards_url=data.get("shards_url"),
        cache_dir=data.get("cache_dir"),
        memory_cache_mb=float(data.get("memory_cache_mb", 0.0)),
    )


def build_module(cfg: DictConfig, datamodule: MultimodalDataModule) -> FusionModule:
    """The task (conf/task/) on the data's labels, and a model with one output per class (1 for regression)."""
    task = build_task(cfg.task, datamodule.labels)
    if task.uses_class_counts:
        task.fit_class_counts(datamodule.class_counts())
    net = build_model(
        cfg.model,
        cfg.fusion,
        list(cfg.modality.names),
        datamodule.metas,
        datamodule.num_outputs,
        multiclass=cfg.task.name == "multiclass",
    )
    for m in raised_pretrained_rates(cfg):
        log.warning(
            "optim.lr_scale.%s=%s raises the pretrained %s backbone's learning rate above optim.optimizer.lr; "
            "fine-tuning usually wants optim.lr_scale.%s=1.0 or less",
            m,
            cfg.optim.lr_scale[m],
            m,
            m,
        )
    compile_cfg = cfg.model.get("compile")
    if compile_cfg is not None and compile_cfg.enabled:
        # In place (nn.Module.compile): parameter names and checkpoints stay those of the eager network.
        net.compile(mode=compile_cfg.mode, dynamic=compile_cfg.dynamic, fullgraph=bool(compile_cfg.fullgraph))
    return FusionModule(
        net,
        task,
        optimizer=hydra.utils.instantiate(cfg.optim.optimizer),
        scheduler=hydra.utils.instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
        modality_dropout=_plain(cfg.model.get("modality_dropout", 0.0)),
        augment=build_augment(_plain(cfg.get("augment")), datamodule.metas),
        balance=_plain(cfg.get("balance")),
        scheduler_interval=str(cfg.optim.get("scheduler_interval", "epoch")),
        vote_in_validation=bool(cfg.model.get("vote_in_validation", False)),
        lr_scale=_plain(cfg.optim.get("lr_scale")),
    )


def raised_pretrained_rates(cfg: DictConfig) -> list[str]:
    """The run's modalities whose pretrained, trainable backbone ``optim.lr_scale`` raises above the optimiser's
    rate; the default's factor is for encoders learned from scratch, and fine-tuning usually wants 1 or less."""
    scales = cfg.optim.get("lr_scale") or {}
    raised = []
    for m in cfg.modality.names:
        encoder = cfg.model.get(m) or {}
        pretrained = encoder.get("kind") == "pretrained" or (
            encoder.get("kind") == "timm" and encoder.get("pretrained")
        )
        factor = scales.get(m, 1.0)  # checked by the module: a factor that is no number fails there, with its fix
        if isinstance(factor, (int, float)) and factor > 1 and pretrained and not encoder.get("freeze"):
            raised.append(m)
    return raised


def _plain(value):
    return OmegaConf.to_container(value) if isinstance(value, DictConfig) else value


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    ckpt = cfg.callbacks.checkpoint
    callbacks: list[Callback] = [
        BestCheckpoint(
            dirpath=cfg.paths.checkpoint_dir,
            filename=ckpt.filename,
            monitor=ckpt.monitor,
            mode=ckpt.mode,
            save_last=bool(ckpt.save_last),
            enable_version_counter=False,
            on_tie=str(ckpt.on_tie),
        ),
        LearningRateMonitor(logging_interval="epoch"),
        TQDMProgressBar(refresh_rate=int(cfg.callbacks.progress_bar.refresh_rate)),
    ]
    if cfg.callbacks.get("throughput", {}).get("enabled", False):
        callbacks.append(DataWaitMonitor())
    if cfg.callbacks.get("time_to_best", {}).get("enabled", False):
        callbacks.append(TimeToBest(ckpt.monitor, ckpt.mode))
    ema = cfg.callbacks.get("weight_averaging", {})
    if ema.get("enabled", False):
        callbacks.append(WeightEMA(float(ema.decay), float(ema.warmup)))
    floor, stop = cfg.callbacks.step_floor, cfg.callbacks.early_stopping
    automatic_patience = stop.get("patience") is None
    # floor and ceiling only where the value is automatic (null); it always logs the ceiling and patience the run got
    automatic = bool(automatic_ceiling(cfg))
    callbacks.append(
        StepFloor(
            int(floor.min_steps) if automatic else 0,
            int(floor.min_patience_steps) if automatic_patience else 0,
            floor.get("max_steps") if automatic else None,
        )
    )
    if stop.enabled:
        callbacks.append(
            EarlyStopping(
                monitor=ckpt.monitor,
                mode=ckpt.mode,
                patience=int(floor.patience if automatic_patience else stop.patience),
                min_delta=float(stop.get("min_delta", 0.0)),
            )
        )
    return callbacks
