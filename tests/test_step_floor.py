"""The automatic budget: an epoch ceiling and early-stopping patience raised to hold a number of optimiser steps
on small data, the ceiling lowered to hold at most a number of them on large data; numbers set by the user are
used as given."""

import logging

import pytest
from mlflow.tracking import MlflowClient

from fusion.config import compose
from fusion.stages.train import train
from fusion.training.step_floor import StepFloor, _changed, automatic_ceiling, epochs_for
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


@pytest.mark.parametrize(
    ("steps_per_epoch", "expected"),
    [
        (4, 125),  # small data: the floor raises, the ceiling of 5,000 steps does not bind
        (165, 30),  # 15,000 records (10,500 training): 4,950 steps, unchanged
        (167, 29),  # the first size it lowers: 30 epochs would be 5,010 steps
        (1563, 3),  # 100,000 training records: 4,689 steps
        (15625, 1),  # 1,000,000 training records: never below one epoch
    ],
)
def test_the_ceiling_in_steps_lowers_the_epochs_on_large_data(steps_per_epoch, expected):
    assert epochs_for(30, 500, steps_per_epoch, 5000) == expected


@pytest.mark.parametrize(
    ("steps_per_epoch", "said"),
    [
        (1563, "goes from 30 to 3 epochs (at most 5000 steps"),
        (15625, "goes from 30 to 1 epochs (one epoch is already more than callbacks.step_floor.max_steps = 5000"),
    ],
)
def test_the_ceiling_says_what_it_holds(steps_per_epoch, said, caplog):
    """Where one epoch alone is past the ceiling in steps (about 320,000 training records at batch 64), the
    message must not claim the ceiling holds: it names the knobs that stop or validate within the epoch."""
    with caplog.at_level(logging.INFO):
        assert _changed("epoch ceiling", 30, 500, steps_per_epoch, 5000) == epochs_for(30, 500, steps_per_epoch, 5000)
    assert said in caplog.text and ("trainer.val_check_interval" in caplog.text) == (steps_per_epoch > 5000)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((-1, 0), "min_steps and min_patience_steps must be >= 0"),
        ((500, 120, 499), "max_steps must be at least min_steps"),
        ((0, 0, 0), "max_steps must be at least min_steps"),
    ],
)
def test_impossible_budgets_are_refused(arguments, message):
    with pytest.raises(ValueError, match=f"callbacks.step_floor: {message}"):
        StepFloor(*arguments)


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


FLOOR = {
    "data.batch_size": 100000,  # the whole training split in one batch: one optimiser step an epoch
    "callbacks.step_floor.epochs": 1,
    "callbacks.step_floor.patience": 1,
    "callbacks.step_floor.min_steps": 3,
    "callbacks.step_floor.min_patience_steps": 5,
    "optim.scheduler.min_warmup_steps": 1,
    "test_after_fit": "false",
}


def _budget(**changes):
    """FLOOR's overrides with ``changes`` (keys with ``__`` for dots) replacing or adding values."""
    values = {**FLOOR, **{key.replace("__", "."): value for key, value in changes.items()}}
    return [f"{key}={value}" for key, value in values.items()]


def _run(cfg):
    train(cfg)
    client = MlflowClient(tracking_uri=cfg.logger.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    return client, run


def _learning_rates(client, run):
    return [m.value for m in sorted(client.get_metric_history(run.info.run_id, "lr-AdamW/base"), key=lambda m: m.step)]


@pytest.mark.slow
def test_a_small_run_trains_to_the_floor_with_the_schedule_spanning_it(processed_dir, tmp_path):
    overrides = _budget(trainer__max_epochs="null", callbacks__early_stopping__patience="null")
    cfg = tiny_config(tmp_path, processed_dir, overrides)
    client, run = _run(cfg)
    assert run.data.metrics["budget/max_epochs"] == 3 and run.data.metrics["budget/patience"] == 5
    assert run.data.params["trainer/max_epochs"] == "None"  # the params say "automatic"; budget/ says what it got
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 3  # patience 5 cannot stop 3 epochs
    lr = _learning_rates(client, run)
    # cosine over 3 steps (1 of warm-up): the second epoch still runs at the base rate; over the automatic
    # single epoch it would already be at the floor of the schedule
    assert len(lr) == 3 and lr[1] == pytest.approx(cfg.optim.optimizer.lr) and lr[2] < lr[1]


@pytest.mark.slow
def test_a_large_run_is_held_to_the_ceiling_in_steps_with_the_schedule_spanning_it(processed_dir, tmp_path):
    overrides = _budget(
        trainer__max_epochs="null",
        callbacks__step_floor__epochs=6,
        callbacks__step_floor__min_steps=0,
        callbacks__step_floor__max_steps=3,
    )
    cfg = tiny_config(tmp_path, processed_dir, overrides)
    client, run = _run(cfg)
    assert run.data.metrics["budget/max_epochs"] == 3
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 3
    # cosine over 3 steps (1 of warm-up): the third epoch starts half-way down (over 6 steps: 90% of the peak)
    floor = cfg.optim.scheduler.min_lr_ratio
    assert _learning_rates(client, run)[2] == pytest.approx(cfg.optim.optimizer.lr * (floor + (1 - floor) * 0.5))


@pytest.mark.slow
def test_a_ceiling_and_patience_set_by_the_user_are_not_raised(processed_dir, tmp_path):
    overrides = _budget(
        trainer__max_epochs=2,
        callbacks__early_stopping__patience=4,
        callbacks__step_floor__min_steps=1,
        callbacks__step_floor__max_steps=1,  # nor lowered
    )
    client, run = _run(tiny_config(tmp_path, processed_dir, overrides))
    assert run.data.metrics["budget/max_epochs"] == 2 and run.data.metrics["budget/patience"] == 4
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2
