"""Modality ablation: collate batches as if some modalities were missing for every sample.

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
        dropped[modality] = {key: torch.zeros_like(value) for key, value in batch[modality].items()}
    return dropped


class WithoutModalities:
    """collate_fn wrapper (picklable, for DataLoader workers) that drops `modalities` from each batch."""

    def __init__(self, collate: Callable[[list], dict[str, Any]], modalities: Sequence[str]):
        self.collate = collate
        self.modalities = list(modalities)

    def __call__(self, samples: list) -> dict[str, Any]:
        return drop_modalities(self.collate(samples), self.modalities)
