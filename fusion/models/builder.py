"""Build a MultimodalClassifier from the ``model`` and ``fusion`` config groups plus data metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from torch import nn

from fusion.models.encoders import AudioEncoder, ImageEncoder, TextEncoder
from fusion.models.fusions import FUSIONS, build_fusion
from fusion.models.model import MultimodalClassifier

__all__ = ["ENCODER_BUILDERS", "build_encoder", "build_model"]


def _to_dict(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def _attention_kwargs(model_cfg: Mapping) -> dict[str, Any]:
    """The ``model.attention`` knobs every encoder and fusion takes: SDPA path, score function, output gate."""
    attention = model_cfg.get("attention") or {}
    return {
        "fused_attn": attention.get("fused", True),
        "attn_score": attention.get("score", "scaled_dot"),
        "attn_gate": attention.get("gate", False),
    }


def _text(common: dict, cfg: dict, meta: Mapping) -> nn.Module:
    max_len = cfg.pop("max_len", None) or meta["max_len"]
    if max_len < meta["max_len"]:
        raise ValueError(f"model.text.max_len={max_len} is shorter than the data's max_len={meta['max_len']}")
    return TextEncoder(vocab_size=meta["vocab_size"], max_len=max_len, pad_id=meta.get("pad_id", 0), **common, **cfg)


def _image(common: dict, cfg: dict, meta: Mapping) -> nn.Module:
    return ImageEncoder(image_size=meta["size"], in_chans=meta.get("channels", 3), **common, **cfg)


def _audio(common: dict, cfg: dict, meta: Mapping) -> nn.Module:
    return AudioEncoder(n_mels=meta["n_mels"], max_frames=meta["max_frames"], **common, **cfg)


# modality -> fn(common kwargs, model.<modality> kwargs, data_meta[modality]) -> encoder
ENCODER_BUILDERS: dict[str, Callable[[dict, dict, Mapping], nn.Module]] = {
    "text": _text,
    "image": _image,
    "audio": _audio,
}


def build_encoder(modality: str, model_cfg: Any, meta: Mapping) -> nn.Module:
    """Encoder for one modality; ``model.<modality>`` keys override the shared dim/heads/mlp/dropout."""
    if modality not in ENCODER_BUILDERS:
        raise ValueError(f"unknown modality {modality!r}; available: {sorted(ENCODER_BUILDERS)}")
    model_cfg = _to_dict(model_cfg)
    common = {k: model_cfg[k] for k in ("dim", "num_heads", "mlp_ratio", "dropout")}
    common.update(_attention_kwargs(model_cfg))
    cfg = _to_dict(model_cfg.get(modality))
    common = {k: v for k, v in common.items() if k not in cfg}
    return ENCODER_BUILDERS[modality](common, cfg, meta)


def build_model(
    model_cfg: Any,
    fusion_cfg: Any,
    modalities: list[str],
    data_meta: Mapping[str, Mapping],
    num_classes: int,
) -> MultimodalClassifier:
    """Encoders for ``modalities`` + the fusion named ``fusion_cfg.name`` (its other keys are its kwargs,
    defaulting num_heads/mlp_ratio/dropout to the model's) + the classification head."""
    modalities = list(modalities)
    if not modalities:
        raise ValueError("at least one modality is required")
    unknown = [m for m in modalities if m not in ENCODER_BUILDERS]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; available: {sorted(ENCODER_BUILDERS)}")
    fusion_kwargs = _to_dict(fusion_cfg)
    name = fusion_kwargs.pop("name", None)
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r} (fusion.name); available: {sorted(FUSIONS)}")
    model = _to_dict(model_cfg)
    missing_meta = [m for m in modalities if m not in data_meta]
    if missing_meta:
        raise ValueError(f"data_meta lacks entries for modalities {missing_meta}")

    encoders = nn.ModuleDict({m: build_encoder(m, model, data_meta[m]) for m in modalities})
    shared = {k: model[k] for k in ("num_heads", "mlp_ratio", "dropout")}
    shared.update(_attention_kwargs(model))
    fusion = build_fusion(name, modalities, model["dim"], num_outputs=num_classes, **{**shared, **fusion_kwargs})
    return MultimodalClassifier(
        encoders, fusion, num_classes=num_classes, head_hidden=model["head_hidden"], dropout=model["dropout"]
    )
