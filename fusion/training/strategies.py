"""Distributed strategies built from config: Lightning's FSDP with wrap policies named by class path."""

from __future__ import annotations

import importlib
from typing import Any, Iterable, Optional

from pytorch_lightning.strategies import FSDPStrategy


def _classes(paths: Iterable[str], key: str) -> set[type]:
    """The classes named by dotted paths (module.Class), or an error naming the config key and the bad path."""
    classes = set()
    for path in paths:
        module_name, _, name = str(path).rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError, ValueError):
            cls = None
        if not isinstance(cls, type):
            raise ValueError(
                f"trainer.strategy.{key}: {path!r} is not a class; give importable class paths such "
                f"as fusion.models.attention.Block"
            )
        classes.add(cls)
    return classes


def fsdp_strategy(
    wrap: Iterable[str] = (),
    activation_checkpointing: Iterable[str] = (),
    sharding_strategy: str = "FULL_SHARD",
    state_dict_type: str = "full",
    cpu_offload: bool = False,
    process_group_backend: Optional[str] = None,
) -> FSDPStrategy:
    """Lightning's FSDPStrategy sharding each module of the `wrap` classes (e.g. transformer blocks) as one
    FSDP unit and checkpointing the activations of the `activation_checkpointing` classes. A "full"
    state_dict_type saves ordinary single-file checkpoints, which evaluate, robustness and resume read."""
    wrap_classes = _classes(wrap, "wrap")
    checkpointed = _classes(activation_checkpointing, "activation_checkpointing")
    return FSDPStrategy(
        auto_wrap_policy=wrap_classes or None,
        activation_checkpointing_policy=checkpointed or None,
        sharding_strategy=sharding_strategy,
        state_dict_type=state_dict_type,
        cpu_offload=cpu_offload,
        process_group_backend=process_group_backend,
    )


def relaunches_script(trainer_cfg: Any) -> bool:
    """Whether Lightning starts the other ranks by running the command again (ddp / fsdp on several devices
    of this machine), which a Hydra -m sweep cannot survive: every rank would start the whole sweep."""
    strategy = trainer_cfg.get("strategy", "auto")
    name = strategy if isinstance(strategy, str) else str(strategy.get("_target_", ""))
    distributed = "ddp" in name.lower() or "fsdp" in name.lower()
    spawned = name in ("ddp_spawn", "ddp_fork", "ddp_notebook")
    devices = trainer_cfg.get("devices", 1)
    return distributed and not spawned and str(devices) not in ("1", "[0]")
