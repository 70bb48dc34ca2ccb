"""Checkpoint files that survive a kill and load without unpickling: atomic writes, weights_only reads.

Lightning's default writer moves a temporary file from the system temp folder into place, which is a
copy (not a rename) when that folder is on another file system, so a kill mid-copy leaves a truncated
`last.ckpt`. Here the bytes go to a sibling file that is fsync'ed and renamed over the target.
Every read uses `torch.load(weights_only=True)`: tensors, numbers, strings and containers only, so a
checkpoint from elsewhere cannot run code when it is opened.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO


class CheckpointError(Exception):
    """A checkpoint that cannot be used: missing, truncated, or holding objects that would need unpickling."""


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint's contents, loaded with weights_only=True; clear errors for missing or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds objects that would have to be unpickled to load it (refused: unpickling can run "
            f"arbitrary code). Only load checkpoints written by this project, or re-save the state_dict. "
            f"Details: {str(exc).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {exc}") from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO: write next to the target then rename (atomic on one file system);
    read with weights_only=True."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            with open(partial, "wb") as sink:
                torch.save(checkpoint, sink)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    def load_checkpoint(
        self, path: str | Path, map_location: Callable | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if weights_only is False:
            raise CheckpointError("this project never loads checkpoints with weights_only=False")
        return load_checkpoint(path, map_location=map_location or "cpu")


def network_state(path: str | Path, prefix: str = "net.") -> dict[str, Any]:
    """The network's weights from a Lightning checkpoint of a FusionModule: its ``net.*`` entries, unprefixed
    (checkpoints hold full state dicts under every strategy, FSDP included)."""
    state = load_checkpoint(path)["state_dict"]
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def load_weights(module: torch.nn.Module, checkpoint: Path) -> None:
    """Load a Lightning checkpoint's weights without unpickling arbitrary objects."""
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} not found; run the train stage first (`dvc repro train`).")
    module.load_state_dict(load_checkpoint(checkpoint)["state_dict"])
