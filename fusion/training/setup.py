"""Build the objects a run needs from the config: data, model, callbacks (shared by train and evaluate)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig
from pytorch_lightning.callbacks import (Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint,
                                         TQDMProgressBar)

from fusion.data.datamodule import MultimodalDataModule
from fusion.models.builder import build_model
from fusion.training.module import FusionClassifierModule


def build_datamodule(cfg: DictConfig) -> MultimodalDataModule:
    data = cfg.data
    return MultimodalDataModule(data.processed_dir, list(cfg.modality.names), batch_size=int(data.batch_size),
                                num_workers=int(data.num_workers), pin_memory=bool(data.pin_memory),
                                persistent_workers=bool(data.persistent_workers))


def build_module(cfg: DictConfig, datamodule: MultimodalDataModule) -> FusionClassifierModule:
    net = build_model(cfg.model, cfg.fusion, list(cfg.modality.names), datamodule.metas, len(datamodule.classes))
    return FusionClassifierModule(
        net, num_classes=len(datamodule.classes),
        optimizer=hydra.utils.instantiate(cfg.optim.optimizer),
        scheduler=hydra.utils.instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
        label_smoothing=float(cfg.optim.label_smoothing),
    )


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    ckpt = cfg.callbacks.checkpoint
    callbacks: list[Callback] = [
        ModelCheckpoint(dirpath=cfg.paths.checkpoint_dir, filename=ckpt.filename, monitor=ckpt.monitor,
                        mode=ckpt.mode, save_last=bool(ckpt.save_last), enable_version_counter=False),
        LearningRateMonitor(logging_interval="epoch"),
        TQDMProgressBar(refresh_rate=int(cfg.callbacks.progress_bar.refresh_rate)),
    ]
    stop = cfg.callbacks.early_stopping
    if stop.enabled:
        callbacks.append(EarlyStopping(monitor=ckpt.monitor, mode=ckpt.mode, patience=int(stop.patience)))
    return callbacks
