"""Datasets and project copies for tests that run the real stages: the tiny sample preprocessed, and the
code + conf/ + dvc.yaml copied to a folder where DVC can run."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fusion.config import compose
from fusion.data.sample import generate_sample
from fusion.preprocess.common import run_preprocess
from tests.helpers.config import ROOT, TINY_RECORDS


def generate_and_preprocess(root: Path, processed: Path, overrides: list[str] = ()) -> DictConfig:
    """Generate the tiny sample at `root` and preprocess all three modalities into `processed`."""
    cfg = compose(
        [
            f"sample.num_records={TINY_RECORDS}",
            "sample.progress=false",
            f"data.root={root}",
            f"data.processed_dir={processed}",
            "preprocess.num_workers=1",
            *overrides,
        ]
    )
    generate_sample(cfg.sample, root)
    for modality in ("text", "image", "audio"):
        run_preprocess(modality, cfg)
    return cfg


def interpreter_env(**extra: str) -> dict[str, str]:
    """This environment with this interpreter's bin first on PATH (DVC stages and CLIs call `python`)."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra)


def copy_dvc_project(project: Path, overrides: list[str]) -> dict[str, str]:
    """The project's code, conf/ and dvc.yaml copied to `project`, with params.yaml composed with
    `overrides`; returns the environment for its DVC commands (this interpreter first on PATH)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("conf", "pipelines", "fusion"):
        shutil.copytree(ROOT / name, project / name, ignore=ignore)
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    (project / "params.yaml").write_text(OmegaConf.to_yaml(compose(overrides)), encoding="utf-8")
    return interpreter_env()
