"""Shared fixtures: a tiny generated dataset, its preprocessed shards, and a tiny training config."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

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
    "explain.samples=1",
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


def generate_and_preprocess(root: Path, processed: Path, overrides: list[str] = ()) -> DictConfig:
    """Generate the tiny sample at `root` and preprocess all three modalities into `processed`."""
    cfg = compose([f"sample.num_records={TINY_RECORDS}", "sample.progress=false", f"data.root={root}",
                   f"data.processed_dir={processed}", "preprocess.num_workers=1", *overrides])
    generate_sample(cfg.sample, root)
    for modality in ("text", "image", "audio"):
        run_preprocess(modality, cfg)
    return cfg


@pytest.fixture(scope="session")
def multilabel_processed_dir(tmp_path_factory) -> Path:
    """The tiny sample generated with multilabel genres, preprocessed for task=multilabel."""
    base = tmp_path_factory.mktemp("multilabel")
    generate_and_preprocess(base / "sample", base / "processed", ["task=multilabel"])
    return base / "processed"


def copy_dvc_project(project: Path, overrides: list[str]) -> dict[str, str]:
    """The project's code, conf/ and dvc.yaml copied to `project`, with params.yaml composed with
    `overrides`; returns the environment for its DVC commands (this interpreter first on PATH)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("conf", "pipelines", "fusion"):
        shutil.copytree(ROOT / name, project / name, ignore=ignore)
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    (project / "params.yaml").write_text(OmegaConf.to_yaml(compose(overrides)), encoding="utf-8")
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for CLI tests: this interpreter's bin first on PATH (DVC stages call `python`)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env
