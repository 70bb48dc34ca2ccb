"""Modality balance: on-the-fly gradient modulation with generalisation enhancement (OGM-GE).

Peng et al., CVPR 2022, "Balanced Multimodal Learning via On-the-fly Gradient Modulation": when one
modality's unimodal score runs ahead of the others, the gradients of its encoder are scaled down by
``1 - tanh(alpha * ratio)`` so the weaker ones catch up; Gaussian noise with the gradient's own standard
deviation (GE) keeps the scaled-down SGD noise. The paper has two modalities (ratio = score_a / score_b);
with more, a modality's ratio is its score over the mean score of the others. The scores here are the
per-modality heads' mean confidence in the truth over the samples holding the modality.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch
from torch import Tensor, nn

__all__ = ["ogm_coefficients", "modulate_gradients"]


def ogm_coefficients(scores: Mapping[str, float], alpha: float) -> dict[str, float]:
    """{modality: score} -> {modality: gradient coefficient}: ``1 - tanh(alpha * ratio)`` where the ratio of
    the modality's score to the others' mean is above 1, else 1. One modality, or others scoring 0: all 1."""
    coefficients = {}
    for modality, score in scores.items():
        others = [s for m, s in scores.items() if m != modality]
        baseline = sum(others) / len(others) if others else 0.0
        ratio = score / baseline if baseline > 0 else 0.0
        coefficients[modality] = 1.0 - math.tanh(alpha * ratio) if ratio > 1.0 else 1.0
    return coefficients


@torch.no_grad()
def modulate_gradients(encoders: Mapping[str, nn.Module], coefficients: Mapping[str, float], noise: bool) -> None:
    """Scale each encoder's gradients by its coefficient; with ``noise`` (GE) add N(0, std(grad)) to each."""
    for modality, encoder in encoders.items():
        for grad in _grads(encoder.parameters()):
            grad.mul_(coefficients.get(modality, 1.0))
            if noise and grad.numel() > 1:
                grad.add_(torch.randn_like(grad) * grad.std())


def _grads(params: Iterable[nn.Parameter]) -> Iterable[Tensor]:
    return (p.grad for p in params if p.grad is not None)
