"""The step floor: an automatic epoch ceiling and early-stopping patience raised to hold a number of optimiser
steps; numbers set by the user are used as given."""

import pytest
from mlflow.tracking import MlflowClient

from fusion.config import compose
from fusion.stages.train import train
from fusion.training.step_floor import StepFloor, automatic_ceiling, epochs_for
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


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], {"max_epochs": 30}),  # the defaults: automatic, from callbacks.step_floor.epochs
        (["callbacks.step_floor.epochs=12"], {"max_epochs": 12}),
        (["trainer.max_epochs=5"], {}),  # set by the user: used as given
        (["+trainer.max_steps=100"], {}),  # the length is in steps
    ],
)
def test_the_automatic_ceiling_is_passed_only_where_nothing_sets_the_length(overrides, expected):
    assert automatic_ceiling(compose(overrides)) == expected


FLOOR = [
    "data.batch_size=100000",  # the whole training split in one batch: one optimiser step an epoch
    "callbacks.step_floor.epochs=1",
    "callbacks.step_floor.patience=1",
    "callbacks.step_floor.min_steps=3",
    "callbacks.step_floor.min_patience_steps=5",
    "optim.scheduler.min_warmup_steps=1",
    "test_after_fit=false",
]


def _run(cfg):
    train(cfg)
    client = MlflowClient(tracking_uri=cfg.logger.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    return client, run


@pytest.mark.slow
def test_a_small_run_trains_to_the_floor_with_the_schedule_spanning_it(processed_dir, tmp_path):
    overrides = [*FLOOR, "trainer.max_epochs=null", "callbacks.early_stopping.patience=null"]
    cfg = tiny_config(tmp_path, processed_dir, overrides)
    client, run = _run(cfg)
    assert run.data.metrics["budget/max_epochs"] == 3 and run.data.metrics["budget/patience"] == 5
    assert run.data.params["trainer/max_epochs"] == "None"  # the params say "automatic"; budget/ says what it got
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 3  # patience 5 cannot stop 3 epochs
    lr = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "lr-AdamW"), key=lambda m: m.step)]
    # cosine over 3 steps (1 of warm-up): the second epoch still runs at the base rate; over the automatic
    # single epoch it would already be at the floor of the schedule
    assert len(lr) == 3 and lr[1] == pytest.approx(cfg.optim.optimizer.lr) and lr[2] < lr[1]


@pytest.mark.slow
def test_a_ceiling_and_patience_set_by_the_user_are_not_raised(processed_dir, tmp_path):
    overrides = [*FLOOR, "trainer.max_epochs=2", "callbacks.early_stopping.patience=4"]
    client, run = _run(tiny_config(tmp_path, processed_dir, overrides))
    assert run.data.metrics["budget/max_epochs"] == 2 and run.data.metrics["budget/patience"] == 4
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2
