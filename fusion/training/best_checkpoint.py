"""The best checkpoint, kept from the later of two epochs that tie on the monitored value: the later one was
trained further, at a lower learning rate, and scores the same (Lightning keeps the earlier; docs/results.md)."""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

__all__ = ["ON_TIE", "BestCheckpoint"]

ON_TIE = ("later", "earlier")


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``on_tie="later"`` also saves when the monitored value equals the k-th best
    (``"earlier"``: Lightning's rule, a strict improvement only). Training and early stopping are unaffected."""

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
