"""Attention-bottleneck fusion, MBT (Nagrani et al., 2021, "Attention Bottlenecks for Multimodal Fusion"):
modalities exchange information only through a few shared bottleneck tokens, from a chosen layer on."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from fusion.models.attention_maps import BOTTLENECKS, AttentionMaps, Records, indexed, normalised, select_layer
from fusion.models.fusions.registry import register_fusion
from fusion.models.fusions.tokens import TokenFusion

__all__ = ["BottleneckFusion"]


@register_fusion("bottleneck")
class BottleneckFusion(TokenFusion):
    """``num_layers`` layers, each with its own self-attention Block per modality.

    Layers ``0 .. fusion_layer - 1`` are unimodal: each modality attends to its own tokens only. From
    ``fusion_layer`` on, ``num_bottlenecks`` bottleneck tokens (a learned initial array, MBT's z_fsn) are
    appended to each modality's tokens; each modality runs its Block over ``[own tokens; bottlenecks]`` and
    the bottleneck outputs are averaged over the modalities *present* in that sample (MBT's mean of the
    per-modality z updates; an absent modality's update is left out, a sample without any modality keeps
    its bottlenecks). Cross-modal information therefore flows only through the bottleneck tokens, and only
    from ``fusion_layer`` on (``fusion_layer = num_layers`` or ``num_bottlenecks = 0``: no exchange at all).
    All modalities of a layer read the same bottlenecks (those from before the layer), so modality A reaches
    the bottlenecks in the first fusion layer and modality B's tokens from the second one on; with a single
    fusion layer the exchange shows only in the pooled bottleneck output.

    Output (MBT averages per-modality logits of CLS tokens; here, to fit the shared head): the per-modality
    AttentionPool vectors concatenated, followed by the mean of the bottleneck tokens (zero for a sample with
    no modality present): ``out_dim = (len(modalities) + 1) * dim``, or ``len(modalities) * dim`` when no
    bottleneck is used. An absent modality pools to zero.

    Its maps add what the bottleneck tokens read of each modality in the fusion layers and, from that, each
    modality's share of the exchange (:meth:`attention_maps`).
    Shared layer options: see :class:`~fusion.models.fusions.tokens.TokenFusion`.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        dim: int,
        num_layers: int = 3,
        fusion_layer: int = 1,
        num_bottlenecks: int = 4,
        **layer_options,
    ) -> None:
        super().__init__(modalities, dim, **layer_options)
        if not 0 <= fusion_layer <= num_layers:
            raise ValueError(f"fusion_layer ({fusion_layer}) must lie in [0, num_layers={num_layers}]")
        if num_bottlenecks < 0:
            raise ValueError(f"num_bottlenecks must be >= 0, got {num_bottlenecks}")
        self.fusion_layer = fusion_layer
        self.layers = nn.ModuleList(
            nn.ModuleDict({m: self.block() for m in self.modalities}) for _ in range(num_layers)
        )
        self.bottleneck: Optional[nn.Parameter] = None
        if num_bottlenecks and fusion_layer < num_layers:
            self.bottleneck = nn.Parameter(torch.empty(1, num_bottlenecks, dim))
            nn.init.trunc_normal_(self.bottleneck, std=0.02)
        self.pool = nn.ModuleDict({m: self.attention_pool() for m in self.modalities})
        self.out_dim = (len(self.modalities) + (self.bottleneck is not None)) * dim

    def _fusion_layer(
        self, layer: nn.ModuleDict, x: dict[str, Tensor], masks: dict[str, Tensor], z: Tensor
    ) -> tuple[dict[str, Tensor], Tensor]:
        """One layer with bottlenecks: every modality updates [own tokens; z]; z <- mean over present."""
        B, nb = z.shape[:2]
        z_mask = torch.ones(B, nb, dtype=torch.bool, device=z.device)
        out, z_sum = {}, torch.zeros_like(z)
        count = torch.zeros(B, 1, 1, dtype=z.dtype, device=z.device)
        for m in self.modalities:
            n = x[m].shape[1]
            h, mask = torch.cat([x[m], z], dim=1), torch.cat([masks[m], z_mask], dim=1)
            h = layer[m](h, mask)
            out[m] = h[:, :n]
            present = masks[m].any(dim=-1)[:, None, None]
            z_sum = z_sum + torch.where(present, h[:, n:], 0.0)  # where, not *: absent content never enters
            count = count + present
        return out, torch.where(count > 0, z_sum / count.clamp(min=1), z)

    def streams(
        self, tokens: dict[str, Tensor], masks: dict[str, Tensor], num_layers: Optional[int] = None
    ) -> tuple[dict[str, Tensor], Optional[Tensor]]:
        """The modality streams {m: [B, N_m, D]} and bottleneck tokens [B, nb, D] (None before
        ``fusion_layer`` or without bottlenecks) after the first ``num_layers`` layers (default: all)."""
        x, z = dict(tokens), None
        for i, layer in enumerate(self.layers[:num_layers]):
            if i < self.fusion_layer or self.bottleneck is None:
                for m in self.modalities:
                    x[m] = layer[m](x[m], masks[m])
            else:
                if z is None:
                    z = self.bottleneck.expand(next(iter(x.values())).shape[0], -1, -1)
                x, z = self._fusion_layer(layer, x, masks, z)
        return x, z

    def fuse(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        x, z = self.streams(tokens, masks)
        pooled = []
        for m in self.modalities:
            pooled.append(self.pool[m](x[m], masks[m]))
        if z is not None:
            any_present = torch.stack([masks[m].any(dim=-1) for m in self.modalities]).any(dim=0)
            pooled.append(z.mean(dim=1) * any_present[:, None])
        return torch.cat(pooled, dim=-1)

    def attention_maps(self, records: Records, layer: str = "last") -> AttentionMaps:
        """Pooling weights per modality; with bottlenecks, the bottleneck queries over each modality's tokens
        in the fusion layers (``cross[(bottlenecks, m)]``) and the normalised mass they read per modality."""
        maps = super().attention_maps(records, layer)
        if self.bottleneck is None:
            return maps
        nb, reads = self.bottleneck.shape[1], {}
        for m in self.modalities:
            calls = indexed(records, rf"layers\.(\d+)\.{m}\.attn")[self.fusion_layer :]
            block = select_layer(calls, layer)[:, -nb:, :-nb]  # bottleneck queries x the modality's tokens
            maps.cross[(BOTTLENECKS, m)] = block
            reads[m] = block.sum(-1).mean(-1)
        maps.mass = normalised(reads)
        return maps
