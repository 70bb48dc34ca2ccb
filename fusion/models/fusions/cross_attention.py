"""Pairwise cross-modal attention fusion after MulT (Tsai et al., 2019, "Multimodal Transformer for
Unaligned Multimodal Language Sequences")."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusion.models.attention import AttentionPool, Block, CrossBlock, block_options
from fusion.models.fusions.registry import register_fusion

__all__ = ["CrossAttentionFusion"]


@register_fusion("cross_attention")
class CrossAttentionFusion(nn.Module):
    """MulT-style fusion: for every ordered pair (source -> target) ``depth`` CrossBlocks in which the
    target's tokens query the source's; per target, the incoming streams are concatenated along features
    and linearly projected back to D (as in MulT, concatenation keeps each source in its own subspace so the
    projection can weight sources per feature, which a plain sum cannot), then ``self_depth`` self-attention
    Blocks and an AttentionPool. Targets are concatenated: ``out_dim = len(modalities) * dim``.

    A sample whose source is absent gets a zero cross-attention output (the stream is then the target's own
    residual path), an absent target pools to zero, and one modality reduces to self-attention + pooling.
    Set ``record_attention = True`` to keep the cross-modal weights in ``last_attention``:
    ``{"src->tgt": [depth, B, H, N_tgt, N_src]}`` (detached; uses the non-fused attention path).
    """

    def __init__(
        self,
        modalities: list[str],
        dim: int,
        num_heads: int = 4,
        depth: int = 1,
        self_depth: int = 1,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        fused_attn: bool = True,
        attn_score: str = "scaled_dot",
        attn_gate: bool = False,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.modalities = list(modalities)
        self.out_dim = len(self.modalities) * dim
        self.sources = {t: [s for s in self.modalities if s != t] for t in self.modalities}
        layer_kwargs = block_options(
            mlp_ratio, dropout, attn_dropout, fused_attn, attn_score, attn_gate, norm_layer, act_layer
        )
        self.cross = nn.ModuleDict(
            {
                self._pair(s, t): nn.ModuleList(CrossBlock(dim, num_heads, **layer_kwargs) for _ in range(depth))
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
            {
                t: nn.ModuleList(Block(dim, num_heads, **layer_kwargs) for _ in range(self_depth))
                for t in self.modalities
            }
        )
        self.pool = nn.ModuleDict({t: AttentionPool(dim, num_heads, **layer_kwargs) for t in self.modalities})
        self.record_attention = False
        self.last_attention: dict[str, Tensor] = {}

    @staticmethod
    def _pair(source: str, target: str) -> str:
        return f"{source}_to_{target}"

    def _stream(self, source: str, target: str, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        """Target tokens after ``depth`` CrossBlocks attending to the source; records weights if asked."""
        x, weights = tokens[target], []
        for blk in self.cross[self._pair(source, target)]:
            if self.record_attention:
                x, w = blk(x, tokens[source], masks[source], return_weights=True)
                weights.append(w.detach())
            else:
                x = blk(x, tokens[source], masks[source])
        if weights:
            self.last_attention[f"{source}->{target}"] = torch.stack(weights)
        return x

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        """tokens {m: [B, N_m, D]}, masks {m: [B, N_m]} -> [B, out_dim]."""
        self.last_attention = {}
        pooled = []
        for t in self.modalities:
            streams = [self._stream(s, t, tokens, masks) for s in self.sources[t]] or [tokens[t]]
            x = self.merge[t](torch.cat(streams, dim=-1))
            for blk in self.blocks[t]:
                x = blk(x, masks[t])
            pooled.append(self.pool[t](x, masks[t]))
        return torch.cat(pooled, dim=-1)
