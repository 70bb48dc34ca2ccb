"""How fast training runs and whether it waits for data: per-epoch timings logged with the run's metrics."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl


class DataWaitMonitor(pl.Callback):
    """Splits each training epoch's wall time into waiting for the next batch (loader) and the step itself
    (forward, backward, optimiser). Logs per epoch, averaged over ranks (samples/s summed):

    - time/data_wait_fraction: wait / (wait + step) over the epoch's batches after the first; above ~0.1 the
      run is data-bound (raise data.num_workers, or check the disk);
    - time/first_batch_seconds: the wait for an epoch's first batch (worker start-up, prefetch);
    - time/train_samples_per_second: samples / (wait + step), first batch included.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.wait = self.step = self.first_wait = 0.0
        self.samples = self.batches = 0
        self._mark = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self.batches == 0:
            self.first_wait = now - self._mark
        else:
            self.wait += now - self._mark
        self._mark = now

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        self.step += now - self._mark
        self._mark = now
        self.batches += 1
        self.samples += len(batch["id"])

    def summary(self) -> dict[str, float]:
        """This process's figures for the epoch so far."""
        busy = self.wait + self.step
        return {
            "time/data_wait_fraction": self.wait / busy if busy > 0 else 0.0,
            "time/first_batch_seconds": self.first_wait,
            "time/train_samples_per_second": self.samples / (busy + self.first_wait) if self.samples else 0.0,
        }

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.batches == 0:
            return
        figures = self.summary()
        rate = figures.pop("time/train_samples_per_second")
        pl_module.log_dict(figures, on_epoch=True, sync_dist=True)
        pl_module.log("time/train_samples_per_second", rate, on_epoch=True, sync_dist=True, reduce_fx="sum")
