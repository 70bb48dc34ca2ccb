"""The run's model as an MLflow pyfunc model: raw text, images and audio in, the prediction table out.

Logged into the training run next to its metrics (``runs:/<run id>/model``) with the model bundle as its
artifact and the ``fusion`` package as its code, so ``mlflow models serve -m runs:/<run id>/model
--env-manager local`` needs nothing else. Bad requests raise MlflowException(INVALID_PARAMETER_VALUE), which
the scoring server answers with HTTP 400 and the message naming the row, the column and the fix. The serving
settings (allowed roots, request limits, torch threads: fusion/serving/settings.py) travel as the model's
``model_config``, so they can be changed where the model is served."""

from __future__ import annotations

import importlib.metadata
import logging
import numbers
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from omegaconf import DictConfig, OmegaConf

import fusion
from fusion.pretrained import PACKAGE_PREFIX
from fusion.serving import guard, serving_batch_size
from fusion.serving.bundle import ModelBundle
from fusion.serving.predictions import PREDICTION, prediction_columns, prediction_rows, score_columns
from fusion.serving.requests import ID, BadRequest, RequestDecoder, row_batches
from fusion.serving.settings import ServingSettings, SettingsError
from fusion.tracking.store import absolute_tracking_uri

BUNDLE = "bundle"  # the artifact key (and folder under artifacts/) of the model bundle
BATCH_SIZE = "batch_size"  # the request parameter: rows preprocessed and scored at once
# The distributions inference imports (fusion.serving and what it loads), pinned to the installed versions
# so MLflow need not infer them (slow) and a served copy gets the versions the model was trained with.
INFERENCE_DISTRIBUTIONS = (
    "mlflow",
    "torch",
    "torchvision",
    "torchaudio",
    "timm",
    "pytorch-lightning",
    "torchmetrics",
    "tokenizers",
    "soundfile",
    "pillow",
    "numpy",
    "pandas",
    "omegaconf",
    "hydra-core",
    "litdata",
    "matplotlib",
)
LOGGER = logging.getLogger(__name__)


