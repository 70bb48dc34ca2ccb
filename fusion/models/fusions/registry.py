"""Name -> class registry of fusion methods; a new method is one module plus ``@register_fusion("name")``."""

from __future__ import annotations

import inspect
from typing import Callable, TypeVar

from torch import nn

__all__ = ["FUSIONS", "register_fusion", "build_fusion"]

FUSIONS: dict[str, type[nn.Module]] = {}

T = TypeVar("T", bound=type[nn.Module])


def register_fusion(name: str) -> Callable[[T], T]:
    """Class decorator adding a fusion to :data:`FUSIONS` under ``name`` (the config's ``fusion.name``)."""

    def decorator(cls: T) -> T:
        if name in FUSIONS:
            raise ValueError(f"fusion {name!r} is already registered by {FUSIONS[name].__qualname__}")
        FUSIONS[name] = cls
        return cls

    return decorator


def build_fusion(name: str, modalities: list[str], dim: int, num_outputs: int | None = None, **kwargs) -> nn.Module:
    """Instantiate the fusion registered as ``name``; unknown names raise ValueError listing the choices.

    ``num_outputs`` (the head's size) reaches only fusions that take it, i.e. those that output logits."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; available: {sorted(FUSIONS)}")
    cls = FUSIONS[name]
    if "num_outputs" in inspect.signature(cls.__init__).parameters:
        if num_outputs is None:
            raise ValueError(f"fusion {name!r} outputs logits and needs num_outputs")
        kwargs["num_outputs"] = num_outputs
    return cls(list(modalities), dim, **kwargs)
