"""A model reference -> the local folder of its model bundle, downloading from MLflow when needed.

Accepted: a run id (32 hex digits: its logged model ``runs:/<id>/<artifact_path>``), a ``runs:/`` or
``models:/`` URI (or any artifact URI MLflow reads), a local MLflow model folder (MLmodel and
artifacts/bundle), a bundle folder itself, or a folder holding one as ``bundle/``."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

from fusion.tracking.store import SQLITE_PREFIX, absolute_tracking_uri

# MLflow and the model stack are imported only once a reference has been checked, so a bad one fails at once.

RUN_ID = re.compile(r"[0-9a-f]{32}")
MLMODEL = "MLmodel"
URI_SCHEMES = ("runs:/", "models:/")
HINT = (
    "give model= the run id of a tested run (run.json's run_id; its model is logged as runs:/<run id>/model), "
    "a runs:/ or models:/ URI, or a local MLflow model or bundle folder"
)


class ModelReferenceError(ValueError):
    """The model reference leads to no model bundle; the message says what was tried and what to give."""


def bundle_dir(model: str, tracking_uri: str, download_dir: str | Path, artifact_path: str = "model") -> Path:
    """The bundle folder of ``model``; MLflow artifacts are downloaded into ``download_dir`` (the caller's scratch
    folder, e.g. a ``tempfile.TemporaryDirectory``: a model downloaded per call would otherwise pile up)."""
    model = str(model).strip()
    local = Path(model).expanduser()
    if local.exists():
        return local_bundle(local, model)
    if RUN_ID.fullmatch(model):
        uri = f"runs:/{model}/{artifact_path}"
    elif model.startswith(URI_SCHEMES) or "://" in model:
        uri = model
    else:
        raise ModelReferenceError(
            f"model={model!r}: no such file or folder, and not a run id (32 hex digits) or a "
            f"runs:/ or models:/ URI; {HINT}"
        )
    store = _existing_store(absolute_tracking_uri(tracking_uri), model)
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        with _process_wide_store(store):
            downloaded = download_artifacts(
                artifact_uri=uri, dst_path=str(download_dir), tracking_uri=store, registry_uri=store
            )
    except (MlflowException, OSError) as exc:
        reason = getattr(exc, "message", None) or str(exc)
        raise ModelReferenceError(
            f"model={model!r}: cannot download {uri} from the MLflow store {store} "
            f"({reason.splitlines()[0]}); {HINT}, and tracking_uri= the store that holds "
            f"the run"
        ) from None
    return local_bundle(Path(downloaded), model)


@contextmanager
def _process_wide_store(store: str) -> Iterator[None]:
    """MLflow (3.17) looks up a models:/ URI's name, alias and logged model with the process-wide tracking and
    registry URIs, not the ones download_artifacts is given: point both at ``store`` for the download, then put
    back what was there. The module settings only: mlflow.set_tracking_uri would also rewrite (and, restoring
    "unset", delete) the caller's MLFLOW_TRACKING_URI environment variable."""
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    previous = tracking._tracking_uri, registry._registry_uri
    tracking._tracking_uri = registry._registry_uri = store
    try:
        yield
    finally:
        tracking._tracking_uri, registry._registry_uri = previous


def _existing_store(store: str, model: str) -> str:
    """``store``, after checking that a SQLite store exists (MLflow would create an empty one)."""
    if store.startswith(SQLITE_PREFIX):
        path = Path(store[len(SQLITE_PREFIX) :])
        if not path.is_file():
            raise ModelReferenceError(
                f"model={model!r}: the MLflow store {path} does not exist; run from the project "
                f"folder or give tracking_uri=sqlite:///path/to/mlflow.db"
            )
    return store


def local_bundle(folder: Path, model: str) -> Path:
    """The bundle inside a local folder: the folder itself, the artifact of an MLflow model folder, or
    ``<folder>/bundle``."""
    from fusion.serving.bundle import CONFIG, WEIGHTS
    from fusion.serving.pyfunc import BUNDLE

    tried = []
    for candidate in (folder, _mlmodel_bundle(folder), folder / BUNDLE):
        if candidate is None:
            continue
        if (candidate / CONFIG).is_file() and (candidate / WEIGHTS).is_file():
            return candidate
        tried.append(str(candidate))
    raise ModelReferenceError(
        f"model={model!r}: no model bundle ({CONFIG} and {WEIGHTS}) in {', '.join(tried)}; {HINT}"
    )


def _mlmodel_bundle(folder: Path) -> Path | None:
    """The bundle artifact an MLflow model folder's MLmodel names (None when it is not such a folder)."""
    from fusion.serving.pyfunc import BUNDLE

    mlmodel = folder / MLMODEL
    if not mlmodel.is_file():
        return None
    spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    artifact = spec.get("flavors", {}).get("python_function", {}).get("artifacts", {}).get(BUNDLE, {})
    return folder / artifact.get("path", f"artifacts/{BUNDLE}")
