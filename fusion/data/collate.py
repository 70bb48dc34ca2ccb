"""Batch items whose modalities may be missing: pad sequences, zero-fill absent inputs, add masks."""

from __future__ import annotations

from typing import Any, Callable

import torch

from fusion.meta import FEATURES


def _pad_sequences(
    items: list[torch.Tensor | None], length_dim: int, empty: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length tensors along `length_dim` (zeros where None); mask True = real step.

    `empty` is a zero-length example giving the shape and dtype when no item is present.
    """
    real = [x for x in items if x is not None]
    template = real[0] if real else empty
    max_len = max([x.shape[length_dim] for x in real] + [1])
    shape = list(template.shape)
    shape[length_dim] = max_len
    out = torch.zeros(len(items), *shape, dtype=template.dtype)
    mask = torch.zeros(len(items), max_len, dtype=torch.bool)
    for i, x in enumerate(items):
        if x is not None:
            n = x.shape[length_dim]
            out[i].narrow(length_dim, 0, n).copy_(x)
            mask[i, :n] = True
    return out, mask


def collate_text(items: list[dict | None], meta: dict) -> dict[str, torch.Tensor]:
    tokens, mask = _pad_sequences(
        [None if x is None else x["tokens"].long() for x in items], 0, empty=torch.zeros(0, dtype=torch.long)
    )
    return {"tokens": tokens, "mask": mask}


def collate_image(items: list[dict | None], meta: dict) -> dict[str, torch.Tensor]:
    size, channels = int(meta["size"]), int(meta["channels"])
    images = torch.zeros(len(items), channels, size, size, dtype=torch.uint8)
    for i, x in enumerate(items):
        if x is not None:
            images[i] = x["image"]
    return {"image": images}


def collate_audio(items: list[dict | None], meta: dict) -> dict[str, torch.Tensor]:
    mel, mask = _pad_sequences(
        [None if x is None else x["mel"].float() for x in items], 1, empty=torch.zeros(int(meta["n_mels"]), 0)
    )
    return {"mel": mel, "mask": mask}


def collate_features(items: list[dict | None], meta: dict) -> dict[str, torch.Tensor]:
    """Precomputed feature arrays of any modality (meta kind `features`): [B, T, F] and the step mask."""
    features, mask = _pad_sequences(
        [None if x is None else x["features"].float() for x in items], 0, empty=torch.zeros(0, int(meta["feature_dim"]))
    )
    return {"features": features, "mask": mask}


COLLATERS: dict[str, Callable[[list[dict | None], dict], dict[str, torch.Tensor]]] = {
    "text": collate_text,
    "image": collate_image,
    "audio": collate_audio,
}


def collater(modality: str, meta: dict) -> Callable[[list[dict | None], dict], dict[str, torch.Tensor]]:
    return collate_features if meta.get("kind") == FEATURES else COLLATERS[modality]


class MultimodalCollate:
    """Callable collate_fn for DataLoader: {"id", "label", <modality>: {..., "present"}}.

    `label` stacks the items' encoded labels as `label_dtype`: class indices (long) for multiclass,
    multi-hot rows or numbers (float) for multilabel and regression.
    """

    def __init__(self, metas: dict[str, dict], label_dtype: torch.dtype = torch.long):
        self.metas = metas
        self.label_dtype = label_dtype

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {
            "id": [s["id"] for s in samples],
            "label": torch.tensor([s["label"] for s in samples], dtype=self.label_dtype),
        }
        for modality, meta in self.metas.items():
            items = [s[modality] for s in samples]
            batch[modality] = collater(modality, meta)(items, meta)
            batch[modality]["present"] = torch.tensor([x is not None for x in items], dtype=torch.bool)
        return batch
