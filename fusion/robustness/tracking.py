"""The robustness results in the training run's MLflow record, and the reference (late-fusion) run's curves
read back from the store for effective robustness.

Keys: `robustness/level` and `robustness/<metric>_<curve>` with step = level index (the MLflow UI draws
them as curves), `robustness/relative_<curve>`, `robustness/effective_<curve>`; the files under the
artifact folder `robustness/`; the tag `robustness_settings` (a hash of the settings that shape the
curves), so only curves measured the same way serve as a reference."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

PREFIX = "robustness/"
LEVEL_KEY = PREFIX + "level"
SETTINGS_TAG = "robustness_settings"
# The settings that change the curves (batch size and the reference choice do not).
CURVE_SETTINGS = ("levels", "seed", "perturbations", "all_at_once")
# A run's tags that must match the reference's (fusion/tracking/mlflow_logger.py run_tags).
MATCHED_TAGS = ("task", "modality", "data_version")


def settings_hash(robustness: DictConfig) -> str:
    """12 hex digits of the robustness settings that shape the curves."""
    resolved = OmegaConf.to_container(robustness, resolve=True)
    settings = {key: resolved[key] for key in CURVE_SETTINGS}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def curve_key(metric: str, curve: str) -> str:
    """`robustness/acc_image_noise` for the curve `image_noise` of test/acc."""
    return f"{PREFIX}{metric.split('/', 1)[-1]}_{curve}"


def log_curves(
    logger, metric: str, levels: Sequence[float], curves: Mapping[str, Sequence[float]], settings: str
) -> None:
    """One batch per level (step = its index), then the settings tag."""
    for step, level in enumerate(levels):
        points = {curve_key(metric, name): float(curve[step]) for name, curve in curves.items()}
        logger.log_metrics({LEVEL_KEY: float(level), **points}, step=step)
    logger.experiment.set_tag(logger.run_id, SETTINGS_TAG, settings)


def log_scores(logger, relative: Mapping[str, float], effective: Mapping[str, float] | None) -> None:
    scores = {f"{PREFIX}relative_{name}": value for name, value in relative.items()}
    scores.update({f"{PREFIX}effective_{name}": value for name, value in (effective or {}).items()})
    logger.log_metrics(scores)


def log_files(logger, paths: Sequence[Path]) -> None:
    for path in paths:
        logger.experiment.log_artifact(logger.run_id, str(path), artifact_path=PREFIX.rstrip("/"))


@dataclass
class Reference:
    """The run whose curves effective robustness compares with; run_id None with the reason (`note`) and what
    to do (`hint`) where there is none."""

    fusion: str
    run_id: str | None
    note: str
    hint: str = ""
    curves: dict[str, list[float]] | None = None

    def summary(self) -> dict:
        return {"fusion": self.fusion, "run_id": self.run_id, "note": self.note}


def find_reference(client: MlflowClient, run_id: str, fusion: str, settings: str) -> Reference:
    """The newest finished run of `fusion` with this run's task, modality and data_version tags whose
    robustness was evaluated with the same settings; this run itself if it is one."""
    run = client.get_run(run_id)
    tags = run.data.tags
    if tags.get("fusion") == fusion:
        return Reference(fusion, run_id, f"this run is {fusion} fusion: its own curves (effective robustness 0)")
    missing = [key for key in MATCHED_TAGS if not tags.get(key)]
    if missing:
        return Reference(
            fusion,
            None,
            f"this run has no {', '.join(missing)} tag",
            f"retrain it (runs from before lineage tags cannot be matched with a {fusion} run)",
        )
    match = " and ".join(f"tags.{key} = '{tags[key]}'" for key in MATCHED_TAGS)
    same_data = f"tags.fusion = '{fusion}' and {match} and attributes.status = 'FINISHED'"
    found = client.search_runs(
        [run.info.experiment_id],
        f"{same_data} and tags.{SETTINGS_TAG} = '{settings}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if found:
        return Reference(
            fusion,
            found[0].info.run_id,
            f"the newest finished {fusion} run with the same task, modality, data_version and robustness settings",
        )
    others = client.search_runs([run.info.experiment_id], same_data, max_results=1)
    note = (
        f"no finished {fusion} run on this data has robustness curves with these settings"
        if others
        else f"no finished {fusion} run with this task, modality and data_version"
    )
    hint = (
        f"train one on the same data (`python train.py fusion={fusion} modality={tags['modality']} "
        f"task={tags['task']}`, or `dvc exp run -S fusion={fusion}`), run the robustness stage on it with the "
        f"same robustness settings ({SETTINGS_TAG}={settings}), then run this one again "
        f"(`dvc repro -f robustness`)"
    )
    return Reference(fusion, None, note, hint)


def read_curves(
    client: MlflowClient, reference: Reference, metric: str, levels: Sequence[float], names: Sequence[str]
) -> Reference:
    """The reference with its curves of `names` at `levels` (the latest value per step), or with the
    reason why they cannot be read."""
    if reference.run_id is None:
        return reference
    logged = latest_per_step(client, reference.run_id, LEVEL_KEY)
    if [logged.get(step) for step in range(len(levels))] != [float(level) for level in levels]:
        return Reference(reference.fusion, None, f"run {reference.run_id} has no curve at the levels {list(levels)}")
    curves = {}
    for name in names:
        values = latest_per_step(client, reference.run_id, curve_key(metric, name))
        if len(values) < len(levels):
            return Reference(reference.fusion, None, f"run {reference.run_id} has no {curve_key(metric, name)} curve")
        curves[name] = [values[step] for step in range(len(levels))]
    return Reference(reference.fusion, reference.run_id, reference.note, curves=curves)


def latest_per_step(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """step → value of a metric's history, the latest logged where a step was logged again (a rerun)."""
    latest: dict[int, tuple[int, float]] = {}
    for point in client.get_metric_history(run_id, key):
        if point.step not in latest or point.timestamp >= latest[point.step][0]:
            latest[point.step] = (point.timestamp, point.value)
    return {step: value for step, (_, value) in latest.items()}
