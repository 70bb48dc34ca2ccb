"""Time to accuracy: the wall-clock seconds and training samples a run took to first reach its best validation
value of the monitored metric, logged as time/seconds_to_best, time/samples_to_best and time/epoch_of_best so
that fusions can be ranked by cost as well as by accuracy."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

SECONDS, SAMPLES, EPOCH = "time/seconds_to_best", "time/samples_to_best", "time/epoch_of_best"


class TimeToBest(Callback):
    """Counts fit seconds and samples seen (all processes) and notes both when `monitor` improves (by `mode`);
    the counts are saved in checkpoints, so a resumed run keeps counting from where it stopped."""

    def __init__(self, monitor: str, mode: str) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"callbacks.checkpoint.mode must be max or min for time to best, got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.seconds = 0.0  # fit seconds before this process started (resume)
        self.samples = 0
        self.best: float | None = None
        self.at_best: dict[str, float] = {}
        self._started = time.perf_counter()

    def _elapsed(self) -> float:
        return self.seconds + time.perf_counter() - self._started

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.samples += len(batch["id"]) * trainer.world_size

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            self.at_best = {SECONDS: self._elapsed(), SAMPLES: float(self.samples), EPOCH: float(trainer.current_epoch)}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.at_best and trainer.logger is not None:
            trainer.logger.log_metrics(self.at_best)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """A stopped run (e.g. a pruned search trial) still tells how long its best took."""
        self.on_fit_end(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self._elapsed(), "samples": self.samples, "best": self.best, "at_best": self.at_best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds, self.samples = float(state_dict["seconds"]), int(state_dict["samples"])
        self.best, self.at_best = state_dict["best"], dict(state_dict["at_best"])
