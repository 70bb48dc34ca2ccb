"""Fusion methods: ``forward(tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> [B, out_dim]``.

Importing this package imports every module in it, so each ``@register_fusion`` lands in :data:`FUSIONS`:
a new method is one new module, nothing to add here. A fusion whose ``outputs_logits`` is True returns
class scores (``out_dim == num_outputs``, passed by the builder) and the model adds no head of its own.
"""

import importlib
import pkgutil

from fusion.models.fusions.registry import FUSIONS, build_fusion, register_fusion

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

from fusion.models.fusions.cross_attention import CrossAttentionFusion  # noqa: E402
from fusion.models.fusions.late import LateFusion  # noqa: E402

__all__ = ["FUSIONS", "build_fusion", "register_fusion", "LateFusion", "CrossAttentionFusion"]
