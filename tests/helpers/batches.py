"""Random model inputs in the collate's form: a length-prefix mask, token ids and log-mel frames that are
zero past each sample's length, so padding and missing samples look exactly as the real collate makes them."""

from __future__ import annotations

import torch


def length_mask(lengths: torch.Tensor | list[int], size: int) -> torch.Tensor:
    """[B, size] mask, True for the first lengths[b] positions of sample b."""
    return torch.arange(size)[None, :] < torch.as_tensor(lengths)[:, None]


def text_batch(lengths: torch.Tensor, max_len: int, vocab_size: int, present: torch.Tensor) -> dict:
    """Random token ids in [1, vocab_size) up to each length, 0 (padding) after it."""
    mask = length_mask(lengths, max_len)
    tokens = torch.randint(1, vocab_size, (len(lengths), max_len)) * mask
    return {"tokens": tokens, "mask": mask, "present": present}


def audio_batch(
    lengths: torch.Tensor | list[int],
    n_mels: int,
    frames: int,
    present: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> dict:
    """Random log-mel frames up to each length, zeros after it; `present` defaults to 'has a frame'."""
    mask = length_mask(lengths, frames)
    mel = torch.randn(len(mask), n_mels, frames, generator=generator)
    return {"mel": mel * mask[:, None, :], "mask": mask, "present": mask.any(dim=1) if present is None else present}
