"""What a fusion's attention says, read by the fusion itself (``fusion.attention_maps(records, layer)``):
how much it attends to each token of each modality, the cross-modal attention matrices, the attention mass
per modality and the gate values. Pure torch: the records come from any hook that stores each attention
layer's weights [B, H, N_query, N_key] per call under its module name, relative to the fusion
(``fusion.explain.capture`` does), so no other module needs to know how a fusion is built.

Every map is averaged over heads; a map with several layers shows the last one or their mean (``layer``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "AttentionMaps",
    "LAYERS",
    "LATENTS",
    "BOTTLENECKS",
    "Records",
    "select_layer",
    "indexed",
    "split_spans",
    "normalised",
    "pooled_tokens",
]

LAYERS = ("last", "mean")
LATENTS, BOTTLENECKS = "latents", "bottlenecks"  # query names of maps whose queries are not a modality's tokens
POOLING = "the fusion's attention pooling over the modality's tokens"

Records = dict[str, list[Tensor]]  # attention module name (relative to the fusion) -> weights per call


@dataclass
class AttentionMaps:
    """The maps of one batch (sample axis first; padding positions included, see the masks).

    ``tokens``: modality -> [B, N_m] attention over its tokens; ``cross``: (query, key) -> [B, N_query, N_key],
    query/key a modality or ``latents``/``bottlenecks``; ``mass``: modality -> [B] share of a joint softmax
    (early, perceiver, bottleneck); ``gates``: modality -> [B] mean gate value (gated); ``source``: how the
    token weights were read, for figure notes."""

    tokens: dict[str, Tensor] = field(default_factory=dict)
    cross: dict[tuple[str, str], Tensor] = field(default_factory=dict)
    mass: dict[str, Tensor] = field(default_factory=dict)
    gates: dict[str, Tensor] = field(default_factory=dict)
    source: str = ""


def select_layer(calls: list[Tensor], layer: str) -> Tensor:
    """Layer calls [B, H, Nq, Nk] each -> [B, Nq, Nk]: the last layer or the mean, averaged over heads."""
    if layer not in LAYERS:
        raise ValueError(f"explain.layer={layer!r}; use one of {LAYERS}")
    stacked = torch.stack(calls)
    return (stacked[-1] if layer == "last" else stacked.mean(0)).mean(1)


def indexed(records: Records, pattern: str) -> list[Tensor]:
    """The calls of the layers whose names match ``pattern`` with ``(\\d+)`` for the layer index, by index."""
    regex = re.compile(pattern)
    found = sorted((int(m.group(1)), name) for name in records if (m := regex.fullmatch(name)))
    return [call for _, name in found for call in records[name]]


def split_spans(x: Tensor, spans: dict[str, slice]) -> dict[str, Tensor]:
    """Last axis split into each modality's span."""
    return {m: x[..., s] for m, s in spans.items()}


def pooled_tokens(records: Records, modalities: list[str]) -> dict[str, Tensor]:
    """Each modality's token weights in its own attention pooling (``pool.<m>.attn``), where recorded."""
    return {m: records[f"pool.{m}.attn"][-1].mean(1)[:, 0] for m in modalities if f"pool.{m}.attn" in records}


def normalised(values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per sample, divided by the sum over modalities (0 where all are 0)."""
    total = torch.stack(list(values.values())).sum(0)
    return {m: torch.where(total > 0, v / total.clamp(min=1e-12), torch.zeros_like(v)) for m, v in values.items()}
