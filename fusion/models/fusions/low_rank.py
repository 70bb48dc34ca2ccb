"""Low-rank Multimodal Fusion (Liu et al., 2018, "Efficient Low-rank Multimodal Fusion with
Modality-Specific Factors", ACL): the tensor-fusion weight decomposed into rank-one modality factors."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from fusion.models.fusions.pooling import PooledFusion
from fusion.models.fusions.registry import register_fusion
from fusion.models.fusions.tensor import append_one

__all__ = ["LowRankFusion"]


@register_fusion("low_rank")
class LowRankFusion(PooledFusion):
    """Per-modality AttentionPool -> z_m = [v_m; 1] -> h = sum_r lambda_r prod_m (z_m W_m^(r)) + b,
    ``out_dim`` outputs (default ``dim``), ``rank`` modality-specific factors W_m^(r) [dim + 1, out_dim].

    This equals contracting the TFN tensor z_1 ⊗ ... ⊗ z_M with the weight
    W = sum_r lambda_r W_1^(r) ⊗ ... ⊗ W_M^(r) (per output) without building either: cost is linear in M.
    As in tensor fusion, an absent modality is the zero vector with the 1 appended, so only its factors'
    last ("bias") row acts; a sample with no modality gets sum_r lambda_r prod_m W_m^(r)[-1] + b.
    """

    def __init__(
        self, modalities: list[str], dim: int, rank: int = 4, out_dim: Optional[int] = None, **pool_kwargs
    ) -> None:
        super().__init__(modalities, dim, **pool_kwargs)
        self.rank = rank
        self.out_dim = out_dim or dim
        # Each factor's product z_m W_m^(r) starts at unit scale, so the product over modalities does too.
        self.factors = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(rank, dim + 1, self.out_dim) * (dim + 1) ** -0.5) for m in self.modalities}
        )
        self.rank_weights = nn.Parameter(torch.randn(rank) * rank**-0.5)
        self.bias = nn.Parameter(torch.zeros(self.out_dim))

    def fuse(self, pooled: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        product = None
        for m in self.modalities:
            f = torch.einsum("bi,rio->bro", append_one(pooled[m], present[m]), self.factors[m])
            product = f if product is None else product * f
        return torch.einsum("bro,r->bo", product, self.rank_weights) + self.bias
