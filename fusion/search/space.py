"""The search space: `key: choice(a, b)`, `range(lo, hi[, step])` or `interval(lo, hi)` (optionally
`tag(log, interval(...))`), Hydra's sweep grammar as hydra-optuna-sweeper reads it, turned into Optuna
distributions; a suggested value becomes a Hydra override of the trial's job."""

from __future__ import annotations

from typing import Any, Mapping

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


class SearchSpaceError(ValueError):
    """A hydra.sweeper.params entry that cannot become an Optuna distribution."""


def distribution(override: Override) -> BaseDistribution:
    """One sweep override (e.g. `optim.optimizer.lr=tag(log, interval(1e-4, 1e-2))`) as an Optuna distribution."""
    value, key = override.value(), override.get_key_element()
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution([v for v in value.list])
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(int(start), int(stop) - int(step), step=int(step), log=log)
        return FloatDistribution(float(start), float(stop) - float(step), step=float(step))
    if isinstance(value, IntervalSweep):
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise SearchSpaceError(
        f"hydra.sweeper.params.{key}: {override.input_line!r} is not a search range; use "
        f"choice(a, b, ...), range(lo, hi[, step]) or interval(lo, hi) (tag(log, interval(...)) "
        f"for a log scale)"
    )


def parse_space(params: Mapping[str, Any], sweeps: list[Override] = ()) -> dict[str, BaseDistribution]:
    """hydra.sweeper.params plus the command line's sweep overrides (e.g. fusion=late,gated), key → distribution."""
    parser = OverridesParser.create()
    overrides = parser.parse_overrides([f"{key}={value}" for key, value in params.items()])
    space = {}
    for override in [*overrides, *sweeps]:
        if not override.is_sweep_override():
            raise SearchSpaceError(
                f"hydra.sweeper.params.{override.get_key_element()}: {override.input_line!r} is "
                f"a single value; put it on the command line (or in the hparams_search file) "
                f"as a fixed override, or give a range such as choice(...)"
            )
        space[override.get_key_element()] = distribution(override)
    return space


def override_value(value: Any) -> str:
    """A suggested value as Hydra override text: true/false, null, numbers as repr, strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value) if isinstance(value, float) else str(value)


def suggest(trial, space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """The trial's values, one per key, through Optuna's public suggest_* calls."""
    values = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            values[key] = trial.suggest_categorical(key, list(dist.choices))
        elif isinstance(dist, IntDistribution):
            values[key] = trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            values[key] = trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return values


def contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether `value` is one the distribution can suggest (a choice, or within the bounds and on the step)."""
    if isinstance(dist, CategoricalDistribution):
        return any(value == choice and type(value) is type(choice) for choice in dist.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(dist, IntDistribution) and not float(value).is_integer():
        return False
    if not dist.low <= value <= dist.high:
        return False
    return dist.step is None or abs((value - dist.low) / dist.step - round((value - dist.low) / dist.step)) < 1e-9


def config_point(config: DictConfig, space: Mapping[str, BaseDistribution]) -> tuple[dict[str, Any], list[str]]:
    """The composed configuration's own value of every searched key (for a config group such as `fusion`, the
    option it selects), and the keys whose value the space cannot suggest."""
    choices = OmegaConf.select(config, "hydra.runtime.choices") or {}
    point, outside = {}, []
    for key, dist in space.items():
        group = key.replace(".", "/")
        value = choices[group] if group in choices else OmegaConf.select(config, key)
        if contains(dist, value):
            point[key] = value
        else:
            outside.append(f"{key}={value!r}")
    return point, outside
