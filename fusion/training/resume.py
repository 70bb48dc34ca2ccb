"""Resuming an interrupted run: which checkpoint, the same MLflow run, the same config and RNG streams.

`ckpt_path` (config) is null (start fresh), `last` (the run folder's checkpoints/last.ckpt) or a path to
a .ckpt file or a run folder. The checkpoint carries a `ResumeState`: the MLflow run id, the resolved
config and the RNG states at the moment it was written, so the resumed run logs to the same MLflow run,
refuses a changed config and draws the same random numbers (data order, dropout) as an uninterrupted run.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from fusion.config import flatten
from fusion.training.checkpoints import load_checkpoint

RUN_INFO = "run.json"  # the run folder's record of its MLflow run and checkpoints (written by fusion.stages.train)
RUN_CONFIG = "config.yaml"  # the resolved config of a new run, in its folder (written by fusion.stages.train)

LAST = "last"
LAST_FILE = "last.ckpt"
# Config keys that may differ between the interrupted and the resumed run: where files go, how much is
# printed or loaded in parallel and whether the network is compiled, none of which changes what is computed.
RUN_ONLY_KEYS = (
    "ckpt_path",
    "paths",
    "trainer.default_root_dir",
    "data.num_workers",
    "data.persistent_workers",
    "data.pin_memory",
    "data.prefetch_factor",
    "data.shards_url",
    "data.cache_dir",
    "model.compile",
    "callbacks.progress_bar",
    "callbacks.throughput",
    "logger.run_name",
    "logger.retry",
    "hydra",
    "explain",
    "serving",
    "report",
    "compare",
)


class ResumeError(Exception):
    """The requested checkpoint cannot be resumed (missing, or trained with another config)."""


def _rng_states() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as plain types, loadable with weights_only=True."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumeState(pl.Callback):
    """Stores the MLflow run id, the resolved config and the RNG states in every checkpoint; restores the
    RNG states when training resumes from one."""

    def __init__(self, run_id: str, config: DictConfig):
        self.run_id = run_id
        self.config = OmegaConf.to_yaml(config, resolve=True)

    def state_dict(self) -> dict[str, Any]:
        return {"mlflow_run_id": self.run_id, "config": self.config, "rng": _rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _set_rng_states(state_dict["rng"])


def resolve_checkpoint(ckpt_path: str | None, checkpoint_dir: str | Path) -> Path | None:
    """The checkpoint file `ckpt_path` names: None, `last` (checkpoint_dir/last.ckpt), a file or a run folder."""
    if ckpt_path in (None, ""):
        return None
    path = Path(checkpoint_dir) / LAST_FILE if str(ckpt_path) == LAST else Path(str(ckpt_path))
    if path.is_dir():
        path = path / "checkpoints" / LAST_FILE if (path / "checkpoints").is_dir() else path / LAST_FILE
    if not path.is_file():
        raise ResumeError(
            f"ckpt_path={ckpt_path}: no checkpoint at {path}. Give a .ckpt file or a run folder "
            f"holding checkpoints/{LAST_FILE}, or leave ckpt_path=null to start a new run."
        )
    return path


def newest_run_folder(runs_root: Path, suffix: str, exclude: Path | None = None) -> Path | None:
    """The newest folder under runs_root named *<suffix> that holds checkpoints/last.ckpt (Hydra run folders
    start with their time stamp, so the name orders them)."""
    candidates = [
        p
        for p in sorted(runs_root.glob(f"*{suffix}"), reverse=True)
        if p != exclude and (p / "checkpoints" / LAST_FILE).is_file()
    ]
    return candidates[0] if candidates else None


def read_resume_state(checkpoint: Path) -> dict[str, Any]:
    """The ResumeState stored in a checkpoint of this project."""
    callbacks = load_checkpoint(checkpoint).get("callbacks", {})
    state = callbacks.get(ResumeState.__qualname__)
    if state is None:
        raise ResumeError(
            f"{checkpoint} has no resume state (written by another program?); it cannot be resumed. "
            f"Start a new run with ckpt_path=null."
        )
    return state


ABSENT = "(absent)"  # how config_differences shows a key one of the two configs does not have


def config_differences(saved_yaml: str, cfg: DictConfig, ignore: Iterable[str] = RUN_ONLY_KEYS) -> list[str]:
    """`key: old -> new` for every setting that differs between a checkpoint's config and cfg (ABSENT for a key
    only one of them has)."""
    old = flatten(yaml.safe_load(saved_yaml) or {})
    new = flatten(OmegaConf.to_container(cfg, resolve=True))
    ignored = tuple(ignore)

    def kept(key: str) -> bool:
        return not any(key == i or key.startswith(f"{i}.") for i in ignored)

    def shown(values: dict[str, Any], key: str) -> str:
        return repr(values[key]) if key in values else ABSENT

    keys = sorted(k for k in set(old) | set(new) if kept(k) and shown(old, k) != shown(new, k))
    return [f"{k}: {shown(old, k)} -> {shown(new, k)}" for k in keys]


def check_same_config(state: dict[str, Any], cfg: DictConfig, checkpoint: Path) -> None:
    """Refuse to resume with a config that changes what is computed. Settings the checkpoint's config lacks
    altogether come from a later version of the project: no override brings the old run back, so say so."""
    diff = config_differences(state["config"], cfg)
    if not diff:
        return
    listed = "\n  ".join(diff[:20]) + (f"\n  ... and {len(diff) - 20} more" if len(diff) > 20 else "")
    if all(d.split(": ", 1)[1].startswith(f"{ABSENT} -> ") for d in diff):
        raise ResumeError(
            f"{checkpoint} was written by an earlier version of this project: its config lacks settings this "
            f"version added, so this version cannot continue that run. Start a new run (ckpt_path=null), or resume "
            f"it with the commit that wrote it (the git_commit tag of its MLflow run). Added settings:\n  "
            f"{listed}"
        )
    raise ResumeError(
        f"{checkpoint} was trained with another config; resuming would not continue the same "
        f"run. Use the original overrides, or start a new run (ckpt_path=null). Differences:\n  "
        f"{listed}"
    )


def run_folder(ckpt_path: str | None, new_folder: Path, suffix: str) -> Path:
    """The folder a train.py (Hydra) run writes to: its new folder, or, when resuming, the interrupted run's
    folder, so checkpoints and run.json stay together. `last` picks the newest sibling run folder named
    *<suffix> (same modality and fusion) that holds a last checkpoint."""
    if ckpt_path in (None, ""):
        return new_folder
    if str(ckpt_path) == LAST:
        found = newest_run_folder(new_folder.parent, suffix, exclude=new_folder)
        if found is None:
            raise ResumeError(
                f"ckpt_path=last: no run folder *{suffix} with checkpoints/{LAST_FILE} under "
                f"{new_folder.parent}. Give the run folder or .ckpt file, or start a new run."
            )
        return found
    path = Path(str(ckpt_path))
    if path.is_file():
        return path.parent.parent if path.parent.name == "checkpoints" else new_folder
    return path if path.is_dir() else new_folder
