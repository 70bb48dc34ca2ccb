"""The search starts from the configuration itself (fusion/search/space.py config_point, the sweeper's
start_from_defaults): the composed config's value of every searched key, group options included, is found,
checked against the space, and enqueued as trial 0 only when the space can suggest all of it."""

from __future__ import annotations

import optuna
import pytest
from hydra import compose, initialize_config_dir
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from fusion.config import CONF_DIR
from fusion.search.space import config_point, contains, parse_space
from fusion.search.sweeper import _enqueue_defaults

SPACE = {
    "fusion": "choice(late, gated, cross_attention)",
    "model.dim": "choice(32, 64, 96)",
    "model.text.depth": "choice(0, 1, 2)",
    "model.dropout": "interval(0.0, 0.3)",
    "optim.optimizer.lr": "tag(log, interval(3e-4, 5e-3))",
    "augment.enabled": "choice(true, false)",
}


def _config(overrides: list[str] = ()):
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize(
    ("dist", "value", "expected"),
    [
        (CategoricalDistribution([32, 64]), 64, True),
        (CategoricalDistribution([32, 64]), 48, False),
        (CategoricalDistribution([0, 1]), False, False),  # a bool is not the int choice 0
        (CategoricalDistribution([True, False]), True, True),
        (FloatDistribution(0.0, 0.3), 0.1, True),
        (FloatDistribution(0.0, 0.3), 0.31, False),
        (FloatDistribution(1e-4, 1e-2, log=True), 2e-3, True),
        (IntDistribution(1, 9, step=2), 5, True),
        (IntDistribution(1, 9, step=2), 4, False),
        (IntDistribution(1, 9), 2.5, False),
        (FloatDistribution(0.0, 1.0), "0.5", False),
    ],
)
def test_contains_follows_the_distribution(dist, value, expected):
    assert contains(dist, value) is expected


def test_the_configuration_point_reads_values_and_selected_group_options():
    point, outside = config_point(_config(["fusion=gated", "model.dim=96"]), parse_space(SPACE))
    assert outside == []
    assert point == {
        "fusion": "gated",  # the selected option of the config group, not a key of the config
        "model.dim": 96,
        "model.text.depth": 0,
        "model.dropout": 0.1,
        "optim.optimizer.lr": 2e-3,
        "augment.enabled": True,
    }


def test_values_outside_the_space_are_named():
    point, outside = config_point(_config(["model.dim=48", "fusion=tensor"]), parse_space(SPACE))
    assert sorted(outside) == ["fusion='tensor'", "model.dim=48"]
    assert "fusion" not in point and "model.dim" not in point


def test_trial_0_of_a_new_study_is_the_configuration(capsys):
    space = parse_space(SPACE)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    _enqueue_defaults(study, space, _config(["fusion=cross_attention"]))
    trial = study.ask()
    values = {
        key: trial.suggest_categorical(key, list(d.choices))
        for key, d in space.items()
        if key != "model.dropout" and isinstance(d, CategoricalDistribution)
    }
    assert values == {"fusion": "cross_attention", "model.dim": 64, "model.text.depth": 0, "augment.enabled": True}
    assert trial.suggest_float("model.dropout", 0.0, 0.3) == 0.1
    assert "trial 0 is the starting configuration" in capsys.readouterr().out


def test_a_configuration_outside_the_space_is_not_enqueued(capsys):
    study = optuna.create_study(direction="maximize")
    _enqueue_defaults(study, parse_space(SPACE), _config(["model.dim=48"]))
    assert study.get_trials(states=(optuna.trial.TrialState.WAITING,)) == []
    assert "model.dim=48" in capsys.readouterr().out
