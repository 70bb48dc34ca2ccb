"""Tensor Fusion Network (Zadeh et al., 2017, "Tensor Fusion Network for Multimodal Sentiment Analysis",
EMNLP): the outer product of the modality vectors, each extended with a constant 1."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusion.models.fusions.pooling import PooledFusion
from fusion.models.fusions.registry import register_fusion

__all__ = ["TensorFusion", "append_one", "outer_product"]


def append_one(v: Tensor, present: Tensor) -> Tensor:
    """[B, d] vectors and [B] presence -> [B, d + 1]: [v; 1], with v zeroed where the modality is absent.

    The constant 1 (TFN's z^m = [z; 1], also LMF's input) keeps every lower-order interaction in the
    product; an absent modality's [0; 1] therefore leaves exactly the interactions among the present ones."""
    v = v * present[:, None].to(v.dtype)
    return torch.cat([v, v.new_ones(v.shape[0], 1)], dim=-1)


def outer_product(vectors: list[Tensor]) -> Tensor:
    """[B, d_1], ..., [B, d_M] -> the flattened outer product [B, d_1 * ... * d_M] (row-major: the last
    vector's index varies fastest, as in ``einsum('bi,bj,bk->bijk').flatten(1)``)."""
    out = vectors[0]
    for v in vectors[1:]:
        out = (out[:, :, None] * v[:, None, :]).flatten(1)
    return out


@register_fusion("tensor")
class TensorFusion(PooledFusion):
    """Per-modality AttentionPool -> Linear to ``tensor_dim`` -> [z_m; 1] -> outer product over the
    modalities, flattened: ``out_dim = (tensor_dim + 1) ** M`` (4913 for three modalities at 16).

    The small projection keeps the tensor small (TFN itself fuses small unimodal embeddings). An absent
    modality is the zero vector with the 1 appended (its projection, bias included, is zeroed), so the
    tensor holds only the unimodal and cross-modal terms of the present modalities and the constant 1;
    a sample with no modality gives the tensor with a single 1 at index 0. The model's head is TFN's
    inference subnetwork.
    """

    def __init__(self, modalities: list[str], dim: int, tensor_dim: int = 16, **pool_kwargs) -> None:
        super().__init__(modalities, dim, **pool_kwargs)
        self.tensor_dim = tensor_dim
        self.proj = nn.ModuleDict({m: nn.Linear(dim, tensor_dim) for m in self.modalities})
        self.out_dim = (tensor_dim + 1) ** len(self.modalities)

    def fuse(self, pooled: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        return outer_product([append_one(self.proj[m](pooled[m]), present[m]) for m in self.modalities])
