"""An exponential moving average (EMA) of the weights, kept next to the trained ones: validation, the best
checkpoint, testing and serving use the average, which is steadier than the last step's weights when the data are
small and noisy (Lightning's WeightAveraging does the swapping and the checkpointing)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from pytorch_lightning.strategies import FSDPStrategy
from pytorch_lightning.trainer.states import TrainerFn

__all__ = ["WeightEMA"]


class WeightEMA(WeightAveraging):
    """After every optimiser step: average = decay_n * average + (1 - decay_n) * weights, where
    decay_n = min(decay, (1 + n) / (warmup + n)) after n updates, so that the first steps (random weights) are
    forgotten quickly. Integer buffers (BatchNorm's batch count) are copied, not averaged."""

    def __init__(self, decay: float, warmup: float) -> None:
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"callbacks.weight_averaging.decay must lie in (0, 1), got {decay}")
        if float(warmup) < 1.0:
            raise ValueError(f"callbacks.weight_averaging.warmup must be >= 1, got {warmup}")
        super().__init__(multi_avg_fn=self._update)
        self.decay, self.warmup = float(decay), float(warmup)

    def step_decay(self, updates: int) -> float:
        """The decay of the average's update after ``updates`` earlier updates."""
        return min(self.decay, (1.0 + updates) / (self.warmup + updates))

    def _update(self, averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        if not torch.is_floating_point(averaged[0]):
            torch._foreach_copy_(averaged, current)
            return
        torch._foreach_lerp_(averaged, current, 1.0 - self.step_decay(int(updates)))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if isinstance(trainer.strategy, FSDPStrategy):  # the average would be a whole copy beside sharded weights
            raise ValueError(
                "callbacks.weight_averaging.enabled=true does not work with trainer=fsdp (sharded weights); "
                "use trainer=ddp or set callbacks.weight_averaging.enabled=false"
            )
        super().setup(trainer, pl_module, stage)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        """Resuming a fit restores both the average and the trained weights; testing or predicting from a
        checkpoint keeps its state_dict, which holds the average (Lightning's callback would load the trained
        weights back whenever the average exists, as it does when a fit is followed by a test)."""
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
