"""After a run is tested: its model bundle, the MLflow pyfunc model and the attention figures, on rank 0."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from fusion.data.datamodule import MultimodalDataModule
from fusion.explain.explainer import explain_samples
from fusion.explain.samples import fixed_samples, split_loader
from fusion.register import describe, register
from fusion.serving.bundle import ModelBundle, save_bundle
from fusion.serving.pyfunc import log_bundle_model
from fusion.tracking.store import absolute_tracking_uri

EXPLAIN_ARTIFACTS = "explain"


@rank_zero_only
def publish_run(
    cfg: DictConfig, net, datamodule: MultimodalDataModule, logger, explain_dir: Path, bundle_dir: Path | None = None
) -> None:
    """Save the bundle of ``net`` (into ``bundle_dir``, else a temporary folder), log it as the run's MLflow
    model (serving.log_model) and write + log the attention figures of the fixed samples (explain.enabled)."""
    serving, explain = cfg.get("serving"), cfg.get("explain")
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        folder = save_bundle(bundle_dir or Path(tmp) / "bundle", cfg, net, cfg.data.processed_dir)
        if serving is not None and serving.log_model and logger.run_id is not None:  # logger=none: no run
            log_bundle_model(
                folder, absolute_tracking_uri(cfg.logger.tracking_uri), logger.run_id, serving.artifact_path
            )
            register_logged_model(cfg, logger.run_id)
        if explain is not None and explain.enabled:
            shutil.rmtree(explain_dir, ignore_errors=True)
            samples = fixed_samples(datamodule, int(explain.samples), list(explain.sample_ids or []))
            if samples:
                split = str(explain.removal_split)
                explain_samples(
                    ModelBundle(folder),
                    samples,
                    explain_dir,
                    explain,
                    split_batches=split_loader(datamodule, split),
                    split_name=split,
                )
                logger.experiment.log_artifacts(logger.run_id, str(explain_dir), EXPLAIN_ARTIFACTS)


def register_logged_model(cfg: DictConfig, run_id: str) -> dict | None:
    """serving.register.name set: register the run's logged model as a new version with serving.register.alias
    (fusion.register); returns what it registered, or None when the option is off."""
    options = cfg.serving.get("register") or {}
    if not options.get("name"):
        return None
    registered = register(
        run_id, str(options["name"]), options.get("alias"), str(cfg.serving.artifact_path), str(cfg.logger.tracking_uri)
    )
    print(describe(registered), flush=True)
    return registered
