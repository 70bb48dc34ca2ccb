"""Pretrained weights for a timm ``features_only`` backbone from a local checkpoint file (key prefixes, shapes
adapted to the input); kept apart from the encoders, which only call load_backbone_checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import timm
from timm.models import adapt_input_conv
from timm.models._features import FeatureGetterNet
from torch import Tensor, nn

__all__ = ["load_backbone_checkpoint"]


def _adapt_shapes(target: nn.Module, state: dict[str, Tensor], own: dict[str, Tensor]) -> dict[str, Tensor]:
    """Fit checkpoint tensors to a backbone built for another input: the model family's timm
    ``checkpoint_filter_fn`` where it has one (ViT: position embeddings resampled to the image size, patch
    embeddings to the patch size), then input convolutions summed/repeated to ``in_chans`` (timm's
    ``adapt_input_conv``, e.g. RGB weights for 1-channel spectrograms)."""
    filter_fn = getattr(sys.modules.get(type(target).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(dict(state), target)
    state = {k: state[k] for k in own if k in state}
    for k, v in state.items():
        if (
            v.ndim == 4
            and v.shape != own[k].shape
            and v.shape[0] == own[k].shape[0]
            and v.shape[2:] == own[k].shape[2:]
        ):
            state[k] = adapt_input_conv(own[k].shape[1], v)
    return state


def load_backbone_checkpoint(backbone: nn.Module, path: str | Path, config_key: str = "model.image") -> None:
    """Load a local checkpoint (safetensors, or torch pickle read with ``weights_only=True``) into a
    timm ``features_only`` backbone. Accepts the backbone's own state dict, a full classifier checkpoint
    of the same architecture (extra head/stage keys are ignored) or either under a common key prefix; a
    checkpoint for another input size or channel count is adapted (:func:`_adapt_shapes`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{config_key.rsplit('.', 1)[-1]} backbone checkpoint not found: {str(path)!r} "
            f"(set by config key {config_key}.checkpoint_path)"
        )
    state = timm.models.load_state_dict(str(path), weights_only=True)
    # ViT-style feature models wrap the timm model (keys 'model.*'); checkpoints hold the model's own keys.
    target = backbone.model if isinstance(backbone, FeatureGetterNet) else backbone
    own = target.state_dict()
    # BatchNorm step counters are bookkeeping that some exported checkpoints omit.
    required = [k for k in own if not k.endswith("num_batches_tracked")]
    # Prefix under which the backbone's keys live in the file ('' for plain timm checkpoints).
    prefixes = sorted((k[: -len(required[0])] for k in state if k.endswith(required[0])), key=len)
    prefix = next((p for p in prefixes if all(p + k in state for k in required)), None)
    if prefix is None:
        missing = [k for k in required if k not in state][:5]
        raise RuntimeError(
            f"checkpoint {str(path)!r} does not match the {config_key} backbone ({config_key}.name); "
            f"missing keys e.g. {missing}"
        )
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    loaded = {k: state[k] for k in own if k in state}
    if any(v.shape != own[k].shape for k, v in loaded.items()):
        loaded = _adapt_shapes(target, state, own)
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in loaded.items() if v.shape != own[k].shape]
    if wrong:
        raise RuntimeError(
            f"checkpoint {str(path)!r} does not fit the {config_key} backbone ({config_key}.name); "
            f"shapes differ, e.g. {wrong[:3]}"
        )
    target.load_state_dict(loaded, strict=False)
