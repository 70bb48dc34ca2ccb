"""The automatic budget in optimiser steps: where the epoch ceiling (``trainer.max_epochs``) and early stopping's
patience are automatic (null, the default), a run whose epochs are a few steps each (small data) gets a higher
ceiling and more patience, so the floors hold in steps whatever the dataset size, and a run whose epochs are many
steps each (large data) gets a lower ceiling, so it holds at most ``max_steps``. In between a run trains
``callbacks.step_floor.epochs`` / ``patience`` as they stand; a number set by the user is used as given."""

from __future__ import annotations

import math

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, EarlyStopping
from pytorch_lightning.utilities import rank_zero_info

__all__ = ["StepFloor", "automatic_ceiling", "epochs_for", "optimizer_steps_per_epoch"]


def epochs_for(epochs: int, min_steps: int, steps_per_epoch: int, max_steps: int | None = None) -> int:
    """``epochs``, raised until they hold at least ``min_steps`` optimiser steps of ``steps_per_epoch`` each, then
    lowered until they hold at most ``max_steps`` (None: no ceiling), never below one epoch."""
    steps_per_epoch = max(1, int(steps_per_epoch))
    raised = max(int(epochs), math.ceil(int(min_steps) / steps_per_epoch))
    return raised if max_steps is None else min(raised, max(1, int(max_steps) // steps_per_epoch))


def automatic_ceiling(cfg: DictConfig) -> dict[str, int]:
    """Trainer keyword arguments for an automatic ceiling (``trainer.max_epochs`` null, no ``trainer.max_steps``):
    ``callbacks.step_floor.epochs``, which :class:`StepFloor` raises at fit on small data; {} otherwise."""
    trainer = cfg.trainer
    if trainer.get("max_epochs") is not None or trainer.get("max_steps", -1) not in (None, -1):
        return {}
    return {"max_epochs": int(cfg.callbacks.step_floor.epochs)}


def optimizer_steps_per_epoch(trainer: pl.Trainer, pl_module: pl.LightningModule) -> int:
    """Optimiser steps in one training epoch of this process (its share of a distributed run, the batch limit and
    gradient accumulation included), from the datamodule's training loader (else the module's)."""
    source = trainer.datamodule if trainer.datamodule is not None else pl_module
    batches = len(source.train_dataloader())
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        batches = min(batches, limit)
    elif limit is not None:
        batches = int(batches * float(limit))
    return max(1, math.ceil(batches / max(1, int(trainer.accumulate_grad_batches))))


class StepFloor(Callback):
    """At the start of fitting: the epoch ceiling holds at least ``min_steps`` optimiser steps and at most
    ``max_steps`` (unless ``trainer.max_steps`` sets the length), and early stopping waits at least
    ``min_patience_steps`` of them. Runs before the optimiser is configured, so the learning-rate schedule spans
    the ceiling the run gets."""

    def __init__(self, min_steps: int = 0, min_patience_steps: int = 0, max_steps: int | None = None) -> None:
        if min_steps < 0 or min_patience_steps < 0:
            raise ValueError(
                f"callbacks.step_floor: min_steps and min_patience_steps must be >= 0, got {min_steps} and "
                f"{min_patience_steps}"
            )
        if max_steps is not None and max_steps < max(1, min_steps):
            raise ValueError(
                f"callbacks.step_floor: max_steps must be at least min_steps (and 1), got {max_steps} and "
                f"{min_steps}; null turns the ceiling in steps off"
            )
        self.min_steps, self.min_patience_steps = int(min_steps), int(min_patience_steps)
        self.max_steps = None if max_steps is None else int(max_steps)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not (self.min_steps or self.min_patience_steps or self.max_steps is not None):
            return
        steps = optimizer_steps_per_epoch(trainer, pl_module)
        if _epoch_bound(trainer):
            trainer.fit_loop.max_epochs = _changed(
                "epoch ceiling", trainer.max_epochs, self.min_steps, steps, self.max_steps
            )
        for stopper in _early_stopping(trainer):
            stopper.patience = _changed("early-stopping patience", stopper.patience, self.min_patience_steps, steps)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The ceiling and patience the run got, next to the configured ones in the params."""
        values = {"budget/max_epochs": float(trainer.max_epochs)} if _epoch_bound(trainer) else {}
        for stopper in _early_stopping(trainer):
            values["budget/patience"] = float(stopper.patience)
        if trainer.logger is not None and values:
            trainer.logger.log_metrics(values, step=0)


def _epoch_bound(trainer: pl.Trainer) -> bool:
    """Whether the run's length is its epoch ceiling (not trainer.max_steps, not unbounded)."""
    return trainer.max_steps == -1 and trainer.max_epochs is not None and trainer.max_epochs >= 0


def _early_stopping(trainer: pl.Trainer) -> list[EarlyStopping]:
    return [callback for callback in trainer.callbacks if isinstance(callback, EarlyStopping)]


def _changed(what: str, epochs: int, min_steps: int, steps_per_epoch: int, max_steps: int | None = None) -> int:
    """:func:`epochs_for` (its arguments in its order), saying so when it raises or lowers ``epochs``."""
    changed = epochs_for(epochs, min_steps, steps_per_epoch, max_steps)
    if changed > epochs:
        rank_zero_info(
            f"step floor: {steps_per_epoch} optimiser steps an epoch, so the {what} goes from {epochs} to {changed} "
            f"epochs (at least {min_steps} steps)"
        )
    elif changed < epochs:
        held = f"at most {max_steps} steps; callbacks.step_floor.max_steps"
        if max_steps is not None and steps_per_epoch > max_steps:
            held = (
                f"one epoch is already more than callbacks.step_floor.max_steps = {max_steps}, and the ceiling "
                "stays a whole epoch; trainer.max_steps stops within it, trainer.val_check_interval validates "
                "within it"
            )
        rank_zero_info(
            f"step ceiling: {steps_per_epoch} optimiser steps an epoch, so the {what} goes from {epochs} to "
            f"{changed} epochs ({held})"
        )
    return changed
