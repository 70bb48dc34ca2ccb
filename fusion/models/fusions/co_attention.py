"""Bidirectional co-attention fusion after ViLBERT (Lu et al., 2019, "ViLBERT: Pretraining Task-Agnostic
Visiolinguistic Representations for Vision-and-Language Tasks"): parallel streams exchanging information
through co-attentional transformer (co-TRM) layers."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from fusion.models.attention_maps import AttentionMaps, Records, indexed, select_layer
from fusion.models.fusions.registry import register_fusion
from fusion.models.fusions.tokens import ModalityEmbedding, TokenFusion

__all__ = ["CoAttentionFusion"]


@register_fusion("co_attention")
class CoAttentionFusion(TokenFusion):
    """One stream per modality; each of the ``depth`` layers is ViLBERT's co-TRM followed by a TRM:

    1. co-attention: every modality's tokens query the other modalities' tokens (a CrossBlock: keys and
       values from the other streams, residual on its own stream). All streams are updated in parallel from
       the previous layer's states, so for two modalities A queries B and B queries A at once, as in ViLBERT.
       With three or more modalities a stream queries the *concatenation* of all other streams (each plus a
       learned modality-type embedding so the keys tell their source apart): one softmax over every other
       token, so the sources compete for attention and no merge layer is needed.
    2. self-attention: a Block per stream.

    Each direction has its own query/key projections (as in ViLBERT's two streams): the affinity of A->B is
    not tied to the transpose of B->A. Then an AttentionPool per modality, concatenated:
    ``out_dim = len(modalities) * dim``. One modality: self-attention Blocks and the pool only.

    Absent or padded tokens are never keys; a stream whose other modalities are all absent gets a zero
    co-attention update (its residual path passes through), an absent modality pools to zero.
    Its maps add ``cross[(m, other)]``: m's queries over each other modality's tokens in the co-attention
    layers (:meth:`attention_maps`). Shared layer options: see
    :class:`~fusion.models.fusions.tokens.TokenFusion`.
    """

    def __init__(self, modalities: Sequence[str], dim: int, depth: int = 1, **layer_options) -> None:
        super().__init__(modalities, dim, **layer_options)
        self.out_dim = len(self.modalities) * dim
        self.others = {m: [s for s in self.modalities if s != m] for m in self.modalities}
        multi = len(self.modalities) > 1
        self.embed = ModalityEmbedding(self.modalities, dim) if multi else None
        self.co = nn.ModuleList(
            nn.ModuleDict({m: self.cross_block() for m in self.modalities} if multi else {}) for _ in range(depth)
        )
        self.self_blocks = nn.ModuleList(
            nn.ModuleDict({m: self.block() for m in self.modalities}) for _ in range(depth)
        )
        self.pool = nn.ModuleDict({m: self.attention_pool() for m in self.modalities})

    def context(self, tokens: dict[str, Tensor], masks: dict[str, Tensor], target: str) -> tuple[Tensor, Tensor]:
        """The keys ``target`` attends to: the other modalities' tokens, concatenated, and their mask."""
        return self.embed(tokens, masks, self.others[target])

    def fuse(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        x = dict(tokens)
        for co, blocks in zip(self.co, self.self_blocks, strict=True):
            updated = {}
            for m in self.modalities:
                h = x[m]
                if m in co:
                    ctx, ctx_mask = self.context(x, masks, m)
                    h = co[m](h, ctx, ctx_mask)
                updated[m] = h
            x = updated  # co-attention of every stream read the previous layer's states
            for m in self.modalities:
                x[m] = blocks[m](x[m], masks[m])
        pooled = []
        for m in self.modalities:
            pooled.append(self.pool[m](x[m], masks[m]))
        return torch.cat(pooled, dim=-1)

    def attention_maps(self, records: Records, layer: str = "last") -> AttentionMaps:
        """Pooling weights per modality, and per (target, source) the target's co-attention over the source's
        part of the joined context (its key axis holds the other modalities in ``modalities`` order)."""
        maps = super().attention_maps(records, layer)
        if len(self.modalities) > 1:
            for target in self.modalities:
                joined = select_layer(indexed(records, rf"co\.(\d+)\.{target}\.attn"), layer)
                lengths = [records[f"pool.{s}.attn"][-1].shape[-1] for s in self.others[target]]
                for source, block in zip(self.others[target], joined.split(lengths, dim=-1), strict=True):
                    maps.cross[(target, source)] = block
        return maps
