"""Training-split augmentation on collated batches of shard tensors: nothing re-decodes a raw file.

Every transform draws per sample from torch's global generator (seeded by ``seed``, so a run is
reproducible) and leaves absent samples and padding as they are:

- image (uint8 [B, C, H, W]): a small random affine map (rotation, scale, translation; the border pixels
  extend outward), a contrast change around each image's mean and, optionally, inverted intensities (light
  ink on dark paper: polarity should not decide the class);
- audio (standardised log-mel [B, n_mels, T] with frame mask [B, T]): optionally, broadband noise added in the
  power domain at a random SNR and spectral tilt; a time shift with its mask, a gain in dB, and SpecAugment's
  frequency and time masks (Park et al., 2019, "SpecAugment"), filled with 0, the training mean;
- text (token ids [B, L] with mask): token dropout (masked out, at least one token kept) and swaps of
  neighbouring tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from fusion.data.manifest import FEATURES

__all__ = ["ImageAugment", "AudioAugment", "TextAugment", "BatchAugment", "build_augment"]

UINT8_MAX = 255.0
DB_TO_LOG = math.log(10.0) / 10.0  # a power gain of g dB adds g * ln(10) / 10 to a natural-log spectrogram


def _uniform(n: int, low: float, high: float, like: Tensor) -> Tensor:
    return torch.rand(n, device=like.device) * (high - low) + low


@dataclass
class ImageAugment:
    """Random affine (``degrees``, ``scale`` range, ``translate`` as a fraction of the side) and contrast
    factor in [1 - contrast, 1 + contrast], each applied to a sample with probability ``p``; independently,
    a present image is inverted (255 - x) with probability ``invert``."""

    p: float = 0.5
    degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.1
    contrast: float = 0.3
    invert: float = 0.0

    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        image, present = inputs["image"], inputs["present"]
        n = image.shape[0]
        chosen = (torch.rand(n, device=image.device) < self.p) & present
        if self.invert > 0:
            flipped = (torch.rand(n, device=image.device) < self.invert) & present
            image = torch.where(flipped.view(n, 1, 1, 1), int(UINT8_MAX) - image, image)  # stays uint8
            inputs = {**inputs, "image": image}
        if not chosen.any():
            return inputs
        # Every sample draws its parameters (the random stream does not depend on which are chosen); only the
        # chosen ones are transformed: each image's result depends on its own pixels and draws alone.
        angle = _uniform(n, -self.degrees, self.degrees, image) * (math.pi / 180.0)
        zoom = _uniform(n, self.scale[0], self.scale[1], image)
        shift = _uniform(2 * n, -self.translate, self.translate, image).view(n, 2) * 2.0  # grid units: [-1, 1]
        factor = _uniform(n, 1.0 - self.contrast, 1.0 + self.contrast, image).view(n, 1, 1, 1)
        rows = chosen.nonzero().squeeze(1)
        angle, zoom, shift, factor = angle[rows], zoom[rows], shift[rows], factor[rows]
        x = image.index_select(0, rows).float()
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        mean = moved.mean(dim=(1, 2, 3), keepdim=True)
        moved = ((moved - mean) * factor + mean).round().clamp(0.0, UINT8_MAX).to(image.dtype)
        return {**inputs, "image": image.index_copy(0, rows, moved)}


@dataclass
class AudioAugment:
    """Time shift of up to ``shift`` x the frames (either way), gain of up to ``gain_db`` dB (either way; the
    log-mel is standardised as (log power - ``log_mel_mean``) / ``log_mel_std``), ``freq_masks`` masks of up to
    ``freq_width`` mel bins and ``time_masks`` of up to ``time_width`` frames; each sample is augmented with
    probability ``p``. Before that, independently, a present clip gets noise with probability ``noise``
    (:meth:`add_noise`)."""

    p: float = 0.5
    shift: float = 0.1
    gain_db: float = 6.0
    freq_masks: int = 2
    freq_width: int = 8
    time_masks: int = 2
    time_width: int = 10
    noise: float = 0.0
    noise_snr_db: tuple[float, float] = (0.0, 20.0)
    noise_tilt_db: float = 10.0
    noise_grain: float = 0.5
    log_mel_mean: float = 0.0
    log_mel_std: float = 1.0

    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.noise > 0:
            inputs = self.add_noise(inputs)
        mel, mask, present = inputs["mel"], inputs["mask"], inputs["present"]
        n, bins, frames = mel.shape
        chosen = (torch.rand(n, device=mel.device) < self.p) & present
        if not chosen.any():
            return inputs
        # Every sample draws its parameters (the random stream does not depend on which are chosen); only the
        # chosen ones are transformed.
        k = torch.round(_uniform(n, -self.shift, self.shift, mel) * frames).long()
        gain = _uniform(n, -self.gain_db, self.gain_db, mel) * (DB_TO_LOG / self.log_mel_std)
        freq_keep = self._stripes(n, bins, self.freq_masks, self.freq_width, mel)
        time_keep = self._stripes(n, frames, self.time_masks, self.time_width, mel)
        rows = chosen.nonzero().squeeze(1)
        k, gain, freq_keep, time_keep = k[rows], gain[rows], freq_keep[rows], time_keep[rows]
        m = rows.numel()
        # Shift: frame t of the output is frame t - k of the input (zeros = the mean where nothing comes).
        source = torch.arange(frames, device=mel.device)[None, :] - k[:, None]
        inside = (source >= 0) & (source < frames)
        source = source.clamp(0, frames - 1)
        moved_mask = mask.index_select(0, rows).gather(1, source) & inside
        moved = mel.index_select(0, rows).gather(2, source[:, None, :].expand(m, bins, frames))
        moved = moved * moved_mask[:, None, :]
        moved = (moved + gain.view(m, 1, 1)) * moved_mask[:, None, :]
        moved = moved * freq_keep[:, :, None]
        moved = moved * time_keep[:, None, :]
        return {
            **inputs,
            "mel": mel.index_copy(0, rows, moved.to(mel.dtype)),
            "mask": mask.index_copy(0, rows, moved_mask),
        }

    def add_noise(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each present clip, with probability ``noise``, gets stationary broadband noise added to its mel power
        over its valid frames: a level ``noise_snr_db`` (a range) below the clip's mean power, a spectrum tilted by
        up to ``noise_tilt_db`` dB from the lowest mel bin to the highest, either way (white to pink or brown), and
        log-normal scatter of ``noise_grain`` (natural-log std) from cell to cell, as a noise periodogram has.
        For recordings noisier at test time than in training: it buys robustness to strong noise for a point or
        two of clean accuracy (docs/results.md), so it is off by default."""
        mel, mask, present = inputs["mel"], inputs["mask"], inputs["present"]
        n, bins, frames = mel.shape
        noisy = (torch.rand(n, device=mel.device) < self.noise) & present
        snr_db = _uniform(n, self.noise_snr_db[0], self.noise_snr_db[1], mel)
        tilt_db = _uniform(n, -self.noise_tilt_db, self.noise_tilt_db, mel)
        if not noisy.any():
            return inputs
        rows = noisy.nonzero().squeeze(1)
        m = rows.numel()
        valid = mask.index_select(0, rows)[:, None, :]
        clip = mel.index_select(0, rows).float()
        power = torch.exp(clip * self.log_mel_std + self.log_mel_mean) * valid
        frames_valid = valid.sum(dim=(1, 2)).clamp_min(1)
        level = power.sum(dim=(1, 2)) / (frames_valid * bins) * torch.pow(10.0, -snr_db[rows] / 10.0)
        position = torch.linspace(-0.5, 0.5, bins, device=mel.device)
        spectrum = torch.pow(10.0, tilt_db[rows, None] * position[None, :] / 10.0)
        spectrum = spectrum / spectrum.mean(dim=1, keepdim=True)
        grain = torch.exp(torch.randn(m, bins, frames, device=mel.device) * self.noise_grain - self.noise_grain**2 / 2)
        noise = level[:, None, None] * spectrum[:, :, None] * grain
        noised = (torch.log(power + noise) - self.log_mel_mean) / self.log_mel_std
        noised = torch.where(valid, noised, clip).to(mel.dtype)
        return {**inputs, "mel": mel.index_copy(0, rows, noised)}

    @staticmethod
    def _stripes(n: int, size: int, count: int, width: int, like: Tensor) -> Tensor:
        """[n, size] of 1 with ``count`` random stripes of 0, each up to ``width`` wide, per row."""
        keep = torch.ones(n, size, device=like.device, dtype=like.dtype)
        positions = torch.arange(size, device=like.device)[None, :]
        for _ in range(count):
            w = torch.randint(0, width + 1, (n, 1), device=like.device)
            start = (torch.rand(n, 1, device=like.device) * (size - w + 1)).long()
            keep = keep * ~((positions >= start) & (positions < start + w))
        return keep


