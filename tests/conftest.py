"""Shared fixtures: a tiny generated dataset, its preprocessed shards, and a tiny training config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

from fusion.config import compose
from fusion.data.sample import generate_sample
from fusion.preprocess.common import run_preprocess

ROOT = Path(__file__).resolve().parents[1]
TINY_RECORDS = 120

# Settings that keep a real training run to seconds on a 2-core CPU.
TINY_TRAINING = [
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
    "data.batch_size=16",
    "data.num_workers=0",
    "model.dim=32",
    "model.head_hidden=32",
    "preprocess.num_workers=1",
]


def tiny_config(tmp: Path, processed_dir: Path | None = None, overrides: list[str] = ()) -> DictConfig:
    """The real composed config, shrunk and pointed at `tmp` for every output."""
    cfg = compose([
        *TINY_TRAINING,
        f"sample.num_records={TINY_RECORDS}",
        "sample.progress=false",
        f"paths.output_dir={tmp / 'train'}",
        f"paths.evaluate_dir={tmp / 'evaluate'}",
        f"logger.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        f"logger.artifact_location={tmp / 'mlartifacts'}",
        *([f"data.processed_dir={processed_dir}"] if processed_dir else []),
        *overrides,
    ])
    return cfg


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """A small generated dataset in the data contract's form."""
    root = tmp_path_factory.mktemp("data") / "sample"
    cfg = compose([f"sample.num_records={TINY_RECORDS}", "sample.progress=false"])
    generate_sample(cfg.sample, root)
    return root


@pytest.fixture(scope="session")
def processed_dir(sample_root, tmp_path_factory) -> Path:
    """The tiny dataset preprocessed by the real stages (all three modalities)."""
    out = tmp_path_factory.mktemp("processed")
    cfg = compose([f"data.root={sample_root}", f"data.processed_dir={out}", "preprocess.num_workers=1"])
    for modality in ("text", "image", "audio"):
        run_preprocess(modality, cfg)
    return out


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for CLI tests: this interpreter's bin first on PATH (DVC stages call `python`)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env
