"""The benchmark knobs: benchmarks/config.yaml, its `quick:` block for smoke runs, and key=value overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

CONFIG_PATH = Path(__file__).with_name("config.yaml")
QUICK_KEY = "quick"


def load_settings(quick: bool = False, overrides: Sequence[str] = (), path: Path = CONFIG_PATH) -> DictConfig:
    """config.yaml without its quick block, the quick block merged over it with `quick`, then the overrides."""
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise SystemExit(f"error: overrides must look like key=value (e.g. training.epochs=3), got: {' '.join(bad)}")
    raw = OmegaConf.load(path)
    quick_block = raw.pop(QUICK_KEY, OmegaConf.create({}))
    settings = OmegaConf.merge(raw, quick_block) if quick else raw
    settings = OmegaConf.merge(settings, OmegaConf.from_dotlist(list(overrides)))
    OmegaConf.resolve(settings)
    return settings
