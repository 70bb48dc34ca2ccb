"""The moving average of the weights: its decay schedule, the average against a reference recurrence over real
optimiser steps, and testing from a checkpoint with the average (not the trained weights)."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.demos.boring_classes import BoringModel

from fusion.stages.evaluate import evaluate
from fusion.stages.train import train
from fusion.training.weight_averaging import WeightEMA
from tests.helpers.config import tiny_config


def test_the_decay_warms_up_then_holds():
    ema = WeightEMA(decay=0.9, warmup=10)
    assert ema.step_decay(0) == pytest.approx(0.1)  # the first update keeps a tenth of the starting weights
    assert ema.step_decay(35) == pytest.approx(36 / 45)
    assert ema.step_decay(10_000) == pytest.approx(0.9)
    assert WeightEMA(decay=0.9, warmup=1).step_decay(0) == pytest.approx(0.9)


@pytest.mark.parametrize(("decay", "warmup"), [(0.0, 10), (1.0, 10), (0.9, 0.5)])
def test_bad_settings_are_refused(decay, warmup):
    with pytest.raises(ValueError, match="callbacks.weight_averaging"):
        WeightEMA(decay=decay, warmup=warmup)


class _Weights(Callback):
    """The weights after every optimiser step (placed before the average, so it sees them first)."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append([p.detach().clone() for p in pl_module.parameters()])


def _fit(tmp_path, ema, *callbacks, epochs=2):
    trainer = pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=4,
        limit_val_batches=2,
        callbacks=[*callbacks, ema, ModelCheckpoint(dirpath=tmp_path, filename="best")],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    model = BoringModel()
    start = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model)
    return trainer, model, start


def test_the_average_follows_the_recurrence_over_real_steps(tmp_path):
    torch.manual_seed(0)
    ema, weights = WeightEMA(decay=0.5, warmup=2), _Weights()
    _, model, start = _fit(tmp_path, ema, weights)
    # AveragedModel copies the weights at its first update, then averages
    reference = weights.steps[0]
    for n, step in enumerate(weights.steps[1:], start=1):
        decay = min(0.5, (1 + n) / (2 + n))
        reference = [decay * a + (1 - decay) * w for a, w in zip(reference, step, strict=True)]
    assert len(weights.steps) == 8
    # at the end of fitting the module holds the average
    for got, want, last, first in zip(model.parameters(), reference, weights.steps[-1], start, strict=True):
        torch.testing.assert_close(got.detach(), want)
        assert not torch.allclose(want, last) and not torch.allclose(want, first)


def test_testing_from_a_checkpoint_uses_the_average(tmp_path):
    torch.manual_seed(0)
    trainer, model, _ = _fit(tmp_path, WeightEMA(decay=0.5, warmup=2))
    checkpoint = torch.load(tmp_path / "best.ckpt", weights_only=True)
    assert "current_model_state" in checkpoint  # the trained weights ride along for resuming
    for p in model.parameters():
        p.data.add_(1.0)  # whatever the module holds must be replaced by the checkpoint's average
    trainer.test(model, ckpt_path=str(tmp_path / "best.ckpt"), weights_only=True, verbose=False)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, checkpoint["state_dict"][name])
        assert not torch.equal(value, checkpoint["current_model_state"][name])


@pytest.mark.slow
def test_a_run_with_the_average_tests_and_evaluates_the_same_weights(processed_dir, tmp_path):
    """train's test after fitting and the evaluate stage both read best.ckpt: the same loss to the last digits."""
    cfg = tiny_config(tmp_path, processed_dir, ["callbacks.weight_averaging.enabled=true", "trainer.max_epochs=3"])
    metrics = train(cfg)
    checkpoint = torch.load(tmp_path / "train" / "checkpoints" / "best.ckpt", weights_only=True)
    assert any(not torch.equal(v, checkpoint["current_model_state"][k]) for k, v in checkpoint["state_dict"].items())
    evaluation = evaluate(cfg)
    assert evaluation["test"]["loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)
