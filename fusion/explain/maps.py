"""The attention maps of a batch: each fusion reads its own (``attention_maps`` of the fusion interface,
fusion.models.attention_maps), so this module knows no fusion by name; it only hands the fusion the
weights recorded under its own layers."""

from __future__ import annotations

from torch import Tensor, nn

from fusion.models.attention_maps import BOTTLENECKS, LATENTS, LAYERS, AttentionMaps

__all__ = ["AttentionMaps", "BOTTLENECKS", "LATENTS", "LAYERS", "attention_maps"]


def attention_maps(
    fusion: nn.Module, records: dict[str, list[Tensor]], layer: str = "last", prefix: str = "fusion."
) -> AttentionMaps:
    """The maps ``fusion`` reads from ``records`` (fusion.explain.capture over the whole network, where the
    fusion's layers are named ``<prefix><name>``)."""
    own = {name[len(prefix) :]: calls for name, calls in records.items() if name.startswith(prefix)}
    return fusion.attention_maps(own, layer)
