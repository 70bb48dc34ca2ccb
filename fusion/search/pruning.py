"""Pruning from the validation curve: a Lightning callback that reports the monitored metric to the Optuna trial
after every validation and stops the run (optuna.TrialPruned) when the study's pruner says so.

Our own callback rather than optuna_integration.PyTorchLightningPruningCallback: that one subclasses
`lightning.pytorch.Callback` (the `lightning` package), which a `pytorch_lightning.Trainer` does not accept."""

from __future__ import annotations

import optuna
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback

from fusion.search.storage import open_storage
from fusion.search.trial import STATE_TAG


def sweep_pruner() -> optuna.pruners.BasePruner:
    """The search's pruner (hydra.sweeper.pruner; Optuna keeps no pruner in the database), built in the job from
    the Hydra config every launcher hands its jobs; none configured: never prune."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    node = HydraConfig.get().sweeper.get("pruner") if HydraConfig.initialized() else None
    return instantiate(node) if node else optuna.pruners.NopPruner()


def load_trial(search: DictConfig) -> optuna.trial.Trial:
    """The running trial `search.trial_id` of study `search.study` in `search.storage` (the sweeper's job overrides)."""
    storage = open_storage(
        str(search.storage),
        heartbeat_seconds=None,
        grace_seconds=None,
        retry_failed=0,
        sqlite_timeout_seconds=float(search.sqlite_timeout_seconds),
    )
    study = optuna.load_study(study_name=str(search.study), storage=storage, pruner=sweep_pruner())
    return optuna.trial.Trial(study, int(search.trial_id))


class OptunaPruning(Callback):
    """trial.report(<monitor>, epoch) after each validation; raises optuna.TrialPruned (after tagging the MLflow
    run search/state=PRUNED) when trial.should_prune()."""

    def __init__(self, trial: optuna.trial.Trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if not self.trial.should_prune():
            return
        logger = trainer.logger
        if logger is not None and getattr(logger, "run_id", None):
            logger.experiment.set_tag(logger.run_id, STATE_TAG, "PRUNED")
        raise optuna.TrialPruned(
            f"trial {self.trial.number} pruned after epoch {epoch}: {self.monitor}={float(value):.4f}"
        )
