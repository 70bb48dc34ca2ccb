"""Shared parts of the token-level attention fusions (early, co_attention, bottleneck, perceiver).

:class:`TokenFusion` holds what they all take (modalities, width, the shared attention-layer options),
builds their Block / CrossBlock / AttentionPool layers and records attention weights for plots.
:class:`ModalityEmbedding` concatenates modality token sequences and masks, adding a learned modality-type
embedding per modality (as BERT's segment embeddings, Devlin et al., 2019, and VisualBERT / UNITER use to
tell the streams of a single joint sequence apart).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from fusion.models.attention import AttentionPool, Block, CrossBlock, block_options

__all__ = ["TokenFusion", "ModalityEmbedding", "attention_weights"]


@torch.no_grad()
def attention_weights(
    layer: Block | CrossBlock | AttentionPool,
    x: Tensor,
    mask: Optional[Tensor] = None,
    context: Optional[Tensor] = None,
) -> Tensor:
    """The attention weights [B, H, N_query, N_key] that ``layer`` uses on its input, detached.

    ``layer(x, mask)`` for a Block or AttentionPool, ``layer(x, context, mask)`` for a CrossBlock (``mask``
    then masks the context). A separate non-fused pass, so only taken while recording; rows of a query
    without any valid key are all zero."""
    if isinstance(layer, AttentionPool):
        query = layer.latent.expand(x.shape[0], -1, -1)
        return layer.attn(query, layer.norm1(x), key_mask=mask, return_weights=True)[1]
    if isinstance(layer, CrossBlock):
        return layer.attn(layer.norm1(x), layer.norm_context(context), key_mask=mask, return_weights=True)[1]
    return layer.attn(layer.norm1(x), key_mask=mask, return_weights=True)[1]


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
    """Base of the token-level fusions: ``forward(tokens, masks) -> [B, out_dim]`` resets the attention
    record, runs the subclass's :meth:`fuse` and publishes the record.

    The shared options (``num_heads``, ``mlp_ratio``, residual ``dropout``, ``attn_dropout``, ``fused_attn``,
    ``attn_score``, ``attn_gate``, ``norm_layer``, ``act_layer``) reach every layer made by :meth:`block`,
    :meth:`cross_block` and :meth:`attention_pool`. With ``record_attention = True`` each forward leaves
    ``last_attention``: ``{key: [n, B, H, N_query, N_key]}``, detached, one entry of the first axis per
    layer that wrote under that key (in order); the subclasses document their keys.
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
        self.record_attention = False
        self.last_attention: dict[str, Tensor] = {}
        self._recorded: dict[str, list[Tensor]] = {}

    def block(self) -> Block:
        return Block(self.dim, self.num_heads, **self._layer_kwargs)

    def cross_block(self) -> CrossBlock:
        return CrossBlock(self.dim, self.num_heads, **self._layer_kwargs)

    def attention_pool(self) -> AttentionPool:
        return AttentionPool(self.dim, self.num_heads, **self._layer_kwargs)

    def record(
        self,
        key: str,
        layer: Block | CrossBlock | AttentionPool,
        x: Tensor,
        mask: Optional[Tensor] = None,
        context: Optional[Tensor] = None,
    ) -> None:
        """Append ``layer``'s weights on this input under ``key`` when ``record_attention`` is set."""
        if self.record_attention:
            self._recorded.setdefault(key, []).append(attention_weights(layer, x, mask, context))

    def fuse(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        """tokens {m: [B, N_m, D]}, masks {m: [B, N_m]} (True = valid, all False = modality absent)
        -> [B, out_dim]."""
        self._recorded = {}
        try:
            return self.fuse(tokens, masks)
        finally:
            self.last_attention = {k: torch.stack(v) for k, v in self._recorded.items()}
            self._recorded = {}
