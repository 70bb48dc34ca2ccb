"""Fusion methods: ``forward(tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> [B, out_dim]``.

Importing this package registers every method in :data:`FUSIONS`.
"""

from fusion.models.fusions.registry import FUSIONS, build_fusion, register_fusion
from fusion.models.fusions.late import LateFusion
from fusion.models.fusions.cross_attention import CrossAttentionFusion

__all__ = ["FUSIONS", "build_fusion", "register_fusion", "LateFusion", "CrossAttentionFusion"]
