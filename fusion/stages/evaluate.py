"""evaluate(cfg): test the trained checkpoint, write DVC metrics and plots, log to the same MLflow run.

metrics.json holds every test/* metric of the task (multiclass: acc, f1_macro, loss) and the number of test
samples; test_by_modalities.json the figure of each group of records holding the same modalities (empty for one
modality) and test_records.csv each record's outcome; plots/ the task's CSVs (multiclass: confusion.csv and
per_class.csv, multilabel: per_class.csv, regression: scatter.csv) and <evaluate_dir>/<task.figure> its figure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import TQDMProgressBar

from fusion.serving.predictions import write_predictions
from fusion.stages.publish import publish_run
from fusion.stages.train import RUN_INFO, log_test_report, missing_modality_metrics, report_title
from fusion.tracking.mlflow_logger import build_mlflow_logger
from fusion.training.checkpoints import load_weights, network_state
from fusion.training.setup import build_datamodule, build_module, set_torch_flags
from fusion.training.step_floor import automatic_ceiling
from fusion.training.test_records import log_test_records, outcome_json, predict_test_split

PREDICTIONS = "predictions.csv"
BY_MODALITIES = "test_by_modalities.json"  # the test figure of each group of records holding the same modalities


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test split metrics → metrics.json, the task's plot CSVs for `dvc plots` and its figure
    (task.figure), all logged to the training run in MLflow; then, with test_missing_modalities,
    <task.metric>_without_<modality> to MLflow only (metrics.json keeps the full-input results)."""
    out = Path(cfg.paths.evaluate_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_info = json.loads((Path(cfg.paths.output_dir) / RUN_INFO).read_text(encoding="utf-8"))
    set_torch_flags(cfg)
    datamodule = build_datamodule(cfg)
    datamodule.check_test_split()
    module = build_module(cfg, datamodule)
    checkpoint = Path(cfg.paths.checkpoint_dir) / f"{cfg.callbacks.checkpoint.filename}.ckpt"
    load_weights(module, checkpoint)
    logger = build_mlflow_logger(cfg, run_id=run_info["run_id"])
    progress = TQDMProgressBar(refresh_rate=int(cfg.callbacks.progress_bar.refresh_rate))
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        devices=1,
        num_nodes=1,
        strategy="auto",
        logger=logger,
        callbacks=[progress],
        enable_checkpointing=False,
        **automatic_ceiling(cfg),
    )
    results = trainer.test(module, datamodule=datamodule)[0]
    task, report = module.task, module.test_report
    log_test_report(logger, task, report, out, report_title(cfg))
    test = {key.split("/", 1)[1]: value for key, value in results.items() if key.startswith("test/")}
    metrics = {
        "test": {**dict(sorted(test.items())), "samples": len(datamodule.dataset("test"))},
        "modality": cfg.modality.name,
        "fusion": cfg.fusion.name,
        "mlflow_run_id": run_info["run_id"],
    }
    # One predict pass for predictions.csv and test_records.csv, both always written (DVC outputs of the stage)
    predictions = predict_test_split(trainer, module, datamodule)
    write_predictions(out / PREDICTIONS, predictions.ids, predictions.scores, task)
    # the groups apart from metrics.json, which `dvc metrics show` prints whole
    outcome = log_test_records(trainer, module, datamodule, logger, out, predictions)
    groups = outcome_json(outcome or {}, task.name)
    (out / BY_MODALITIES).write_text(json.dumps(groups, indent=2) + "\n", encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out / "plots", ignore_errors=True)  # no CSV of another task's run stays behind
    task.write_plot_data(report, out / "plots")
    if cfg.get("test_missing_modalities", False):
        missing_modality_metrics(trainer, module, datamodule, logger)
    publish_run(cfg, network_state(checkpoint), datamodule, logger, out / "explain")
    return metrics
