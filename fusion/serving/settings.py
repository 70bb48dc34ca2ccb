"""The serving settings of a model: the folders a request may name files in, the request limits and the torch
threads of a server process.

They come from the run's config (``serving.allowed_roots``, ``serving.limits.*``, ``serving.torch_threads``, kept
in the bundle's config.yaml), are written into the MLflow model's ``model_config`` as one flat key per setting,
and can be overridden where the model is served without logging it again: ``SERVING_MODEL_CONFIG='{"max_rows":
64}'`` for `mlflow models serve`, ``model_config={...}`` for ``mlflow.pyfunc.load_model``."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

SECTION = "serving"
ROOTS, THREADS = "allowed_roots", "torch_threads"
LIMITS_KEY = "limits"
# The request limits, each a positive number: integers, except the seconds.
INTEGER_LIMITS = ("max_request_bytes", "max_rows", "max_value_bytes", "max_image_pixels")
LIMITS = (*INTEGER_LIMITS, "max_audio_seconds")
OVERRIDE_HINT = (
    "set it in conf/serving/ before training, or where the model is served: "
    "SERVING_MODEL_CONFIG='{\"<key>\": <value>}' mlflow models serve ..."
)


class SettingsError(ValueError):
    """A serving setting is missing or invalid; the message names it and the fix."""


def setting_name(key: str) -> str:
    """The config path of a flat model_config key: ``serving.allowed_roots``, ``serving.limits.max_rows``."""
    return f"{SECTION}.{LIMITS_KEY}.{key}" if key in LIMITS else f"{SECTION}.{key}"


@dataclass(frozen=True)
class Limits:
    """What one request may hold (each refusal names the setting): fusion/serving/requests.py enforces them."""

    max_request_bytes: int
    max_rows: int
    max_value_bytes: int
    max_image_pixels: int
    max_audio_seconds: float


@dataclass(frozen=True)
class ServingSettings:
    allowed_roots: tuple[str, ...]
    limits: Limits
    torch_threads: int | None

    def model_config(self) -> dict[str, Any]:
        """The flat ``model_config`` of the MLflow model: every setting under its own key."""
        return {ROOTS: list(self.allowed_roots), **asdict(self.limits), THREADS: self.torch_threads}

    @classmethod
    def from_config(cls, cfg: DictConfig, overrides: Mapping[str, Any] | None = None) -> "ServingSettings":
        """The settings of a run config (``cfg.serving``), with flat ``overrides`` (a model_config) on top."""
        section = OmegaConf.select(cfg, SECTION, default=None)
        section = OmegaConf.to_container(section, resolve=True) if section is not None else {}
        flat = {
            ROOTS: section.get(ROOTS),
            THREADS: section.get(THREADS, None),
            **{key: (section.get(LIMITS_KEY) or {}).get(key) for key in LIMITS},
        }
        flat.update({key: value for key, value in (overrides or {}).items() if key in flat})
        missing = [setting_name(key) for key, value in flat.items() if value is None and key != THREADS]
        if missing:
            raise SettingsError(
                f"the model's config has no {', '.join(missing)}: it was logged before these settings "
                f"existed (MLflow ignores serve-time overrides of a model_config it lacks); log the "
                f"model again with this version's conf/serving/ (the evaluate stage logs it)"
            )
        return cls(
            allowed_roots=_roots(flat[ROOTS]),
            limits=Limits(**{key: _limit(key, flat[key]) for key in LIMITS}),
            torch_threads=_threads(flat[THREADS]),
        )


def _roots(value: Any) -> tuple[str, ...]:
    if (
        isinstance(value, str)
        or not isinstance(value, (list, tuple))
        or not all(isinstance(v, str) and v.strip() for v in value)
    ):
        raise SettingsError(
            f"{setting_name(ROOTS)}={value!r}: give a list of folder paths ([] refuses every path "
            f"in a request); {OVERRIDE_HINT}"
        )
    return tuple(value)


def _limit(key: str, value: Any) -> int | float:
    integer = key in INTEGER_LIMITS
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise SettingsError(
            f"{setting_name(key)}={value!r}: give a positive {'integer' if integer else 'number'}; {OVERRIDE_HINT}"
        )
    return int(value) if integer else float(value)


def _threads(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SettingsError(
            f"{setting_name(THREADS)}={value!r}: give a positive integer, or null for torch's default; {OVERRIDE_HINT}"
        )
    return int(value)
