"""Perceiver fusion (Jaegle et al., 2021, "Perceiver: General Perception with Iterative Attention"): a small
learned latent array repeatedly cross-attends to the tokens of all modalities and processes itself with
self-attention, so the cost is linear in the number of input tokens."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from fusion.models.attention_maps import LATENTS, AttentionMaps, Records, indexed, select_layer, split_spans
from fusion.models.fusions.registry import register_fusion
from fusion.models.fusions.tokens import ModalityEmbedding, TokenFusion

__all__ = ["PerceiverFusion"]

POOLS = ("mean", "attention")


@register_fusion("perceiver")
class PerceiverFusion(TokenFusion):
    """A learned latent array [num_latents, dim] reads the concatenated, masked tokens of every modality
    (each plus a learned modality-type embedding) with a CrossBlock, then runs ``latent_depth`` self-attention
    Blocks over the latents; this cross-attend + latent-transformer unit is repeated ``num_cross`` times.

    ``share_weights``: as in the paper, every repeat after the first reuses one set of weights (the first
    has its own: "weights shared ... except for the first"); ``False`` gives each repeat its own.
    ``pool``: ``mean`` (the paper: LayerNorm, then the average over the latents) or ``attention`` (an
    AttentionPool over the latents): ``out_dim = dim``.

    The fusion adds no positional information: permuting the input tokens (with their masks) leaves the
    output unchanged. Masked tokens are never keys; a sample without any valid token would get input-free
    latents, and outputs zeros instead.
    The latents read the modalities' tokens joined in ``modalities`` order (``last_spans``); its maps show
    that cross-attention per modality (:meth:`attention_maps`). Shared layer options: see
    :class:`~fusion.models.fusions.tokens.TokenFusion`.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        dim: int,
        num_latents: int = 8,
        num_cross: int = 2,
        latent_depth: int = 1,
        share_weights: bool = True,
        pool: str = "mean",
        **layer_options,
    ) -> None:
        super().__init__(modalities, dim, **layer_options)
        if pool not in POOLS:
            raise ValueError(f"unknown perceiver pool {pool!r}; available: {POOLS}")
        if num_latents < 1 or num_cross < 1:
            raise ValueError(f"num_latents ({num_latents}) and num_cross ({num_cross}) must be >= 1")
        self.out_dim = dim
        self.num_cross = num_cross
        self.embed = ModalityEmbedding(self.modalities, dim)
        self.latents = nn.Parameter(torch.empty(1, num_latents, dim))
        nn.init.trunc_normal_(self.latents, std=0.02)
        num_sets = min(num_cross, 2) if share_weights else num_cross
        self.cross = nn.ModuleList(self.cross_block() for _ in range(num_sets))
        self.latent_blocks = nn.ModuleList(
            nn.ModuleList(self.block() for _ in range(latent_depth)) for _ in range(num_sets)
        )
        self.pool = self.attention_pool() if pool == "attention" else None
        self.norm = self.norm_layer(dim) if pool == "mean" else None
        self.last_spans: dict[str, slice] = {}

    def fuse(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        x, mask = self.embed(tokens, masks)
        self.last_spans = self.embed.spans(tokens)
        z = self.latents.expand(x.shape[0], -1, -1)
        for r in range(self.num_cross):
            i = min(r, len(self.cross) - 1)  # shared weights: repeats 1.. reuse set 1
            z = self.cross[i](z, x, mask)
            for blk in self.latent_blocks[i]:
                z = blk(z)
        if self.pool is not None:
            out = self.pool(z)
        else:
            out = self.norm(z).mean(dim=1)
        return out * mask.any(dim=-1, keepdim=True)  # nothing to read: zeros, not the input-free latents

    def attention_maps(self, records: Records, layer: str = "last") -> AttentionMaps:
        """The latents' cross-attention over each modality's tokens: per latent (``cross[(latents, m)]``), its
        mean over latents as token weights, and their sum per modality as the mass."""
        spans = self.last_spans
        cross = select_layer(indexed(records, r"cross\.(\d+)\.attn"), layer)  # [B, L, N]
        tokens = split_spans(cross.mean(1), spans)
        return AttentionMaps(
            tokens=tokens,
            mass={m: w.sum(-1) for m, w in tokens.items()},
            cross={(LATENTS, m): block for m, block in split_spans(cross, spans).items()},
            source="the latents' cross-attention over the modality's tokens (mean over latents)",
        )
