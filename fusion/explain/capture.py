"""Record the attention weights of every attention layer of a network during one forward pass."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import Tensor, nn

from fusion.models.attention import Attention

__all__ = ["captured_attention"]


@contextmanager
def captured_attention(net: nn.Module) -> Iterator[dict[str, list[Tensor]]]:
    """Within the block, every forward of one of ``net``'s :class:`~fusion.models.attention.Attention` layers
    appends its weights [B, H, N_query, N_key] (detached, float32, CPU) to ``records[<module name>]``, one
    entry per call in call order (a layer shared across repeats records each). The weights come from a
    second, non-fused pass of the layer on the same inputs, so the fused path's outputs stay as they are.
    Layers of third-party backbones (timm, Hugging Face) are not ours and are not recorded."""
    records: dict[str, list[Tensor]] = {}
    inner = [False]  # the weight pass of a hook calls the layer again: that call records nothing itself

    def hook_for(name: str):
        def hook(module: Attention, args: tuple, kwargs: dict, output) -> None:
            if inner[0]:
                return
            if kwargs.get("return_weights", False):
                weights = output[1]
            else:
                inner[0] = True
                try:
                    weights = module(*args, **{**kwargs, "return_weights": True})[1]
                finally:
                    inner[0] = False
            records.setdefault(name, []).append(weights.detach().float().cpu())

        return hook

    handles = [
        module.register_forward_hook(hook_for(name), with_kwargs=True)
        for name, module in net.named_modules()
        if isinstance(module, Attention)
    ]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()
