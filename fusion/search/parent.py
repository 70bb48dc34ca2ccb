"""The study's MLflow parent run: created once per study (by the worker that created the study), every trial's
run nests under it; after each worker's sweep it holds the best config, the study table (CSV) and Optuna's
optimisation-history, parameter-importance and intermediate-value plots (matplotlib PNGs)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from fusion.search.promote import experiment_yaml
from fusion.search.storage import finished_count
from fusion.search.trial import STUDY_TAG
from fusion.tracking.retry import initialise_store, retrying
from fusion.tracking.store import absolute_tracking_uri, artifact_uri

KIND = "search"  # tag `kind`: compare and the report skip it as a non-training run
PARENT_ATTR = "mlflow_parent_run_id"  # the study's user attribute naming its parent run


def tracking_client(log: DictConfig) -> tuple[MlflowClient, str] | None:
    """(client, experiment id) of the training experiment (conf/logger/), or None with logger=none."""
    if log.get("name", "mlflow") == "none":
        return None
    uri = absolute_tracking_uri(str(log.tracking_uri))
    initialise_store(uri, log.retry)
    client = retrying(MlflowClient(tracking_uri=uri), log.retry)
    experiment = client.get_experiment_by_name(log.experiment_name)
    if experiment is not None:
        return client, experiment.experiment_id
    try:
        return client, client.create_experiment(
            log.experiment_name, artifact_location=artifact_uri(log.artifact_location)
        )
    except Exception:  # another process created it first (MLflow raises its own error type per store)
        return client, client.get_experiment_by_name(log.experiment_name).experiment_id


def create_parent(client: MlflowClient, experiment_id: str, study: optuna.Study, storage_url: str) -> str:
    run = client.create_run(
        experiment_id,
        run_name=f"search-{study.study_name}",
        tags={"kind": KIND, STUDY_TAG: study.study_name, "search/storage": storage_url},
    )
    return run.info.run_id


def update_parent(client: MlflowClient, run_id: str, study: optuna.Study, n_trials: int) -> None:
    """Best config, study table and plots as artifacts; best value, trial counts as tags/metrics. The run is
    marked FINISHED once n_trials are complete or pruned (a later worker may update it again)."""
    states = {state.name: len(study.get_trials(deepcopy=False, states=(state,))) for state in optuna.trial.TrialState}
    for name, count in states.items():
        client.set_tag(run_id, f"search/n_{name.lower()}", str(count))
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        study.trials_dataframe().to_csv(out / "study_trials.csv", index=False)
        _plots(study, out)
        if states["COMPLETE"]:
            best = study.best_trial
            client.log_metric(run_id, "search/best_value", float(best.value))
            client.set_tag(run_id, "search/best_trial", str(best.number))
            (out / "best_config.yaml").write_text(experiment_yaml(study, best), encoding="utf-8")
        for path in sorted(out.iterdir()):
            client.log_artifact(run_id, str(path))
    if finished_count(study) >= n_trials:
        client.set_terminated(run_id, "FINISHED")


def _plots(study: optuna.Study, out: Path) -> None:
    """optimisation history, intermediate values and (from two complete trials) parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    figures = {
        "optimization_history.png": ovm.plot_optimization_history,
        "intermediate_values.png": ovm.plot_intermediate_values,
    }
    if len(complete) >= 2 and len({k for t in complete for k in t.distributions}) >= 1:
        figures["param_importances.png"] = ovm.plot_param_importances
    for name, plot in figures.items():
        try:
            axes = plot(study)
        except (ValueError, RuntimeError) as exc:  # e.g. importances when every complete trial has the same values
            (out / f"{Path(name).stem}.txt").write_text(f"not plotted: {exc}\n", encoding="utf-8")
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.savefig(out / name, dpi=100, bbox_inches="tight")
        plt.close(figure)
