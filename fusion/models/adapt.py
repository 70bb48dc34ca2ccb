"""What of an encoder's backbone trains: LoRA adapters via peft (apply_lora), freezing what its output does not
use, and the import of the optional ``hf`` extra (peft, transformers); kept apart from the encoder architectures."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from fusion.pretrained import HF_EXTRA_HINT

__all__ = ["LORA_KEYS", "apply_lora", "import_optional"]

LORA_KEYS = ("r", "alpha", "dropout", "target_modules")


def import_optional(name: str, feature: str) -> ModuleType:
    """Import an optional dependency of the ``hf`` extra, or fail with the command that installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"{feature} needs the Python package {name!r}, which is not installed; {HF_EXTRA_HINT}"
        ) from exc


def apply_lora(module: nn.Module, lora: Mapping[str, Any], config_key: str) -> None:
    """Inject LoRA adapters (``peft.inject_adapter_in_model`` with a ``LoraConfig``) into the layers of ``module``
    named by ``lora["target_modules"]`` (suffixes of module names: HF BERT ``query``/``value``, timm ViT ``qkv``,
    our Attention ``q``/``kv``). Every other parameter of ``module`` is frozen; only ``lora_A``/``lora_B`` train."""
    lora = dict(lora)
    unknown = sorted(set(lora) - set(LORA_KEYS))
    if unknown:
        raise ValueError(f"{config_key}.lora: unknown keys {unknown}; expected {list(LORA_KEYS)}")
    targets = lora.get("target_modules")
    if not targets:
        raise ValueError(
            f"{config_key}.lora.target_modules is empty: name the layers to adapt, e.g. [query, value] "
            "(Hugging Face BERT), [qkv] (timm ViT) or [q, kv] (our attention)"
        )
    targets = [targets] if isinstance(targets, str) else list(targets)
    peft = import_optional("peft", f"{config_key}.lora")
    r = int(lora.get("r", 8))
    config = peft.LoraConfig(
        r=r,
        lora_alpha=lora.get("alpha") or 2 * r,
        lora_dropout=float(lora.get("dropout") or 0.0),
        target_modules=targets,
        bias="none",
    )
    try:
        peft.inject_adapter_in_model(config, module)
    except ValueError as exc:
        raise ValueError(
            f"{config_key}.lora.target_modules={targets} matches no layer of {type(module).__name__}: {exc}"
        ) from None
    for name, p in module.named_parameters():  # peft already does this; the rule, stated here
        p.requires_grad_("lora_" in name)


def _freeze_unused(module: nn.Module, output: Tensor) -> None:
    """Freeze the parameters of ``module`` that ``output`` does not depend on (kept later stages, an unused
    pooler), so they count as non-trainable and DDP sees no unused parameters."""
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(output.sum(), params, allow_unused=True)
    for p, g in zip(params, grads, strict=True):
        p.requires_grad_(g is not None)