@dataclass
class TextAugment:
    """Each valid token masked out with probability ``token_dropout`` (every text keeps one), and each
    neighbouring pair of valid tokens swapped with probability ``swap``."""

    token_dropout: float = 0.1
    swap: float = 0.05

    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        tokens, mask = inputs["tokens"], inputs["mask"]
        if tokens.shape[1] == 0:
            return inputs
        if self.swap > 0 and tokens.shape[1] > 1:
            tokens = tokens.clone()
            for offset in (0, 1):  # even then odd pairs: no token moves twice in one pass
                left = torch.arange(offset, tokens.shape[1] - 1, 2, device=tokens.device)
                go = torch.rand(tokens.shape[0], left.numel(), device=tokens.device) < self.swap
                go &= mask[:, left] & mask[:, left + 1]
                a, b = tokens[:, left], tokens[:, left + 1]
                tokens[:, left], tokens[:, left + 1] = torch.where(go, b, a), torch.where(go, a, b)
        dropped = (torch.rand(mask.shape, device=mask.device) < self.token_dropout) & mask
        kept = mask & ~dropped
        # A text that would lose every token keeps its first one.
        emptied = mask.any(dim=1) & ~kept.any(dim=1)
        first = F.one_hot(mask.long().argmax(dim=1), mask.shape[1]).bool()
        kept |= first & emptied[:, None]
        return {**inputs, "tokens": tokens, "mask": kept}


