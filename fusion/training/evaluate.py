"""evaluate(cfg): test the trained checkpoint, write DVC metrics and plots, log to the same MLflow run."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import TQDMProgressBar

from fusion.tracking.mlflow_logger import build_mlflow_logger
from fusion.training.setup import build_datamodule, build_module
from fusion.training.train import RUN_INFO, log_test_report


def load_weights(module: torch.nn.Module, checkpoint: Path) -> None:
    """Load a Lightning checkpoint's weights without unpickling arbitrary objects."""
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} not found; run the train stage first (`dvc repro train`).")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test split metrics → metrics.json, confusion/per-class CSVs for `dvc plots`, MLflow run."""
    out = Path(cfg.paths.evaluate_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_info = json.loads((Path(cfg.paths.output_dir) / RUN_INFO).read_text(encoding="utf-8"))
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    load_weights(module, Path(cfg.paths.checkpoint_dir) / f"{cfg.callbacks.checkpoint.filename}.ckpt")
    logger = build_mlflow_logger(cfg, run_id=run_info["run_id"])
    progress = TQDMProgressBar(refresh_rate=int(cfg.callbacks.progress_bar.refresh_rate))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, devices=1, num_nodes=1, strategy="auto",
                                                  logger=logger, callbacks=[progress], enable_checkpointing=False)
    results = trainer.test(module, datamodule=datamodule)[0]
    classes = datamodule.classes
    report = module.test_report
    log_test_report(logger, report, classes, out, cfg)
    metrics = {
        "test": {"acc": results["test/acc"], "f1_macro": results["test/f1_macro"], "loss": results["test/loss"],
                 "samples": int(report["confusion"].sum())},
        "modality": cfg.modality.name,
        "fusion": cfg.fusion.name,
        "mlflow_run_id": run_info["run_id"],
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    write_plot_data(out / "plots", report, classes)
    return metrics


def write_plot_data(folder: Path, report: dict, classes: list[str]) -> None:
    """confusion.csv (one row per test sample: actual, predicted) and per_class.csv (class, f1)."""
    folder.mkdir(parents=True, exist_ok=True)
    confusion = report["confusion"].tolist()
    with open(folder / "confusion.csv", "w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(["actual", "predicted"])
        for i, row in enumerate(confusion):
            for j, count in enumerate(row):
                writer.writerows([[classes[i], classes[j]]] * int(count))
    with open(folder / "per_class.csv", "w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(["class", "f1"])
        writer.writerows([name, round(float(f1), 6)] for name, f1 in zip(classes, report["f1_per_class"]))
