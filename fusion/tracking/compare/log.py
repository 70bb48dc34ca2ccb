"""Logging a comparison (or a report) to MLflow: a finished run with its files in the reports experiment, apart
from the training runs it reads."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mlflow.tracking import MlflowClient

from fusion.tracking.compare.query import Comparison
from fusion.tracking.lineage import git_commit
from fusion.tracking.store import absolute_tracking_uri

REPORTS_SUFFIX = "-reports"  # the compare and report runs of experiment X go to experiment X-reports
COMPARE_KIND = "compare"  # tag `kind` of the compare runs themselves; any run with a `kind` tag is not training
NOTE_LIMIT = 7000  # MLflow truncates tag values at 8000 characters


def reports_experiment(experiment_name: str, configured: str | None = None) -> str:
    """The experiment that holds the compare and report runs of `experiment_name` (logger.reports_experiment;
    default `<experiment>-reports`), so the training-run table of the UI shows training runs only."""
    return configured or f"{experiment_name}{REPORTS_SUFFIX}"


def log_comparison(
    comparison: Comparison,
    markdown: str,
    files: Sequence[Path],
    run_name: str = "compare",
    kind: str = COMPARE_KIND,
    experiment: str | None = None,
) -> str:
    """A finished run with tag kind=`kind` in the reports experiment (`reports_experiment`), holding the files (a
    folder keeps its name as the artifact folder) and naming the experiment it read; returns its id."""
    client = MlflowClient(tracking_uri=absolute_tracking_uri(comparison.tracking_uri))
    name = reports_experiment(comparison.experiment_name, experiment)
    found = client.get_experiment_by_name(name)
    experiment_id = (
        found.experiment_id
        if found
        else client.create_experiment(name, artifact_location=_shared_artifacts(client, comparison.experiment_id))
    )
    commit, dirty = git_commit()
    tags = {
        "kind": kind,
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "source_experiment": comparison.experiment_name,
        "mlflow.note.content": markdown if len(markdown) <= NOTE_LIMIT else f"See the {kind}.md artifact.",
    }
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    try:
        client.log_param(run_id, "tasks", ",".join(t.task for t in comparison.tables))
        client.log_metric(run_id, "runs", sum(len(t.rows) for t in comparison.tables))
        for path in map(Path, files):
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=path.name)
            else:
                client.log_artifact(run_id, str(path))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _shared_artifacts(client: MlflowClient, experiment_id: str) -> str | None:
    """The training experiment's artifact location (e.g. mlartifacts/, one folder per run id), so the reports
    experiment does not use MLflow's default ./mlartifacts of whatever folder the command runs in."""
    return client.get_experiment(experiment_id).artifact_location
