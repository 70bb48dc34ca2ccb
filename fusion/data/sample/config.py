"""The sample config's fixed vocabulary (modalities, their folders, default class names) and the plain-dict
view of a config that every part of the generator reads."""

from __future__ import annotations

import json
from typing import Any, Mapping

MODALITIES = ("image", "audio", "text")
SUBDIRS = {"image": "image", "audio": "audio", "text": "text"}
CLASS_NAMES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


def _as_dict(cfg: Any) -> dict:
    """Return the config as a plain, resolved dict (accepts DictConfig or Mapping)."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if not isinstance(cfg, Mapping):
        raise TypeError(f"sample config must be a mapping, got {type(cfg).__name__}")
    return json.loads(json.dumps(cfg))  # deep copy to plain types


def class_names(cfg: Any) -> list[str]:
    """Class names from the config (index = class id)."""
    return list(_as_dict(cfg)["class_names"])
