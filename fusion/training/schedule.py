"""Learning-rate schedule defined in optimiser steps, so one recipe suits 1,000 records and 1,000,000."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["WarmupCosine"]


class WarmupCosine(LRScheduler):
    """Linear warm-up from 0 over ``warmup_fraction`` of ``total_steps`` (at least ``min_warmup_steps``,
    at most half the run), then cosine decay to ``min_lr_ratio`` x the base rate at ``total_steps``
    (Loshchilov & Hutter, 2017, "SGDR"; Goyal et al., 2017, for the warm-up). Stepped once per optimiser step.
    ``total_steps`` is the ceiling the trainer would reach (``max_epochs`` x steps per epoch, or
    ``max_steps``): early stopping may end a run before the tail."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_fraction: float = 0.05,
        min_warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if not math.isfinite(total_steps) or total_steps < 1:
            raise ValueError(
                f"WarmupCosine needs a finite number of training steps, got {total_steps}: set "
                "trainer.max_epochs or trainer.max_steps"
            )
        if not 0.0 <= warmup_fraction < 1.0 or not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(
                f"optim.scheduler: warmup_fraction must be in [0, 1) and min_lr_ratio in [0, 1], got "
                f"{warmup_fraction} and {min_lr_ratio}"
            )
        self.total_steps = int(total_steps)
        self.warmup_steps = min(
            max(int(warmup_fraction * self.total_steps), int(min_warmup_steps)), self.total_steps // 2
        )
        self.min_lr_ratio = float(min_lr_ratio)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]
