"""Pairwise cross-modal attention fusion after MulT (Tsai et al., 2019, "Multimodal Transformer for
Unaligned Multimodal Language Sequences")."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusion.models.attention_maps import AttentionMaps, Records, indexed, select_layer
from fusion.models.fusions.registry import register_fusion
from fusion.models.fusions.tokens import TokenFusion

__all__ = ["CrossAttentionFusion"]


@register_fusion("cross_attention")
class CrossAttentionFusion(TokenFusion):
    """MulT-style fusion: for every ordered pair (source -> target) ``depth`` CrossBlocks in which the
    target's tokens query the source's; per target, the incoming streams are concatenated along features
    and linearly projected back to D (as in MulT, concatenation keeps each source in its own subspace so the
    projection can weight sources per feature, which a plain sum cannot), then ``self_depth`` self-attention
    Blocks and an AttentionPool. Targets are concatenated: ``out_dim = len(modalities) * dim``.

    A sample whose source is absent gets a zero cross-attention output (the stream is then the target's own
    residual path), an absent target pools to zero, and one modality reduces to self-attention + pooling.
    Its maps add ``cross[(target, source)]`` [B, N_tgt, N_src] (:meth:`attention_maps`).
    """

    def __init__(self, modalities: list[str], dim: int, depth: int = 1, self_depth: int = 1, **layer_options) -> None:
        super().__init__(modalities, dim, **layer_options)
        self.out_dim = len(self.modalities) * dim
        self.sources = {t: [s for s in self.modalities if s != t] for t in self.modalities}
        self.cross = nn.ModuleDict(
            {
                self._pair(s, t): nn.ModuleList(self.cross_block() for _ in range(depth))
                for t in self.modalities
                for s in self.sources[t]
            }
        )
        # One modality has no incoming stream: its own tokens pass through unchanged.
        self.merge = nn.ModuleDict(
            {
                t: nn.Linear(len(self.sources[t]) * dim, dim) if self.sources[t] else nn.Identity()
                for t in self.modalities
            }
        )
        self.blocks = nn.ModuleDict(
            {t: nn.ModuleList(self.block() for _ in range(self_depth)) for t in self.modalities}
        )
        self.pool = nn.ModuleDict({t: self.attention_pool() for t in self.modalities})

    @staticmethod
    def _pair(source: str, target: str) -> str:
        return f"{source}_to_{target}"

    def _stream(self, source: str, target: str, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        """Target tokens after ``depth`` CrossBlocks attending to the source."""
        x = tokens[target]
        for blk in self.cross[self._pair(source, target)]:
            x = blk(x, tokens[source], masks[source])
        return x

    def fuse(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        pooled = []
        for t in self.modalities:
            streams = [self._stream(s, t, tokens, masks) for s in self.sources[t]] or [tokens[t]]
            x = self.merge[t](torch.cat(streams, dim=-1))
            for blk in self.blocks[t]:
                x = blk(x, masks[t])
            pooled.append(self.pool[t](x, masks[t]))
        return torch.cat(pooled, dim=-1)

    def attention_maps(self, records: Records, layer: str = "last") -> AttentionMaps:
        """Pooling weights per modality, and per (target, source) the target's queries over the source's
        tokens in the pair's CrossBlocks."""
        maps = super().attention_maps(records, layer)
        for target in self.modalities:
            for source in self.sources[target]:
                calls = indexed(records, rf"cross\.{self._pair(source, target)}\.(\d+)\.attn")
                maps.cross[(target, source)] = select_layer(calls, layer)
        return maps