def predict_frame(bundle: ModelBundle, decoder: RequestDecoder, frame: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """The prediction table of a request DataFrame, ``batch_size`` rows at a time; raises BadRequest listing
    every bad value (no prediction is returned for a request with one)."""
    decoder.check_columns(frame.columns)
    records = frame.to_dict(orient="records")
    decoder.check_size(records)
    rows, problems = [], []
    for block in row_batches(len(records), batch_size):
        try:
            samples = decoder.samples([records[i] for i in block], first_row=block.start)
        except BadRequest as exc:
            problems.extend(exc.errors)
            continue
        if not problems:  # after a bad row, the rest is only checked, so every problem is reported at once
            rows += prediction_rows([s["id"] for s in samples], bundle.scores(bundle.batch(samples)), bundle.task)
    if problems:
        raise BadRequest(problems)
    return pd.DataFrame(rows, columns=prediction_columns(bundle.task))


class FusionModel(mlflow.pyfunc.PythonModel):
    """The served model: a request DataFrame (``id`` and one column per modality) -> prediction table."""

    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle(context.artifacts[BUNDLE])
        try:
            settings = ServingSettings.from_config(self.bundle.cfg, getattr(context, "model_config", None))
            self.decoder = RequestDecoder(self.bundle, settings)
        except SettingsError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        if settings.torch_threads is not None:
            torch.set_num_threads(settings.torch_threads)
        if guard.in_scoring_server():
            guard.install(settings.limits)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            raise MlflowException(
                f"expected a table of rows with columns {', '.join(self.decoder.columns)}, got "
                f'{type(model_input).__name__}; send {{"dataframe_records": [{{...}}]}} or '
                f'{{"dataframe_split": {{...}}}}',
                error_code=INVALID_PARAMETER_VALUE,
            )
        batch_size = (params or {}).get(BATCH_SIZE)
        batch_size = serving_batch_size(self.bundle.cfg) if batch_size is None else batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise MlflowException(
                f"params.{BATCH_SIZE}={batch_size!r}: send a positive integer (rows scored at once)",
                error_code=INVALID_PARAMETER_VALUE,
            )
        try:
            return predict_frame(self.bundle, self.decoder, model_input, int(batch_size))
        except BadRequest as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        except Exception:  # noqa: BLE001 - a bug, not the client's fault: a 500 without the traceback MLflow would send
            LOGGER.exception("scoring a request failed")
            raise MlflowException(
                "internal error while scoring the request (a bug: the traceback is in the server's "
                "log); report it with the request",
                error_code=INTERNAL_ERROR,
            ) from None


def model_signature(bundle: ModelBundle) -> ModelSignature:
    """Optional string columns ``id`` and the run's modalities in; the prediction table out; ``batch_size``."""
    inputs = Schema([ColSpec(DataType.string, name, required=False) for name in (ID, *bundle.modalities)])
    prediction = DataType.string if bundle.classes else DataType.double
    outputs = Schema(
        [
            ColSpec(DataType.string, ID),
            ColSpec(prediction, PREDICTION),
            *(ColSpec(DataType.double, name) for name in score_columns(bundle.task)),
        ]
    )
    params = ParamSchema([ParamSpec(BATCH_SIZE, DataType.long, serving_batch_size(bundle.cfg))])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def pinned_requirements(cfg: DictConfig) -> list[str]:
    """``name==version`` of every distribution inference of this run imports: the common ones, plus
    transformers for a pretrained text encoder (and the package shipping it) and peft for LoRA."""
    names = list(INFERENCE_DISTRIBUTIONS)
    if OmegaConf.select(cfg, "model.text.kind") == "pretrained":
        names.append("transformers")
        spec = str(OmegaConf.select(cfg, "model.text.pretrained_path", default="") or "")
        if spec.startswith(PACKAGE_PREFIX):
            module = spec[len(PACKAGE_PREFIX) :].partition("/")[0]
            names += importlib.metadata.packages_distributions().get(module, [])
    if any(OmegaConf.select(cfg, f"model.{m}.lora") for m in cfg.modality.names):
        names.append("peft")
    return [f"{name}=={importlib.metadata.version(name)}" for name in dict.fromkeys(names)]


def save_bundle_model(bundle_dir: str | Path, path: str | Path) -> Path:
    """Write the MLflow model of a bundle folder to ``path`` (a new folder): MLmodel, artifacts/bundle, the
    ``fusion`` package under code/, pinned requirements."""
    bundle = ModelBundle(bundle_dir)
    settings = ServingSettings.from_config(bundle.cfg)
    with warnings.catch_warnings():
        # An input example would need a real file of each modality; the signature documents the columns.
        warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=FusionModel(),
            artifacts={BUNDLE: str(Path(bundle_dir).resolve())},
            signature=model_signature(bundle),
            code_paths=[str(Path(fusion.__file__).resolve().parent)],
            pip_requirements=pinned_requirements(bundle.cfg),
            model_config=settings.model_config(),
        )
    for cache in Path(path).rglob("__pycache__"):  # bytecode of this machine's Python; not part of the model
        shutil.rmtree(cache, ignore_errors=True)
    return Path(path)


def log_bundle_model(bundle_dir: str | Path, tracking_uri: str, run_id: str, artifact_path: str = "model") -> str:
    """Log the bundle's MLflow model into the existing run ``run_id`` as ``<artifact_path>``, leaving the run's
    status and times as they are (it may be running in Lightning's logger, or finished); returns the
    ``runs:/<run_id>/<artifact_path>`` URI to serve or load."""
    with tempfile.TemporaryDirectory(prefix="fusion-model-") as scratch:
        local = save_bundle_model(bundle_dir, Path(scratch) / "model")
        MlflowClient(absolute_tracking_uri(tracking_uri)).log_artifacts(run_id, str(local), artifact_path)
    return f"runs:/{run_id}/{artifact_path}"
