"""Decision-level late fusion: one classifier per modality, logits averaged over the present modalities
(late fusion by averaging the unimodal predictions; Baltrusaitis et al., 2019, "Multimodal Machine
Learning: A Survey and Taxonomy", sec. 5; e.g. Snoek et al., 2005, "Early versus Late Fusion in
Semantic Video Analysis")."""

from __future__ import annotations

from torch import Tensor, nn

from fusion.models.attention import Mlp, make_dropout
from fusion.models.fusions.pooling import PooledFusion, stack_modalities
from fusion.models.fusions.registry import register_fusion

__all__ = ["LateAverageFusion"]


@register_fusion("late_avg")
class LateAverageFusion(PooledFusion):
    """Per-modality AttentionPool -> per-modality head (LayerNorm -> dropout -> Mlp dim -> ``hidden`` ->
    ``num_outputs``, the model's own head per modality) -> logits averaged over the modalities present in
    each sample; a sample with no modality gets zero logits. Outputs logits (``out_dim == num_outputs``),
    so the model adds no head. ``last_logits`` keeps the per-modality logits [B, M, C] (detached; absent
    entries zeroed) for per-modality analyses.
    """

    outputs_logits = True

    def __init__(
        self,
        modalities: list[str],
        dim: int,
        num_outputs: int,
        hidden: int = 128,
        dropout: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        **pool_kwargs,
    ) -> None:
        super().__init__(modalities, dim, dropout=dropout, norm_layer=norm_layer, act_layer=act_layer, **pool_kwargs)
        self.out_dim = num_outputs
        self.heads = nn.ModuleDict(
            {
                m: nn.Sequential(
                    norm_layer(dim), make_dropout(dropout), Mlp(dim, hidden, num_outputs, act_layer=act_layer)
                )
                for m in self.modalities
            }
        )
        self.last_logits: Tensor | None = None

    def fuse(self, pooled: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        logits = stack_modalities({m: self.heads[m](pooled[m]) for m in self.modalities}, self.modalities)
        weight = stack_modalities(present, self.modalities).to(logits.dtype)[..., None]  # [B, M, 1]
        logits = logits * weight
        self.last_logits = logits.detach()
        return logits.sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)
