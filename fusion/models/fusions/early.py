"""Early (joint-sequence) fusion: one transformer over the concatenated tokens of all modalities, as the
single-stream models VisualBERT (Li et al., 2019, "VisualBERT: A Simple and Performant Baseline for Vision
and Language") and UNITER (Chen et al., 2020) do, with a learned modality-type embedding per modality."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from fusion.models.attention_maps import AttentionMaps, Records, indexed, select_layer, split_spans
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

    The joint sequence holds the modalities in ``modalities`` order (``last_spans`` gives each one's slice);
    its maps split the pooling and the joint self-attention by modality (:meth:`attention_maps`).
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
            x = blk(x, mask)
        return self.pool(x, mask)

    def attention_maps(self, records: Records, layer: str = "last") -> AttentionMaps:
        """Token weights of the pooling over the joint sequence (their sum per modality is its mass), and
        the joint self-attention's blocks between different modalities."""
        spans = self.last_spans
        tokens = split_spans(records["pool.attn"][-1].mean(1)[:, 0], spans)
        maps = AttentionMaps(
            tokens=tokens,
            mass={m: w.sum(-1) for m, w in tokens.items()},
            source="the fusion's attention pooling over the joint sequence",
        )
        if "blocks.0.attn" in records:
            joint = select_layer(indexed(records, r"blocks\.(\d+)\.attn"), layer)
            for query, rows in spans.items():
                for key, cols in spans.items():
                    if query != key:
                        maps.cross[(query, key)] = joint[:, rows, cols]
        return maps
