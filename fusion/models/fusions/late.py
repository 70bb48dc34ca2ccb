"""Late fusion baseline: each modality is pooled on its own, the pooled vectors are concatenated
(cf. Baltrusaitis et al., 2019, "Multimodal Machine Learning: A Survey and Taxonomy", late fusion)."""

from __future__ import annotations

import torch
from torch import Tensor

from fusion.models.fusions.pooling import PooledFusion
from fusion.models.fusions.registry import register_fusion

__all__ = ["LateFusion"]


@register_fusion("late")
class LateFusion(PooledFusion):
    """Per-modality AttentionPool -> concatenation (an absent modality contributes a zero block).
    Keyword arguments (num_heads, mlp_ratio, dropout, fused_attn, attn_score, attn_gate, norm_layer,
    act_layer) configure the :class:`~fusion.models.fusions.pooling.ModalityPooling`."""

    def __init__(self, modalities: list[str], dim: int, **pool_kwargs) -> None:
        super().__init__(modalities, dim, **pool_kwargs)
        self.out_dim = len(self.modalities) * dim

    def fuse(self, pooled: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        return torch.cat([pooled[m] for m in self.modalities], dim=-1)
