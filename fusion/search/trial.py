"""The link between a training run and its Optuna trial: the sweeper passes `+search.*` overrides to each job
(study, storage, trial number and id, parent MLflow run); training reads them here. Imports Optuna only
inside a search, so ordinary runs do not load it."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests the trial under the study's run
STUDY_TAG, TRIAL_TAG, STATE_TAG = "search/study", "search/trial", "search/state"


def search_settings(cfg: DictConfig) -> DictConfig | None:
    """cfg.search when this run is a trial of a study, else None."""
    search = cfg.get("search")
    return search if search else None


def trial_tags(cfg: DictConfig) -> dict[str, str]:
    """The MLflow tags of a trial's run: nested under the study's parent run, with study and trial number."""
    search = search_settings(cfg)
    if search is None:
        return {}
    tags = {STUDY_TAG: str(search.study), TRIAL_TAG: str(search.trial), STATE_TAG: "RUNNING"}
    if search.get("parent_run_id"):
        tags[PARENT_TAG] = str(search.parent_run_id)
    return tags


def trial_callbacks(cfg: DictConfig) -> list[Any]:
    """The pruning callback of a trial (reports the monitored validation metric each epoch); none outside a search."""
    search = search_settings(cfg)
    if search is None:
        return []
    from fusion.search.pruning import OptunaPruning, load_trial

    return [OptunaPruning(load_trial(search), cfg.callbacks.checkpoint.monitor)]
