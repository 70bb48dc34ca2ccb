"""Shared fixtures: a tiny generated dataset, its preprocessed shards, the environment for CLI tests.
The builders they use live in tests/helpers/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from fusion.config import compose
from fusion.data.sample import generate_sample
from fusion.preprocess.common import run_preprocess
from tests.helpers.config import TINY_RECORDS
from tests.helpers.project import generate_and_preprocess, interpreter_env


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs -n auto) the workers share the cores: each worker, and every process
    it starts (the CLI and DVC tests), gets its share of them as torch/OpenMP threads, not all of them each."""
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    if workers > 1:
        share = str(max(1, len(os.sched_getaffinity(0)) // workers))
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(variable, share)
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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


@pytest.fixture(scope="session")
def multilabel_processed_dir(tmp_path_factory) -> Path:
    """The tiny sample generated with multilabel genres, preprocessed for task=multilabel."""
    base = tmp_path_factory.mktemp("multilabel")
    generate_and_preprocess(base / "sample", base / "processed", ["task=multilabel"])
    return base / "processed"


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for CLI tests: this interpreter's bin first on PATH (DVC stages call `python`)."""
    return interpreter_env(PYTHONUNBUFFERED="1")
