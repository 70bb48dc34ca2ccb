"""Late fusion baseline: each modality is pooled on its own, the pooled vectors are concatenated
(cf. Baltrusaitis et al., 2019, "Multimodal Machine Learning: A Survey and Taxonomy", late fusion)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusion.models.attention import AttentionPool
from fusion.models.fusions.registry import register_fusion

__all__ = ["LateFusion"]


@register_fusion("late")
class LateFusion(nn.Module):
    """Per-modality AttentionPool -> concatenation (an absent modality contributes a zero block)."""

    def __init__(
        self,
        modalities: list[str],
        dim: int,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        fused_attn: bool = True,
        attn_score: str = "scaled_dot",
        attn_gate: bool = False,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.modalities = list(modalities)
        self.out_dim = len(self.modalities) * dim
        layer_kwargs = dict(
            mlp_ratio=mlp_ratio, drop=dropout, fused=fused_attn, score=attn_score, gate=attn_gate,
            norm_layer=norm_layer, act_layer=act_layer,
        )
        self.pool = nn.ModuleDict({m: AttentionPool(dim, num_heads, **layer_kwargs) for m in self.modalities})

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        return torch.cat([self.pool[m](tokens[m], masks[m]) for m in self.modalities], dim=-1)
