"""The best checkpoint, kept from the later of two epochs that tie on the monitored value: the later one was
trained further, at a lower learning rate, and scores the same (Lightning keeps the earlier; docs/results.md);
and the last checkpoint, written after every epoch so that a resumed run continues from where it stopped."""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

__all__ = ["ON_TIE", "BestCheckpoint"]

ON_TIE = ("later", "earlier")


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``on_tie="later"`` also saves when the monitored value equals the k-th best
    (``"earlier"``: Lightning's rule, a strict improvement only). Training and early stopping are unaffected.

    With ``save_last``, ``last.ckpt`` is written after every epoch: Lightning 2.6 writes it only in an epoch that
    saved a best checkpoint, so a run killed after epochs without improvement would resume from its best epoch and
    train those epochs again."""

    def __init__(self, *args: Any, on_tie: str = "later", **kwargs: Any) -> None:
        if on_tie not in ON_TIE:
            raise ValueError(f"callbacks.checkpoint.on_tie must be one of {ON_TIE}, not {on_tie!r}")
        super().__init__(*args, **kwargs)
        self.on_tie = on_tie

    def check_monitor_top_k(self, trainer: pl.Trainer, current: Optional[torch.Tensor] = None) -> bool:
        if self.on_tie == "earlier" or current is None or self.save_top_k == -1:
            return super().check_monitor_top_k(trainer, current)
        if len(self.best_k_models) < self.save_top_k:
            return True
        at_least_as_good = torch.le if self.mode == "min" else torch.ge
        decision = bool(at_least_as_good(current, self.best_k_models[self.kth_best_model_path]))
        return trainer.strategy.reduce_boolean_decision(decision)  # every process decides the same

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):  # no validation loop: the epoch ends here
            self._save_latest(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_latest(trainer)

    def _save_latest(self, trainer: pl.Trainer) -> None:
        """``last.ckpt`` for this epoch, unless the epoch already wrote one (with a best checkpoint)."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
