"""The best checkpoint on ties of the monitored value: the rule on its own, then inside a real Lightning fit; and
the last checkpoint, written after every epoch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fusion.config import compose
from fusion.training.best_checkpoint import BestCheckpoint
from fusion.training.setup import build_callbacks

SAME_DECISION = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda decision: decision))


def _holding(best: float, mode: str, on_tie: str) -> BestCheckpoint:
    callback = BestCheckpoint(monitor="val/acc", mode=mode, on_tie=on_tie)
    callback.best_k_models = {"best.ckpt": torch.tensor(best)}
    callback.kth_best_model_path = "best.ckpt"
    return callback


@pytest.mark.parametrize(
    ("mode", "on_tie", "current", "saves"),
    [
        ("max", "later", 0.9, True),
        ("max", "earlier", 0.9, False),
        ("max", "later", 0.95, True),
        ("max", "later", 0.85, False),
        ("min", "later", 0.9, True),
        ("min", "earlier", 0.9, False),
        ("min", "later", 0.85, True),
        ("min", "later", 0.95, False),
        ("max", "later", float("nan"), False),
    ],
)
def test_a_tie_saves_only_when_the_later_epoch_is_kept(mode, on_tie, current, saves):
    callback = _holding(0.9, mode, on_tie)
    assert callback.check_monitor_top_k(SAME_DECISION, torch.tensor(current)) is saves


def test_an_unknown_rule_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="'later', 'earlier'"):
        BestCheckpoint(monitor="val/acc", on_tie="last")


class ScriptedScore(pl.LightningModule):
    """Logs a scripted val/acc per epoch and records, in each epoch's weights, which epoch it is."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = scores
        self.epoch_seen = nn.Parameter(torch.zeros(()), requires_grad=False)
        self.layer = nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        if not self.trainer.val_dataloaders:  # no validation loop: the score is logged, and checked, here
            self.epoch_seen.fill_(self.current_epoch)
            self.log("val/acc", self.scores[self.current_epoch], on_epoch=True, on_step=False)
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.epoch_seen.fill_(self.current_epoch)
        self.log("val/acc", self.scores[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.layer.parameters(), lr=0.0)


def _fit(callback: BestCheckpoint, scores: list[float], validate: bool = True) -> None:
    """A real fit of ScriptedScore for one epoch per score, with the callback and no logger."""
    loader = DataLoader(TensorDataset(torch.ones(2, 1)), batch_size=2)
    trainer = pl.Trainer(
        max_epochs=len(scores),
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(ScriptedScore(scores), loader, loader if validate else None)


@pytest.mark.parametrize(("on_tie", "kept_epoch"), [("later", 2), ("earlier", 1)])
def test_a_fit_keeps_the_epoch_the_rule_names(tmp_path, on_tie, kept_epoch):
    scores = [0.5, 0.7, 0.7, 0.6]  # epochs 1 and 2 tie on the best value
    callback = BestCheckpoint(dirpath=tmp_path, filename="best", monitor="val/acc", mode="max", on_tie=on_tie)
    _fit(callback, scores)
    state = torch.load(tmp_path / "best.ckpt", weights_only=True)["state_dict"]
    assert state["epoch_seen"].item() == kept_epoch
    assert callback.best_model_score.item() == pytest.approx(0.7)


@pytest.mark.parametrize("validate", [True, False])
def test_the_last_checkpoint_is_the_last_epoch_even_when_it_is_not_the_best(tmp_path, validate):
    scores = [0.5, 0.7, 0.6, 0.6]  # the best is epoch 1; epochs 2 and 3 save no best checkpoint
    callback = BestCheckpoint(dirpath=tmp_path, filename="best", monitor="val/acc", mode="max", save_last=True)
    _fit(callback, scores, validate=validate)
    best, last = (torch.load(tmp_path / f"{name}.ckpt", weights_only=True) for name in ("best", "last"))
    assert best["state_dict"]["epoch_seen"].item() == 1
    assert last["epoch"] == 3 and last["state_dict"]["epoch_seen"].item() == 3
    assert callback.best_model_score.item() == pytest.approx(0.7)


@pytest.mark.parametrize("on_tie", ["later", "earlier"])
def test_the_config_reaches_the_callback(on_tie):
    (checkpoint,) = [
        c for c in build_callbacks(compose([f"callbacks.checkpoint.on_tie={on_tie}"])) if isinstance(c, BestCheckpoint)
    ]
    assert checkpoint.on_tie == on_tie
