"""Name -> class registry of fusion methods; a new method is one module plus ``@register_fusion("name")``."""

from __future__ import annotations

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


def build_fusion(name: str, modalities: list[str], dim: int, **kwargs) -> nn.Module:
    """Instantiate the fusion registered as ``name``; unknown names raise ValueError listing the choices."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; available: {sorted(FUSIONS)}")
    return FUSIONS[name](list(modalities), dim, **kwargs)
