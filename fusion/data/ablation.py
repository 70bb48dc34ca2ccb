"""Modality ablation: batches as if some modalities were missing, for every sample or at random.

`WithoutModalities(collate, ["audio"])` wraps any collate_fn; its batches hold the audio entry
with `present` and every mask all False and every tensor zeroed, exactly what the collate makes
of a record whose audio is missing. The model then sees the same inputs as for real missing data.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch


def drop_modalities(batch: dict[str, Any], modalities: Sequence[str]) -> dict[str, Any]:
    """The batch with `modalities` marked absent for every sample (masks False, content zeroed)."""
    dropped = dict(batch)
    for modality in modalities:
        everyone = torch.ones(
            len(batch[modality]["present"]), dtype=torch.bool, device=batch[modality]["present"].device
        )
        dropped[modality] = drop_samples(batch[modality], everyone)
    return dropped


def drop_samples(inputs: dict[str, torch.Tensor], drop: torch.Tensor) -> dict[str, torch.Tensor]:
    """One modality's batch entry with the samples where `drop` is True marked absent (zeroed, masks False)."""

    def keep(value: torch.Tensor) -> torch.Tensor:
        kept = ~drop.view(-1, *([1] * (value.dim() - 1)))
        return value & kept if value.dtype == torch.bool else value * kept.to(value.dtype)

    return {key: keep(value) for key, value in inputs.items()}


def modality_dropout(
    batch: dict[str, Any], rates: dict[str, float], generator: torch.Generator | None = None
) -> dict[str, Any]:
    """Training augmentation: drop each present modality of each sample with its rate, never every modality
    of a sample (where all would go, the one with the highest random draw stays), so the model learns to
    work when a modality is missing."""
    modalities = [m for m in rates if m in batch]
    if not modalities or not any(rates[m] > 0 for m in modalities):
        return batch
    present = torch.stack([batch[m]["present"] for m in modalities], dim=1)  # [batch, modalities]
    draws = torch.rand(present.shape, generator=generator, device=present.device)
    rate = torch.tensor([float(rates[m]) for m in modalities], device=present.device)
    drop = present & (draws < rate)
    emptied = present.any(dim=1) & ~(present & ~drop).any(dim=1)
    rescue = torch.nn.functional.one_hot(draws.masked_fill(~present, -1.0).argmax(dim=1), len(modalities)).bool()
    drop &= ~(rescue & emptied[:, None])
    out = dict(batch)
    for i, modality in enumerate(modalities):
        out[modality] = drop_samples(batch[modality], drop[:, i])
    return out


class WithoutModalities:
    """collate_fn wrapper (picklable, for DataLoader workers) that drops `modalities` from each batch."""

    def __init__(self, collate: Callable[[list], dict[str, Any]], modalities: Sequence[str]):
        self.collate = collate
        self.modalities = list(modalities)

    def __call__(self, samples: list) -> dict[str, Any]:
        return drop_modalities(self.collate(samples), self.modalities)
