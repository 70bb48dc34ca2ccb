"""How long the training inputs are against the stage's cut (text tokens, audio seconds): meta.json's ``lengths``
and the warning that names the knob, so that a cut that drops much of the data is never silent."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

LENGTH_QUANTILE = 0.95  # the quantile of the probed lengths that meta.json and the warning quote
SHARE_DIGITS = 4  # digits of meta.json's share_past_<limit>
RULE_KEYS = ("quantile", "step", "min", "max")  # an automatic limit's rule (preprocess.<m>.auto_<limit>)


def length_summary(lengths: Sequence[float], limit: float, limit_name: str) -> dict[str, float | int] | None:
    """Of ``lengths`` (before the cut to ``limit``): how many were probed, how many are longer than the limit, the
    95th percentile, the longest, and the share of their summed length that the cut drops. Keys name the limit
    (``longer_than_<limit_name>``, ``share_past_<limit_name>``); None for no lengths."""
    values = sorted(lengths)
    if not values:
        return None
    past = sum(max(0.0, value - limit) for value in values) / (sum(values) or 1)
    return {
        "probed": len(values),
        f"longer_than_{limit_name}": sum(value > limit for value in values),
        "p95": values[math.ceil(LENGTH_QUANTILE * len(values)) - 1],
        "longest": values[-1],
        f"share_past_{limit_name}": round(past, SHARE_DIGITS),
    }


def warn_of_cut(
    stage: str, lengths: dict[str, float | int] | None, limit: float, knob: str, items: str, unit: str, note: str = ""
) -> None:
    """Print the stage's warning when some of the probed ``items`` are longer than ``limit``, the value of the
    parameter ``knob`` (``lengths`` from :func:`length_summary`, its keys named after the knob's last part): how
    many, how long, how much the cut drops, and the knob that keeps more (``note`` says what raising it costs)."""
    name = knob.rsplit(".", 1)[-1]
    if not lengths or not lengths[f"longer_than_{name}"]:
        return
    print(
        f"[{stage}] warning: {lengths[f'longer_than_{name}']} of {lengths['probed']} training {items} checked are "
        f"longer than {knob}={limit:g} (95th percentile {lengths['p95']:g} {unit}, longest {lengths['longest']:g}); "
        f"the cut drops {lengths[f'share_past_{name}']:.0%} of their {unit}. Raise {knob} to keep more{note}.",
        flush=True,
    )


def check_auto_rule(rule: Mapping[str, Any], key: str) -> None:
    """Refuse an automatic limit's rule (``key`` names it in the message) that cannot choose: quantile in (0, 1],
    step > 0, 0 < min <= max."""
    quantile, step, low, high = (float(rule[name]) for name in RULE_KEYS)
    if not (0 < quantile <= 1 and step > 0 and 0 < low <= high):
        raise ValueError(
            f"{key} needs 0 < quantile <= 1, step > 0 and 0 < min <= max, got "
            f"quantile={quantile:g}, step={step:g}, min={low:g}, max={high:g}"
        )


def auto_limit(lengths: Sequence[float], rule: Mapping[str, Any], key: str) -> float:
    """The ``quantile`` of the training inputs' ``lengths`` rounded up to a multiple of ``step`` (so that a few
    inputs more or less rarely change the model's input size), within [``min``, ``max``]; ``min`` when no length
    is known. ``key`` names the rule in the error of one that cannot choose."""
    check_auto_rule(rule, key)
    low, high, step = float(rule["min"]), float(rule["max"]), float(rule["step"])
    if not lengths:
        return low
    typical = float(np.quantile(np.asarray(lengths, dtype=np.float64), float(rule["quantile"])))
    rounded = math.ceil(round(typical / step, 9)) * step
    return min(high, max(low, rounded))
