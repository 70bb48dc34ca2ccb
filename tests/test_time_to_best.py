"""TimeToBest on a real Lightning fit: the epoch, samples and seconds at the first best validation value."""

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader

from fusion.training.time_to_best import EPOCH, SAMPLES, SECONDS, TimeToBest

CURVE = [0.3, 0.5, 0.5, 0.4]  # val/acc by epoch: first best at epoch 1 (the tie at epoch 2 is not an improvement)
RECORDS, BATCH = 12, 4


class Scripted(pl.LightningModule):
    """A linear model whose logged val/acc follows CURVE (the callback only reads what is logged)."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch["x"]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", CURVE[self.current_epoch], on_epoch=True, batch_size=len(batch["id"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _loader():
    rows = [{"id": f"r{i}", "x": torch.ones(2) * i} for i in range(RECORDS)]
    return DataLoader(rows, batch_size=BATCH)


class Logged(CSVLogger):
    def __init__(self, path):
        super().__init__(path)
        self.seen = {}

    def log_metrics(self, metrics, step=None):
        self.seen.update(metrics)
        super().log_metrics(metrics, step)


def test_time_to_best_logs_the_first_best_epoch(tmp_path):
    logger = Logged(tmp_path)
    callback = TimeToBest("val/acc", "max")
    trainer = pl.Trainer(
        max_epochs=len(CURVE),
        logger=logger,
        callbacks=[callback],
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    trainer.fit(Scripted(), _loader(), _loader())
    assert logger.seen[EPOCH] == 1.0
    assert logger.seen[SAMPLES] == 2 * RECORDS  # two epochs of training before the validation of epoch 1
    assert 0 < logger.seen[SECONDS] < trainer.fit_loop.epoch_loop._batches_that_stepped * 60
    state = callback.state_dict()
    resumed = TimeToBest("val/acc", "max")
    resumed.load_state_dict(state)
    assert (resumed.samples, resumed.best, resumed.at_best) == (len(CURVE) * RECORDS, 0.5, callback.at_best)
