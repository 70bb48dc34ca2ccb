"""Per-modality attention pooling shared by the vector-level fusions (late, late_avg, gated, tensor, low_rank).

:class:`ModalityPooling` turns each modality's tokens into one vector with its own
:class:`~fusion.models.attention.AttentionPool` and reports which samples hold the modality;
:class:`PooledFusion` is the base of fusions that combine those vectors (``fuse(pooled, present)``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusion.models.attention import AttentionPool, block_options
from fusion.models.attention_maps import POOLING, AttentionMaps, Records, pooled_tokens

__all__ = ["ModalityPooling", "PooledFusion", "stack_modalities"]


class ModalityPooling(nn.ModuleDict):
    """One AttentionPool per modality: tokens {m: [B, N_m, D]}, masks {m: [B, N_m]} ->
    (pooled {m: [B, D]}, present {m: [B] bool}).

    A modality is present in a sample when its mask holds a valid token (``masks[m].any(-1)``); an absent
    one pools to an exact zero vector whatever its tokens hold. A ModuleDict keyed by modality, so the
    parameters keep the names ``<attr>.<modality>.*`` of a plain per-modality pool dict.
    """

    def __init__(self, modalities: list[str], dim: int, num_heads: int = 4, **layer_options) -> None:
        """``layer_options``: the shared layer knobs of :func:`~fusion.models.attention.block_options`."""
        options = block_options(**layer_options)
        super().__init__({m: AttentionPool(dim, num_heads, **options) for m in modalities})

    def forward(
        self, tokens: dict[str, Tensor], masks: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        pooled = {m: pool(tokens[m], masks[m]) for m, pool in self.items()}
        present = {m: masks[m].any(dim=-1) for m in self.keys()}
        return pooled, present


def stack_modalities(values: dict[str, Tensor], modalities: list[str]) -> Tensor:
    """{m: [B, ...]} -> [B, M, ...] in the order of ``modalities``."""
    return torch.stack([values[m] for m in modalities], dim=1)


class PooledFusion(nn.Module):
    """Base of the vector-level fusions: :class:`ModalityPooling` (as ``self.pool``), then
    ``self.fuse(pooled, present)``. Subclasses set ``out_dim`` and implement :meth:`fuse`; the shared
    knobs (num_heads, mlp_ratio, dropout, fused_attn, attn_score, attn_gate, norm_layer, act_layer) go
    to the pooling."""

    def __init__(self, modalities: list[str], dim: int, **pool_kwargs) -> None:
        super().__init__()
        self.modalities = list(modalities)
        self.dim = dim
        self.pool = ModalityPooling(self.modalities, dim, **pool_kwargs)

    def fuse(self, pooled: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        """pooled {m: [B, D]} (zero where absent), present {m: [B] bool} -> [B, out_dim]."""
        raise NotImplementedError

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        """tokens {m: [B, N_m, D]}, masks {m: [B, N_m]} -> [B, out_dim]."""
        return self.fuse(*self.pool(tokens, masks))

    def attention_maps(self, records: Records, layer: str = "last") -> AttentionMaps:
        """The maps of the last forward (fusion.models.attention_maps): each modality's pooling weights."""
        return AttentionMaps(tokens=pooled_tokens(records, self.modalities), source=POOLING)
