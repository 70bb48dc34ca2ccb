"""The real composed config, shrunk so a training run takes seconds on a 2-core CPU."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from fusion.config import compose

ROOT = Path(__file__).resolve().parents[2]
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
    return compose(
        [
            *TINY_TRAINING,
            f"sample.num_records={TINY_RECORDS}",
            "sample.progress=false",
            f"paths.output_dir={tmp / 'train'}",
            f"paths.evaluate_dir={tmp / 'evaluate'}",
            f"logger.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
            f"logger.artifact_location={tmp / 'mlartifacts'}",
            *([f"data.processed_dir={processed_dir}"] if processed_dir else []),
            *overrides,
        ]
    )
