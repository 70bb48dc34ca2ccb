"""`python -m fusion.register run_id=<run id> name=<model name> [alias=champion]`: register a run's logged model in
the MLflow Model Registry, so that "which model is in production" has an answer: `models:/<name>@champion`
(served by `make serve MODEL=models:/<name>@champion`, predicted with `python -m fusion.predict model=...`)."""

from __future__ import annotations

from typing import Any, Sequence

from fusion.cli import Option, parse_key_values
from fusion.config import compose
from fusion.tracking.store import absolute_tracking_uri


class RegisterError(RuntimeError):
    """The run or its model cannot be registered; the message names the fix."""


def options(defaults) -> dict[str, Option]:
    return {
        "run_id": Option(
            None, "the MLflow run whose model to register (outputs/train/run.json's run_id)", required=True
        ),
        "name": Option(None, "the registered model's name (created if new; each call adds a version)", required=True),
        "alias": Option(None, "an alias to point at the new version, e.g. champion (moved from any older one)"),
        "artifact_path": Option(defaults.serving.artifact_path, "the model's artifact folder in the run"),
        "tracking_uri": Option(defaults.logger.tracking_uri, "the MLflow store holding the run (and the registry)"),
        "description": Option(None, "a description of the new version"),
    }


EPILOG = """examples:
  python -m fusion.register run_id=$(jq -r .run_id outputs/train/run.json) name=fusion-sample alias=champion
  make serve MODEL=models:/fusion-sample@champion
  python -m fusion.predict model=models:/fusion-sample@champion manifest=data/sample/manifest.jsonl"""


def register(
    run_id: str,
    name: str,
    alias: str | None = None,
    artifact_path: str = "model",
    tracking_uri: str = "sqlite:///mlflow.db",
    description: str | None = None,
) -> dict[str, Any]:
    """A new version of `name` from `runs:/<run_id>/<artifact_path>`, with `alias` set on it; returns
    {name, version, alias, uri}."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    store = absolute_tracking_uri(str(tracking_uri))
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    try:
        run = client.get_run(run_id)
        if not any(a.path == artifact_path for a in client.list_artifacts(run_id)):
            raise RegisterError(
                f"run {run_id} has no logged model '{artifact_path}/' (a run logs it when it is "
                f"tested: train.py with test_after_fit, or the evaluate stage)"
            )
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, tags={"task": run.data.tags.get("task", "")})
        version = client.create_model_version(
            name,
            f"runs:/{run_id}/{artifact_path}",
            run_id=run_id,
            tags={k: run.data.tags[k] for k in ("modality", "fusion", "data_version") if k in run.data.tags},
            description=description,
        )
        if alias:
            client.set_registered_model_alias(name, alias, version.version)
    except MlflowException as exc:
        raise RegisterError(
            f"cannot register run {run_id} as '{name}' in {store}: {exc.message.splitlines()[0]}"
        ) from None
    return {
        "name": name,
        "version": version.version,
        "alias": alias,
        "uri": f"models:/{name}@{alias}" if alias else f"models:/{name}/{version.version}",
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = parse_key_values("python -m fusion.register", __doc__.split("\n\n")[0], options(compose()), argv, EPILOG)
    try:
        result = register(**{key: cfg[key] for key in cfg})
    except RegisterError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(describe(result))
    return result


def describe(result: dict[str, Any]) -> str:
    """One line saying what :func:`register` registered."""
    alias = f" with alias {result['alias']}" if result["alias"] else ""
    return f"registered {result['name']} version {result['version']}{alias}: {result['uri']}"


if __name__ == "__main__":
    main()
