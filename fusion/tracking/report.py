"""`python -m fusion.tracking.report`: a Markdown table of an experiment's runs (test metrics)."""

from __future__ import annotations

import argparse

from mlflow.tracking import MlflowClient

from fusion.tracking.mlflow_logger import absolute_tracking_uri

COLUMNS = ("modality", "fusion", "test/acc", "test/f1_macro", "params/trainable", "time/epoch_seconds")


def runs_table(tracking_uri: str, experiment_name: str) -> str:
    """One row per finished run that has test metrics, best accuracy first."""
    client = MlflowClient(tracking_uri=absolute_tracking_uri(tracking_uri))
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise SystemExit(f"error: no MLflow experiment '{experiment_name}' in {tracking_uri}; train a model first.")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if "test/acc" in r.data.metrics]
    runs.sort(key=lambda r: -r.data.metrics["test/acc"])
    lines = ["| " + " | ".join(COLUMNS) + " | run |", "|" + " --- |" * (len(COLUMNS) + 1)]
    for run in runs:
        values = {**run.data.tags, **run.data.metrics}
        cells = [_cell(values.get(column)) for column in COLUMNS]
        lines.append("| " + " | ".join(cells) + f" | {run.info.run_id[:8]} |")
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 100 else f"{value:,.0f}"
    return "" if value is None else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description="Print a Markdown table of the runs in an MLflow experiment.")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="fusion")
    args = parser.parse_args()
    print(runs_table(args.tracking_uri, args.experiment))


if __name__ == "__main__":
    main()
