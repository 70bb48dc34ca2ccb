"""The step floor: epoch ceiling and early-stopping patience raised to hold a number of optimiser steps."""

import pytest
from mlflow.tracking import MlflowClient

from fusion.stages.train import train
from fusion.training.step_floor import StepFloor, epochs_for
from tests.helpers.config import tiny_config


@pytest.mark.parametrize(
    ("epochs", "min_steps", "steps_per_epoch", "expected"),
    [
        (30, 500, 4, 125),  # 300 benchmark records: 210 training records, batches of 64
        (30, 500, 17, 30),  # 1,500 records: 510 steps already, unchanged
        (8, 120, 4, 30),  # patience
        (8, 120, 17, 8),
        (2, 0, 1, 2),  # no floor
        (0, 10, 3, 4),  # rounds up
    ],
)
def test_epochs_hold_the_floor(epochs, min_steps, steps_per_epoch, expected):
    assert epochs_for(epochs, min_steps, steps_per_epoch) == expected


def test_negative_floors_are_refused():
    with pytest.raises(ValueError, match="callbacks.step_floor: min_steps and min_patience_steps must be >= 0"):
        StepFloor(-1, 0)


@pytest.mark.slow
def test_a_small_run_trains_to_the_floor_with_the_schedule_spanning_it(processed_dir, tmp_path):
    cfg = tiny_config(
        tmp_path,
        processed_dir,
        [
            "data.batch_size=100000",  # the whole training split in one batch: one optimiser step an epoch
            "trainer.max_epochs=1",
            "callbacks.early_stopping.patience=1",
            "callbacks.step_floor.enabled=true",
            "callbacks.step_floor.min_steps=3",
            "callbacks.step_floor.min_patience_steps=5",
            "optim.scheduler.min_warmup_steps=1",
            "test_after_fit=false",
        ],
    )
    train(cfg)
    client = MlflowClient(tracking_uri=cfg.logger.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    assert run.data.metrics["budget/max_epochs"] == 3 and run.data.metrics["budget/patience"] == 5
    assert run.data.params["trainer/max_epochs"] == "1"  # the configured ceiling stays what the params say
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 3  # patience 5 cannot stop 3 epochs
    lr = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "lr-AdamW"), key=lambda m: m.step)]
    # cosine over 3 steps (1 of warm-up): the second epoch still runs at the base rate; over the configured
    # single step it would already be at the floor of the schedule
    assert len(lr) == 3 and lr[1] == pytest.approx(cfg.optim.optimizer.lr) and lr[2] < lr[1]
