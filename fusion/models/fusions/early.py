"""Early (joint-sequence) fusion: one transformer over the concatenated tokens of all modalities, as the
single-stream models VisualBERT (Li et al., 2019, "VisualBERT: A Simple and Performant Baseline for Vision
and Language") and UNITER (Chen et al., 2020) do, with a learned modality-type embedding per modality."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from fusion.models.fusions.registry import register_fusion
from fusion.models.fusions.tokens import ModalityEmbedding, TokenFusion

__all__ = ["EarlyFusion"]


@register_fusion("early")
class EarlyFusion(TokenFusion):
    """Concatenate every modality's tokens (each plus its modality-type embedding) into one sequence, run
    ``depth`` self-attention Blocks over it with the concatenated mask, then one AttentionPool over all valid
    tokens: ``out_dim = dim``. No [CLS] token: the pool's learned query plays its part.

    Every token may attend to every valid token of every modality from the first layer on. Masked tokens
    (padding, absent modalities) are never keys, so they cannot influence the output; a sample without any
    valid token outputs zeros. The fusion adds no positional information, so permuting the tokens of a
    modality (together with its mask) leaves the output unchanged: position must already be in the tokens.

    ``record_attention`` keys, token axis in the order of ``modalities`` (``last_spans`` gives each
    modality's slice): ``"joint"`` [depth, B, H, N, N] and ``"pool"`` [1, B, H, 1, N].
    Shared layer options: see :class:`~fusion.models.fusions.tokens.TokenFusion`.
    """

    def __init__(self, modalities: Sequence[str], dim: int, depth: int = 1, **layer_options) -> None:
        super().__init__(modalities, dim, **layer_options)
        self.out_dim = dim
        self.embed = ModalityEmbedding(self.modalities, dim)
        self.blocks = nn.ModuleList(self.block() for _ in range(depth))
        self.pool = self.attention_pool()
        self.last_spans: dict[str, slice] = {}

    def fuse(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        x, mask = self.embed(tokens, masks)
        self.last_spans = self.embed.spans(tokens)
        for blk in self.blocks:
            self.record("joint", blk, x, mask)
            x = blk(x, mask)
        self.record("pool", self.pool, x, mask)
        return self.pool(x, mask)
