"""Shared parts of the token-level attention fusions (cross_attention, early, co_attention, bottleneck, perceiver).

:class:`TokenFusion` holds what they all take (modalities, width, the shared attention-layer options),
builds their Block / CrossBlock / AttentionPool layers; each reads its own attention maps
(:meth:`TokenFusion.attention_maps`).
:class:`ModalityEmbedding` concatenates modality token sequences and masks, adding a learned modality-type
embedding per modality (as BERT's segment embeddings, Devlin et al., 2019, and VisualBERT / UNITER use to
tell the streams of a single joint sequence apart).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from fusion.models.attention import AttentionPool, Block, CrossBlock, block_options
from fusion.models.attention_maps import POOLING, AttentionMaps, Records, pooled_tokens

__all__ = ["TokenFusion", "ModalityEmbedding"]


class ModalityEmbedding(nn.Module):
    """One learned modality-type vector per modality, added to its tokens when sequences are joined."""

    def __init__(self, modalities: Sequence[str], dim: int) -> None:
        super().__init__()
        self.modalities = list(modalities)  # the default order (a ParameterDict built from a dict sorts its keys)
        self.embed = nn.ParameterDict({m: nn.Parameter(torch.empty(dim)) for m in self.modalities})
        for p in self.embed.values():
            nn.init.trunc_normal_(p, std=0.02)

    def forward(
        self, tokens: dict[str, Tensor], masks: dict[str, Tensor], modalities: Optional[Sequence[str]] = None
    ) -> tuple[Tensor, Tensor]:
        """Concatenate ``modalities`` (default: all, in construction order) along the token axis, each with
        its type embedding -> (x [B, sum N_m, D], mask [B, sum N_m]); see :meth:`spans` for the layout."""
        modalities = self.modalities if modalities is None else modalities
        x = torch.cat([tokens[m] + self.embed[m] for m in modalities], dim=1)
        return x, torch.cat([masks[m] for m in modalities], dim=1)

    def spans(self, tokens: dict[str, Tensor], modalities: Optional[Sequence[str]] = None) -> dict[str, slice]:
        """Where each modality's tokens sit in the sequence :meth:`forward` builds."""
        modalities = self.modalities if modalities is None else modalities
        spans, start = {}, 0
        for m in modalities:
            spans[m] = slice(start, start + tokens[m].shape[1])
            start = spans[m].stop
        return spans


class TokenFusion(nn.Module):
    """Base of the token-level fusions: ``forward(tokens, masks) -> [B, out_dim]`` runs the subclass's
    :meth:`fuse`; :meth:`attention_maps` reads the maps of that forward from the recorded weights.

    The shared options (``num_heads``, ``mlp_ratio``, residual ``dropout``, ``attn_dropout``, ``fused_attn``,
    ``attn_score``, ``attn_gate``, ``norm_layer``, ``act_layer``) reach every layer made by :meth:`block`,
    :meth:`cross_block` and :meth:`attention_pool`.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        dim: int,
        num_heads: int = 4,
        **layer_options,
    ) -> None:
        super().__init__()
        if not modalities:
            raise ValueError("a fusion needs at least one modality")
        self.modalities = list(modalities)
        self.dim = dim
        self.num_heads = num_heads
        self.norm_layer = layer_options.get("norm_layer", nn.LayerNorm)
        self._layer_kwargs = block_options(**layer_options)

    def block(self) -> Block:
        return Block(self.dim, self.num_heads, **self._layer_kwargs)

    def cross_block(self) -> CrossBlock:
        return CrossBlock(self.dim, self.num_heads, **self._layer_kwargs)

    def attention_pool(self) -> AttentionPool:
        return AttentionPool(self.dim, self.num_heads, **self._layer_kwargs)

    def fuse(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        """tokens {m: [B, N_m, D]}, masks {m: [B, N_m]} (True = valid, all False = modality absent)
        -> [B, out_dim]."""
        return self.fuse(tokens, masks)

    def attention_maps(self, records: Records, layer: str = "last") -> AttentionMaps:
        """The maps of the last forward, from ``records`` (attention weights per call under each attention
        layer's name relative to this fusion, see fusion.models.attention_maps); the base reads each
        modality's pooling weights (``pool.<m>``), subclasses add what their layers show."""
        return AttentionMaps(tokens=pooled_tokens(records, self.modalities), source=POOLING)
