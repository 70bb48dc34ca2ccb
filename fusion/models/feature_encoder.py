"""Encoder of precomputed features: `[B, T, F]` arrays (COVAREP, FACET, GloVe, CLIP embeddings, ...) of any modality
projected to the model's token width, then the shared trunk (learned positions, masked self-attention), so every
fusion takes them like any other modality's tokens. A `[F]` vector arrives as one step. The projection is linear:
the preprocessing stage has already standardised each feature (fusion/preprocess/features.py)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from torch import Tensor, nn

from fusion.models.encoders import TokenEncoder

SHARED_KEYS = ("dim", "num_heads", "mlp_ratio", "dropout")  # model-wide knobs a modality's section may override


class FeatureEncoder(TokenEncoder):
    """Inputs ``{"features": [B, T, F], "mask": [B, T], "present": [B]}`` -> ``(tokens [B, T, D], mask [B, T])``."""

    def __init__(
        self,
        feature_dim: int,
        max_steps: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        freeze: bool = False,
        lora: Optional[Mapping[str, Any]] = None,
        config_key: str = "model",
        **trunk_kwargs,
    ) -> None:
        super().__init__(dim, depth, num_heads, max_steps, mlp_ratio=mlp_ratio, dropout=dropout, **trunk_kwargs)
        self.proj = nn.Linear(feature_dim, dim)
        self.adapt(freeze, lora, config_key)

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        mask = inputs["mask"] & inputs["present"][:, None]
        return self.encode(self.proj(inputs["features"]), mask), mask

    @classmethod
    def from_config(
        cls, modality: str, common: Mapping[str, Any], cfg: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> "FeatureEncoder":
        """From the shared model kwargs, the modality's section (only `depth`, `freeze`, `lora` apply: the other keys
        configure its raw-input encoder) and the data's meta (feature size, longest sequence)."""
        shared = {**common, **{k: cfg[k] for k in SHARED_KEYS if k in cfg}}  # model.<modality>.dim etc. win
        return cls(
            int(meta["feature_dim"]),
            int(meta["max_steps"]),
            depth=int(cfg.get("depth", 1)),
            freeze=bool(cfg.get("freeze", False)),
            lora=cfg.get("lora"),
            config_key=f"model.{modality}",
            **shared,
        )