@dataclass
class BatchAugment:
    """The per-modality augmentations of a training batch (a modality without one passes unchanged)."""

    modalities: dict[str, Any] = field(default_factory=dict)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = dict(batch)
        for modality, augment in self.modalities.items():
            if modality in batch:
                out[modality] = augment(batch[modality])
        return out


AUGMENTS = {"image": ImageAugment, "audio": AudioAugment, "text": TextAugment}


def build_augment(cfg: Mapping[str, Any] | None, metas: Mapping[str, Mapping[str, Any]]) -> BatchAugment | None:
    """``augment`` config (conf/augment/) -> the augmentation of the modalities in ``metas``; None when
    switched off. A modality's block set to null is left unaugmented, and so is one given as precomputed
    features (its arrays have no pixels or frames to transform)."""
    if not cfg or not cfg.get("enabled", False):
        return None
    chosen = {}
    for modality in metas:
        options = cfg.get(modality)
        if options is None or metas[modality].get("kind") == FEATURES:
            continue
        options = dict(options)
        if modality == "audio":
            options["log_mel_mean"] = float(metas[modality].get("log_mel_mean", 0.0))
            options["log_mel_std"] = float(metas[modality].get("log_mel_std", 1.0))
        for pair in ("scale", "noise_snr_db"):
            if pair in options:
                options[pair] = tuple(options[pair])
        chosen[modality] = AUGMENTS[modality](**options)
    return BatchAugment(chosen)
