"""What one modality of one sample looks like to a person: token labels and the attention laid out over the
input (text pieces, the image's patch grid, the spectrogram's time axis), valid tokens only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor, nn


@dataclass
class TokenView:
    """``labels``: one per valid token (axis labels of cross-modal maps); ``weights``: the attention over the
    valid tokens, 1-D, or a [rows, cols] grid for an image or a 2-D audio feature map; ``valid``: the token
    positions kept (indices into the encoder's token axis)."""

    modality: str
    labels: list[str]
    weights: np.ndarray
    valid: np.ndarray
    frames_per_token: float | None = None


def text_view(weights: Tensor, mask: Tensor, ids: Tensor, tokenizer: Any) -> TokenView:
    valid = mask.nonzero().flatten().numpy()
    labels = [tokenizer.id_to_token(int(i)) or f"<{int(i)}>" for i in ids[valid]]
    return TokenView("text", labels, weights[valid].numpy(), valid)


def image_view(weights: Tensor, encoder: nn.Module) -> TokenView:
    rows, cols = encoder.grid
    labels = [f"r{r}c{c}" for r in range(rows) for c in range(cols)]
    return TokenView("image", labels, weights.numpy().reshape(rows, cols), np.arange(rows * cols))


def audio_view(weights: Tensor, mask: Tensor, encoder: nn.Module, seconds_per_frame: float) -> TokenView:
    """Patch tokens over time (AudioEncoder: ``patch_frames`` frames each) or a timm feature grid over
    (mel bins, time) (TimmAudioEncoder: its columns split the padded frames evenly)."""
    valid = mask.nonzero().flatten().numpy()
    if hasattr(encoder, "patch_frames"):
        frames = float(encoder.patch_frames)
        labels = [f"{i * frames * seconds_per_frame:.2f}s" for i in valid]
        return TokenView("audio", labels, weights[valid].numpy(), valid, frames)
    rows, cols = encoder.grid
    frames = encoder.input_size[1] / cols
    used_cols = int(valid.max()) % cols + 1 if valid.size else 0
    grid = weights.numpy().reshape(rows, cols)[:, :used_cols]
    labels = [f"f{r} {c * frames * seconds_per_frame:.2f}s" for r in range(rows) for c in range(cols)]
    return TokenView("audio", [labels[i] for i in valid], grid, valid, frames)


def step_view(modality: str, weights: Tensor, mask: Tensor) -> TokenView:
    """A modality given as precomputed features: one token per step of its [T, F] array, padding left out."""
    valid = mask.nonzero().flatten().numpy()
    return TokenView(modality, [f"step {int(i)}" for i in valid], weights[valid].numpy(), valid)


def special_view(name: str, count: int) -> TokenView:
    """The queries of a map that are not a modality's tokens (perceiver latents, bottleneck tokens)."""
    singular = name[:-1] if name.endswith("s") else name
    return TokenView(name, [f"{singular} {i}" for i in range(count)], np.zeros(count), np.arange(count))
