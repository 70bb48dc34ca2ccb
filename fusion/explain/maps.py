"""What the recorded attention says, per fusion: how much the fusion attends to each token of each modality,
the cross-modal attention matrices, the attention mass per modality and the gate values.

Every map is averaged over heads; a map with several layers shows the last one or their mean (``layer``).
Token weights come from the attention that reads each modality's tokens on the way to the decision:
the per-modality attention pooling (late, late_avg, gated, tensor, low_rank, cross_attention, co_attention,
bottleneck), the pooling over the joint sequence (early) or the latents' cross-attention (perceiver).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

LAYERS = ("last", "mean")
LATENTS, BOTTLENECKS = "latents", "bottlenecks"  # query names of maps whose queries are not a modality's tokens


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


def _select(calls: list[Tensor], layer: str) -> Tensor:
    """Layer calls [B, H, Nq, Nk] each -> [B, Nq, Nk]: the last layer or the mean, averaged over heads."""
    if layer not in LAYERS:
        raise ValueError(f"explain.layer={layer!r}; use one of {LAYERS}")
    stacked = torch.stack(calls)
    return (stacked[-1] if layer == "last" else stacked.mean(0)).mean(1)


def _indexed(records: dict[str, list[Tensor]], pattern: str) -> list[Tensor]:
    """The calls of the layers whose names match ``pattern`` with ``(\\d+)`` for the layer index, by index."""
    regex = re.compile(pattern)
    found = sorted((int(m.group(1)), name) for name in records if (m := regex.fullmatch(name)))
    return [call for _, name in found for call in records[name]]


def _split(x: Tensor, spans: dict[str, slice]) -> dict[str, Tensor]:
    """Last axis split into each modality's span."""
    return {m: x[..., s] for m, s in spans.items()}


def _pooled_tokens(records: dict[str, list[Tensor]], modalities: list[str]) -> dict[str, Tensor]:
    return {m: records[f"fusion.pool.{m}.attn"][-1].mean(1)[:, 0] for m in modalities
            if f"fusion.pool.{m}.attn" in records}


def _normalised(values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per sample, divided by the sum over modalities (0 where all are 0)."""
    total = torch.stack(list(values.values())).sum(0)
    return {m: torch.where(total > 0, v / total.clamp(min=1e-12), torch.zeros_like(v)) for m, v in values.items()}


def attention_maps(fusion: nn.Module, records: dict[str, list[Tensor]], layer: str = "last") -> AttentionMaps:
    """Interpret ``records`` (fusion.explain.capture over the whole network) for ``fusion``'s kind."""
    name = type(fusion).__name__
    modalities = list(fusion.modalities)
    maps = AttentionMaps(tokens=_pooled_tokens(records, modalities),
                         source="the fusion's attention pooling over the modality's tokens")
    if name == "CrossAttentionFusion":
        for target in modalities:
            for source in fusion.sources[target]:
                calls = _indexed(records, rf"fusion\.cross\.{source}_to_{target}\.(\d+)\.attn")
                maps.cross[(target, source)] = _select(calls, layer)
    elif name == "CoAttentionFusion" and len(modalities) > 1:
        for target in modalities:
            joined = _select(_indexed(records, rf"fusion\.co\.(\d+)\.{target}\.attn"), layer)
            lengths = [records[f"fusion.pool.{s}.attn"][-1].shape[-1] for s in fusion.others[target]]
            for source, block in zip(fusion.others[target], joined.split(lengths, dim=-1)):
                maps.cross[(target, source)] = block
    elif name == "EarlyFusion":
        spans = fusion.last_spans
        pool = records["fusion.pool.attn"][-1].mean(1)[:, 0]
        maps.tokens, maps.source = _split(pool, spans), "the fusion's attention pooling over the joint sequence"
        maps.mass = {m: w.sum(-1) for m, w in maps.tokens.items()}
        if "fusion.blocks.0.attn" in records:
            joint = _select(_indexed(records, r"fusion\.blocks\.(\d+)\.attn"), layer)
            for query, rows in spans.items():
                for key, cols in spans.items():
                    if query != key:
                        maps.cross[(query, key)] = joint[:, rows, cols]
    elif name == "PerceiverFusion":
        spans = fusion.last_spans
        cross = _select(_indexed(records, r"fusion\.cross\.(\d+)\.attn"), layer)  # [B, L, N]
        maps.tokens = _split(cross.mean(1), spans)
        maps.source = "the latents' cross-attention over the modality's tokens (mean over latents)"
        maps.mass = {m: w.sum(-1) for m, w in maps.tokens.items()}
        maps.cross = {(LATENTS, m): block for m, block in _split(cross, spans).items()}
    elif name == "BottleneckFusion" and fusion.bottleneck is not None:
        nb, reads = fusion.bottleneck.shape[1], {}
        for m in modalities:
            calls = _indexed(records, rf"fusion\.layers\.(\d+)\.{m}\.attn")[fusion.fusion_layer:]
            block = _select(calls, layer)[:, -nb:, :-nb]  # bottleneck queries x the modality's tokens
            maps.cross[(BOTTLENECKS, m)] = block
            reads[m] = block.sum(-1).mean(-1)
        maps.mass = _normalised(reads)
    if name == "GatedFusion" and fusion.last_gates is not None:
        gates = fusion.last_gates.float().mean(-1)  # [B, M]
        maps.gates = {m: gates[:, i].cpu() for i, m in enumerate(modalities)}
    return maps
