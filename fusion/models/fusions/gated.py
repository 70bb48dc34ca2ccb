"""Gated Multimodal Unit (Arevalo et al., 2017, "Gated Multimodal Units for Information Fusion",
ICLR workshop), generalised from two to M modalities with a softmax over modalities."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from fusion.models.attention_maps import AttentionMaps, Records
from fusion.models.fusions.pooling import PooledFusion, stack_modalities
from fusion.models.fusions.registry import register_fusion

__all__ = ["GatedFusion"]


@register_fusion("gated")
class GatedFusion(PooledFusion):
    """Per-modality AttentionPool -> GMU: h_m = tanh(W_m v_m), z = softmax_m(W_z [v_1; ...; v_M]) per
    output dimension, output sum_m z_m * h_m, ``out_dim = hidden`` (default ``dim``).

    With two modalities the softmax is the paper's sigmoid gate (z and 1 - z). The softmax runs over the
    modalities present in each sample: an absent modality gets gate 0 (and pools to a zero vector in the
    gate input), a sample with no modality gets all-zero gates and a zero output. With one modality the gate
    is the presence (no W_z). ``last_gates`` keeps the gates of the last forward, [B, M, out_dim] detached.
    """

    def __init__(self, modalities: list[str], dim: int, hidden: Optional[int] = None, **pool_kwargs) -> None:
        super().__init__(modalities, dim, **pool_kwargs)
        self.out_dim = hidden or dim
        M = len(self.modalities)
        self.proj = nn.ModuleDict({m: nn.Linear(dim, self.out_dim) for m in self.modalities})
        self.gate = nn.Linear(M * dim, M * self.out_dim) if M > 1 else None
        self.last_gates: Tensor | None = None

    def gates(self, pooled: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        """Gates [B, M, out_dim]: softmax over the present modalities, 0 for absent ones."""
        present = stack_modalities(present, self.modalities)[..., None]  # [B, M, 1]
        if self.gate is None:
            return present.to(pooled[self.modalities[0]].dtype).expand(-1, -1, self.out_dim)
        B, M = present.shape[:2]
        logits = self.gate(torch.cat([pooled[m] for m in self.modalities], dim=-1)).view(B, M, self.out_dim)
        # Never mask a whole row (softmax over nothing = NaN); samples without any modality are zeroed after.
        keep = present | ~present.any(dim=1, keepdim=True)
        return logits.masked_fill(~keep, float("-inf")).softmax(dim=1) * present

    def fuse(self, pooled: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        z = self.gates(pooled, present)
        h = stack_modalities({m: torch.tanh(self.proj[m](pooled[m])) for m in self.modalities}, self.modalities)
        self.last_gates = z.detach()
        return (z * h).sum(dim=1)

    def attention_maps(self, records: Records, layer: str = "last") -> AttentionMaps:
        """Pooling weights per modality and each modality's mean gate value in the last forward."""
        maps = super().attention_maps(records, layer)
        if self.last_gates is not None:
            gates = self.last_gates.float().mean(-1)  # [B, M]
            maps.gates = {m: gates[:, i].cpu() for i, m in enumerate(self.modalities)}
        return maps
