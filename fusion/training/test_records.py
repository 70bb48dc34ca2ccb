"""The test split's per-record outcome of a run (test_records.csv, an MLflow artifact): what paired
significance tests over the same records (fusion/tracking/stats.py, compare) read across runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl
import torch

FILE = "test_records.csv"
COLUMNS = ("id", "target", "prediction", "correct")


def test_record_rows(ids: list[str], labels: torch.Tensor, scores: torch.Tensor, task) -> list[dict]:
    """One row per record: its target and prediction, and `correct` (1/0; multilabel: every label right;
    regression: the negative absolute error, so that higher is better as for the class tasks)."""
    rows = []
    for i, record_id in enumerate(ids):
        if task.name == "multiclass":
            p, t = int(scores[i].argmax()), int(labels[i])
            rows.append({"id": record_id, "target": t, "prediction": p, "correct": int(p == t)})
        elif task.name == "multilabel":
            p, t = (scores[i] > task.threshold).int(), labels[i].int()
            rows.append(
                {
                    "id": record_id,
                    "target": "".join(map(str, t.tolist())),
                    "prediction": "".join(map(str, p.tolist())),
                    "correct": int(bool((p == t).all())),
                }
            )
        else:
            p, t = float(scores[i].reshape(-1)[0]), float(labels[i].reshape(-1)[0])
            rows.append({"id": record_id, "target": t, "prediction": p, "correct": -abs(p - t)})
    return rows


def write_test_records(trainer: pl.Trainer, module, datamodule, path: Path) -> Path:
    """Predict the test split with the module's current (best) weights and write test_records.csv."""
    batches = trainer.predict(module, dataloaders=datamodule.loader("test"))
    ids = [str(i) for batch in batches for i in batch["id"]]
    labels = torch.cat([batch["label"] for batch in batches])
    scores = torch.cat([batch["scores"].float() for batch in batches])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as sink:
        writer = csv.DictWriter(sink, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(test_record_rows(ids, labels, scores, module.task))
    return path


def read_test_records(path: str | Path) -> dict[str, float]:
    """{record id: correct} from a test_records.csv."""
    with open(path, newline="", encoding="utf-8") as source:
        return {row["id"]: float(row["correct"]) for row in csv.DictReader(source)}


def log_test_records(trainer: pl.Trainer, module, datamodule, logger, output_dir: Path) -> Path | None:
    """Write test_records.csv in the run folder and log it to the run (one process only: under several
    processes each would predict its own share of the records, so the file is skipped there)."""
    if trainer.world_size != 1:
        print("test_records.csv skipped: paired tests need one process's predictions (trainer.devices=1)", flush=True)
        return None
    path = write_test_records(trainer, module, datamodule, output_dir / FILE)
    logger.experiment.log_artifact(logger.run_id, str(path))
    return path
