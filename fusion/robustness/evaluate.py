"""evaluate_robustness(cfg): the train stage's best checkpoint on the test split with each modality removed and
under growing noise per modality (conf/robustness/); curves, MultiBench scores, files and the training run's
MLflow record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from fusion.meta import FEATURES
from fusion.robustness.curves import (
    ModelMetric,
    check_levels,
    curve_names,
    device_for,
    measure,
    plan_curves,
)
from fusion.robustness.inputs import build_inputs
from fusion.robustness.report import plot_curves, summary, write_curves_csv, write_json
from fusion.robustness.results import Curves
from fusion.robustness.scores import effective_robustness, relative_robustness
from fusion.robustness.tracking import (
    find_reference,
    log_curves,
    log_files,
    log_scores,
    read_curves,
    settings_hash,
)
from fusion.tasks.objectives import Task
from fusion.tracking.mlflow_logger import build_mlflow_logger
from fusion.training.checkpoints import load_weights
from fusion.training.resume import RUN_INFO
from fusion.training.setup import build_datamodule, build_module

CURVES_CSV, SUMMARY_JSON, FIGURE = "curves.csv", "robustness.json", "robustness.png"


def evaluate_robustness(cfg: DictConfig) -> dict[str, Any]:
    """Measure the curves, score them against the reference run's, write curves.csv, robustness.json and
    robustness.png to paths.robustness_dir and log all of it to the training run; returns the summary."""
    if cfg.get("robustness") is None or cfg.paths.get("robustness_dir") is None:
        raise ValueError(
            "the config has no robustness settings (conf/robustness/, paths.robustness_dir); "
            "regenerate params.yaml with `make params`"
        )
    settings = cfg.robustness
    levels = check_levels(settings.levels)
    run_file = Path(cfg.paths.output_dir) / RUN_INFO
    if not run_file.is_file():
        raise FileNotFoundError(f"{run_file} not found; run the train stage first (`dvc repro train`).")
    run_id = json.loads(run_file.read_text(encoding="utf-8"))["run_id"]

    curves, task = _measure(cfg, levels)
    logger = build_mlflow_logger(cfg, run_id=run_id)
    fingerprint = settings_hash(settings)
    log_curves(logger, task.metric, levels, curves.curves, fingerprint)
    reference = find_reference(logger.experiment, run_id, str(settings.reference_fusion), fingerprint)
    reference = read_curves(logger.experiment, reference, task.metric, levels, list(curves.curves))
    relative = {name: relative_robustness(levels, values) for name, values in curves.curves.items()}
    effective = (
        None
        if reference.curves is None
        else {
            name: effective_robustness(values, reference.curves[name], task.mode)
            for name, values in curves.curves.items()
        }
    )
    run = {"modality": str(cfg.modality.name), "fusion": str(cfg.fusion.name), "mlflow_run_id": run_id}
    result = summary(curves, task.metric, task.mode, relative, effective, reference, run)
    log_scores(logger, result["relative"], result.get("effective"))
    if effective is None:
        how = f" To get it, {reference.hint}." if reference.hint else ""
        print(f"[robustness] no effective robustness: {reference.note}.{how}", flush=True)

    out = Path(cfg.paths.robustness_dir)
    dashed = reference.curves if reference.run_id != run_id else None  # a late run's own curves are not redrawn
    title = f"{cfg.modality.name} · {cfg.fusion.name} · test robustness"
    files = [
        write_curves_csv(out / CURVES_CSV, curves, curve_names(settings)),
        write_json(out / SUMMARY_JSON, result),
        plot_curves(out / FIGURE, levels, curves.curves, dashed, task.metric, title, str(reference.fusion)),
    ]
    log_files(logger, files)
    return result


def _measure(cfg: DictConfig, levels: list[float]) -> tuple[Curves, Task]:
    """The best checkpoint's curves on the test split, and its task."""
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    load_weights(module, Path(cfg.paths.checkpoint_dir) / f"{cfg.callbacks.checkpoint.filename}.ckpt")
    raw = [m for m in datamodule.modalities if datamodule.metas[m].get("kind") != FEATURES]  # features: no noise
    plan = plan_curves(cfg.robustness, raw)
    inputs = build_inputs(cfg, sorted({p.modality for steps in plan.values() for _, p in steps}))
    score = ModelMetric(module, device_for(cfg.trainer.accelerator), str(cfg.trainer.precision))
    curves = measure(
        score,
        datamodule,
        inputs,
        plan,
        levels,
        int(cfg.robustness.seed),
        int(cfg.robustness.batch_size),
        int(cfg.data.num_workers),
    )
    return curves, module.task
