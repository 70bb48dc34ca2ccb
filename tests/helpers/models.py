"""Tiny models of every fusion, built from the real conf/ files, and random batches for them."""

from __future__ import annotations

import functools

import torch
from omegaconf import OmegaConf

from fusion.models.builder import build_model
from fusion.models.fusions import FUSIONS
from tests.helpers.batches import audio_batch, text_batch
from tests.helpers.config import ROOT

CONF = ROOT / "conf"
MODALITIES = ["text", "image", "audio"]
FUSION_NAMES = sorted(FUSIONS)
META = {
    "text": {"vocab_size": 30, "pad_id": 0, "max_len": 6},
    "image": {"size": 32, "channels": 3},
    "audio": {"n_mels": 8, "max_frames": 10},
}
TINY = {"dim": 16, "num_heads": 2, "head_hidden": 16}


def model_cfg():
    return OmegaConf.merge(OmegaConf.load(CONF / "model" / "default.yaml"), TINY)


def fusion_cfg(name):
    return OmegaConf.load(CONF / "fusion" / f"{name}.yaml")


@functools.lru_cache(maxsize=None)
def _cached_model(fusion, modalities):
    return build_model(model_cfg(), fusion_cfg(fusion), list(modalities), META, num_classes=3)


def make_model(fusion, modalities):
    """Tiny model, built once per (fusion, modalities) for speed; gradients cleared on every call."""
    model = _cached_model(fusion, tuple(modalities))
    model.zero_grad(set_to_none=True)
    return model.train()


def make_batch(modalities, present):
    """present: {modality: list[bool]} per sample; absent samples get zero tensors and all-False masks."""
    B = len(next(iter(present.values())))
    batch = {}
    for m in modalities:
        p = torch.tensor(present[m])
        if m == "text":
            batch[m] = text_batch(torch.randint(1, 7, (B,)) * p, 6, META["text"]["vocab_size"], p)
        elif m == "image":
            image = torch.randint(0, 256, (B, 3, 32, 32), dtype=torch.uint8) * p[:, None, None, None]
            batch[m] = {"image": image.to(torch.uint8), "present": p}
        else:
            batch[m] = audio_batch(torch.randint(3, 11, (B,)) * p, 8, 10, present=p)
    return batch


def sdpa_as_on_cuda(monkeypatch) -> list[int]:
    """SDPA as CUDA's kernels answer a zero-size batch: with no tensor at all (None in Python; H100, torch 2.11).
    Returns the batch sizes it was called with."""
    sdpa, calls = torch.nn.functional.scaled_dot_product_attention, []

    def cuda_like(q, *args, **kwargs):
        calls.append(q.shape[0])
        return None if q.numel() == 0 else sdpa(q, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", cuda_like)
    return calls
