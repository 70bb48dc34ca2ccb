"""A throw-away folder with a generated sample dataset and its shards, shared by the sections of one run."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

from benchmarks.common import Console, output_to

MODALITIES = ("text", "image", "audio")


class Workspace:
    """The sample is generated once (fusion.data.sample) and preprocessed once by the real stages; every
    fusion config composed here reads and writes only inside this folder."""

    def __init__(self, dataset: DictConfig, console: Console, log_path: Path, parent: str | None = None):
        self.dataset = dataset
        self.console, self.log_path = console, log_path
        self.root = Path(tempfile.mkdtemp(prefix="fusion-bench-", dir=parent))
        self.sample_root = self.root / "sample"
        self.processed_dir: Path | None = None

    def fusion_config(self, overrides: Sequence[str] = (), processed_dir: Path | None = None) -> DictConfig:
        """conf/ composed as the project does, with the dataset, shards, outputs and MLflow store in here."""
        from fusion.config import compose
        from fusion.overrides import quoted_override

        processed = processed_dir or self.processed_dir or self.root / "processed"
        return compose(
            [
                f"sample.num_records={int(self.dataset.num_records)}",
                "sample.progress=false",
                quoted_override("data.root", self.sample_root),
                quoted_override("data.processed_dir", processed),
                quoted_override("paths.output_dir", self.root / "train"),
                quoted_override("paths.evaluate_dir", self.root / "evaluate"),
                quoted_override("logger.tracking_uri", f"sqlite:///{self.root / 'mlflow.db'}"),
                quoted_override("logger.artifact_location", self.root / "mlartifacts"),
                *self.dataset.overrides,
                *overrides,
            ]
        )

    def sample(self) -> Path:
        """The generated raw dataset (manifest, text/image/audio files), made on first use."""
        if not (self.sample_root / "manifest.jsonl").is_file():
            from fusion.data.sample import generate_sample

            start = time.perf_counter()
            with output_to(self.log_path):
                generate_sample(self.fusion_config().sample, self.sample_root)
            self.console.progress(
                "dataset", f"generated {self.dataset.num_records} records in {time.perf_counter() - start:.1f} s"
            )
        return self.sample_root

    def use_shards(self, processed_dir: Path) -> None:
        """Adopt shards another section already built (all modalities) instead of building them again."""
        self.processed_dir = processed_dir

    def shards(self) -> Path:
        """The processed folder with every modality's shards, built on first use."""
        if self.processed_dir is None:
            from fusion.preprocess.common import run_preprocess

            self.sample()
            out = self.root / "processed"
            cfg = self.fusion_config([f"preprocess.num_workers={int(self.dataset.preprocess_workers)}"], out)
            start = time.perf_counter()
            with output_to(self.log_path):
                for modality in MODALITIES:
                    run_preprocess(modality, cfg)
            self.console.progress("dataset", f"preprocessed into shards in {time.perf_counter() - start:.1f} s")
            self.processed_dir = out
        return self.processed_dir

    def close(self, keep: bool) -> None:
        if keep:
            self.console.progress("dataset", f"kept the work folder {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)
