"""LightningModule for any task (fusion/tasks/objectives.py): loss and metrics per split, test report."""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Mapping

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, Metric, MinMetric

from fusion.data.ablation import modality_dropout
from fusion.data.manifest import MODALITIES
from fusion.tasks import SPLITS, VOTE_VIEWS
from fusion.tasks.objectives import Task
from fusion.training.balance import modulate_gradients, ogm_coefficients
from fusion.training.test_records import held_modalities

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf: training stops before the broken weights are checkpointed."""


EVAL_SPLITS = ("val", "test")


class FusionModule(pl.LightningModule):
    """Trains any fusion network `net(inputs) -> outputs` on `task`; logs <split>/loss and the task's
    <split>/<metric>s per epoch, and the best monitored value as <task.monitor>_best (e.g. val/acc_best)."""

    def __init__(
        self,
        net: nn.Module,
        task: Task,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        modality_dropout: float | Mapping[str, float] = 0.0,
        augment: Callable[[dict], dict] | None = None,
        balance: Mapping[str, Any] | None = None,
        scheduler_interval: str = "epoch",
        vote_in_validation: bool = False,
        lr_scale: Mapping[str, float] | None = None,
    ):
        """``balance``: ``head_weight`` (weight of the per-modality heads' losses next to the fused loss; the
        net must have modality heads when it is > 0 or OGM-GE is on) and ``ogm_ge`` ({enabled, alpha, noise,
        start_epoch, end_epoch}). ``scheduler_interval``: "step" gives the scheduler ``total_steps``.
        ``vote_in_validation``: with a heads' vote (``net.predict_with_heads``), score validation (early stopping,
        checkpoint choice) on the vote too; by default validation scores the fused head, and the vote decides
        the test's and serving's predictions only. ``lr_scale``: {modality: factor} on the optimiser's learning
        rate for that modality's encoder (``optim.lr_scale``); every other parameter keeps the optimiser's own."""
        super().__init__()
        self.net = net
        self.task = task
        self.modalities = list(net.encoders.keys())
        self.dropout_rates = dropout_rates(modality_dropout, self.modalities)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.lr_scale = encoder_lr_scales(lr_scale or {}, self.modalities)
        self.scheduler_interval = scheduler_interval
        self.augment = augment
        balance = dict(balance or {})
        self.head_weight = float(balance.get("head_weight", 0.0))
        self.ogm = dict(balance.get("ogm_ge") or {})
        self.has_heads = getattr(net, "modality_heads", None) is not None
        if (self.head_weight > 0 or self.ogm.get("enabled")) and not self.has_heads:
            raise ValueError(
                "balance.head_weight > 0 and balance.ogm_ge need per-modality heads: set model.modality_heads=true"
            )
        self.vote = getattr(net, "predict_with_heads", None)
        self.vote_in_validation = vote_in_validation
        self._ogm_scores: dict[str, float] = {}
        self._logged: set[str] = set()  # the splits (and split_modality heads) whose metrics this epoch logged
        metrics = task.metrics()
        # ModuleDict keys cannot be "train" (nn.Module.train), hence the "<split>_" keys.
        self.metrics = nn.ModuleDict({f"{split}_": metrics.clone(prefix=f"{split}/") for split in SPLITS})
        self.losses = nn.ModuleDict({f"{split}_": MeanMetric() for split in SPLITS})
        # The per-modality heads' own metrics on the evaluation splits, e.g. val/acc_head_image.
        self.head_metrics = nn.ModuleDict(
            {
                f"{split}_{m}": metrics.clone(prefix=f"{split}/", postfix=f"_head_{m}")
                for split in EVAL_SPLITS
                for m in (self.modalities if self.has_heads else [])
            }
        )
        # With a vote, both views on the evaluation splits, e.g. test/acc_fused and test/acc_vote.
        self.view_metrics = nn.ModuleDict(
            {
                f"{split}_{view}": metrics.clone(prefix=f"{split}/", postfix=f"_{view}")
                for split in EVAL_SPLITS
                for view in (VOTE_VIEWS if self.vote else ())
            }
        )
        self.monitor_best = MaxMetric() if task.mode == "max" else MinMetric()
        self.test_report_metrics = task.report_metrics()
        self.test_report: dict[str, torch.Tensor] = {}

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.net({m: batch[m] for m in self.modalities})

    def _step(self, batch: dict[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs = {m: batch[m] for m in self.modalities}
        if self.vote and split in EVAL_SPLITS:
            fused, head_outputs, voted = self.net(inputs, every_output=True)
            self._log_views(batch, dict(zip(VOTE_VIEWS, (fused, voted), strict=True)), split)
            outputs = voted if split == "test" or self.vote_in_validation else fused
        elif self.has_heads:
            outputs, head_outputs = self.net(inputs, with_modality_logits=True)
        else:
            outputs, head_outputs = self.net(inputs), {}
        loss = self.task.loss(outputs, batch["label"])
        if split == "train" and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step} (first "
                f"ids of the batch {batch['id'][:3]}); training stopped and the last good checkpoint is kept. "
                f"Lower optim.optimizer.lr, keep trainer.gradient_clip_val set, or train with trainer.precision="
                f"32-true; then resume with ckpt_path=last."
            )
        if split == "train" and head_outputs:
            loss = loss + self._head_loss(batch, head_outputs)
        preds, target = self.task.metric_inputs(outputs, batch["label"])
        # Weighted by batch size: the epoch loss is the mean over samples, whatever the batch split (a last
        # short batch, or the per-process batches of distributed training).
        # update(), not forward(): they are logged per epoch only, so no per-batch value is computed.
        self.losses[f"{split}_"].update(loss.detach(), weight=len(preds))
        self.metrics[f"{split}_"].update(preds, target)
        if self._first_log_this_epoch(split):
            self.log(
                f"{split}/loss",
                self.losses[f"{split}_"],
                on_step=False,
                on_epoch=True,
                prog_bar=True,
                batch_size=len(preds),
            )
            self.log_dict(
                self.metrics[f"{split}_"],
                on_step=False,
                on_epoch=True,
                prog_bar=split != "train",
                batch_size=len(preds),
            )
        if split in EVAL_SPLITS:
            self._log_heads(batch, head_outputs, split)
        return loss, preds, target

    def _head_loss(self, batch: dict[str, Any], head_outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The heads' task losses on the samples holding their modality, weighted by head_weight (each head
        sees its modality's encoder only); also the OGM-GE scores of this batch."""
        total = next(iter(head_outputs.values())).new_zeros(())
        self._ogm_scores = {}
        for m, logits in head_outputs.items():
            present = batch[m]["present"]
            if not present.any():
                total = total + logits.sum() * 0.0  # every head gets a gradient (DDP)
                continue
            target = batch["label"][present]
            # Mean over the batch (absent samples add 0), not over the present ones: every sample weighs the
            # same whatever the batch split, so distributed training computes the single-process loss.
            total = total + self.task.loss(logits[present], target) * (present.sum() / present.numel())
            self._ogm_scores[m] = float(self.task.confidence(logits[present].detach(), target).mean())
        return self.head_weight * total

    def _log_heads(self, batch: dict[str, Any], head_outputs: dict[str, torch.Tensor], split: str) -> None:
        for m, logits in head_outputs.items():
            present = batch[m]["present"]
            if not present.any():
                continue
            metric = self.head_metrics[f"{split}_{m}"]
            metric.update(*self.task.metric_inputs(logits[present], batch["label"][present]))
            if self._first_log_this_epoch(f"{split}_{m}"):
                self.log_dict(metric, on_step=False, on_epoch=True, batch_size=int(present.sum()))

    def _log_views(self, batch: dict[str, Any], views: dict[str, torch.Tensor], split: str) -> None:
        """The fused head's and the vote's metrics over every record, whichever of them the split scores."""
        for view, outputs in views.items():
            metric = self.view_metrics[f"{split}_{view}"]
            metric.update(*self.task.metric_inputs(outputs, batch["label"]))
            if self._first_log_this_epoch(f"{split}_{view}"):
                self.log_dict(metric, on_step=False, on_epoch=True, batch_size=len(batch["label"]))

    def _first_log_this_epoch(self, key: str) -> bool:
        """Whether ``key``'s Metric objects are still to be logged this epoch (and now count as logged). Lightning
        keeps a logged Metric and computes it at the epoch's end from the updates made meanwhile, so one log per
        epoch gives the same figures; each log walks the metric's state (a log every step cost about 2% of a CPU
        fit)."""
        if key in self._logged:
            return False
        self._logged.add(key)
        return True

    def _new_epoch(self, split: str) -> None:
        self._logged = {key for key in self._logged if key != split and not key.startswith(f"{split}_")}

    def on_train_epoch_start(self) -> None:
        self._new_epoch("train")

    def on_validation_epoch_start(self) -> None:
        self._new_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._new_epoch("test")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.augment is not None:
            batch = self.augment(batch)
        return self._step(modality_dropout(batch, self.dropout_rates), "train")[0]

    def on_after_backward(self) -> None:
        """OGM-GE: scale down the gradients of the modality that runs ahead (fusion/training/balance.py)."""
        if not self.ogm.get("enabled") or len(self._ogm_scores) < 2:
            return
        end = self.ogm.get("end_epoch")
        if self.current_epoch < int(self.ogm.get("start_epoch", 0)) or (end is not None and self.current_epoch > end):
            return
        coefficients = ogm_coefficients(self._ogm_scores, float(self.ogm.get("alpha", 0.1)))
        modulate_gradients(self.net.encoders, coefficients, noise=bool(self.ogm.get("noise", True)))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def _monitored(self) -> Metric:
        name = self.task.monitor
        return self.losses["val_"] if name == "val/loss" else self.metrics["val_"][name]

    def on_validation_epoch_end(self) -> None:
        loss = self.losses["val_"].compute()
        if not torch.isfinite(loss):  # raised before ModelCheckpoint saves these weights
            raise NonFiniteLossError(
                f"validation loss is {loss.item()} after epoch {self.current_epoch}: the weights are broken; "
                f"training stopped and the last good checkpoint is kept. Lower optim.optimizer.lr or keep "
                f"trainer.gradient_clip_val set, then resume with ckpt_path=last."
            )
        self.monitor_best(self._monitored().compute())
        self.log(self.task.best_key, self.monitor_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        _, preds, target = self._step(batch, "test")
        self.test_report_metrics.update(preds, target)

    def on_test_epoch_end(self) -> None:
        self.test_report = {k: v.cpu() for k, v in self.test_report_metrics.compute().items()}
        self.test_report_metrics.reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return {
            "id": batch["id"],
            "label": batch["label"],
            "scores": self.task.scores(self(batch)),
            "held": held_modalities(batch, self.modalities),
        }

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self._param_groups())
        if optimizer.defaults.get("fused") and self._mixed_precision_clipping():
            # Lightning refuses to clip the gradients of a fused optimizer under mixed precision (it unscales them
            # inside its step), so there the same optimizer runs unfused.
            log.info("optim.optimizer.fused: off under %s precision with gradient clipping", self.trainer.precision)
            # New groups: the optimizer filled the first ones with its defaults, fused=True among them.
            optimizer = self.optimizer_factory(params=self._param_groups(), fused=False)
        for group in optimizer.param_groups:  # before the scheduler, which takes each group's lr as its base
            group["lr"] *= group["lr_scale"]
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        if self.scheduler_interval == "step":
            scheduler = self.scheduler_factory(optimizer, total_steps=self.trainer.estimated_stepping_batches)
        else:
            scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def _param_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters as optimiser groups: "base" at the optimiser's rate, and "<modality>_encoder" for
        each encoder ``lr_scale`` scales (its factor as the group's ``lr_scale``). The names label the learning-rate
        metrics (lr-AdamW/base); parameters are matched by identity, so a compiled net keeps its groups."""
        group_of = {id(p): m for m in self.lr_scale for p in self.net.encoders[m].parameters()}
        groups = {"base": {"name": "base", "params": [], "lr_scale": 1.0}}
        groups.update({m: {"name": f"{m}_encoder", "params": [], "lr_scale": f} for m, f in self.lr_scale.items()})
        for p in self.parameters():
            if p.requires_grad:
                groups[group_of.get(id(p), "base")]["params"].append(p)
        return [group for group in groups.values() if group["params"]]

    def _mixed_precision_clipping(self) -> bool:
        """Whether the attached trainer clips gradients under mixed precision (16-mixed, bf16-mixed)."""
        trainer = self._trainer
        return trainer is not None and "mixed" in str(trainer.precision) and bool(trainer.gradient_clip_val)


def dropout_rates(rate: float | Mapping[str, float], modalities: list[str]) -> dict[str, float]:
    """Per-modality modality-dropout rates from one rate for all or a {modality: rate} mapping."""
    if isinstance(rate, Mapping):
        _check_modalities_named(rate, "model.modality_dropout")
        rates = {m: float(rate.get(m, 0.0)) for m in modalities}
    else:
        rates = {m: float(rate) for m in modalities}
    bad = {m: r for m, r in rates.items() if not 0.0 <= r < 1.0}
    if bad:
        raise ValueError(f"model.modality_dropout must be in [0, 1) per modality, got {bad}")
    return rates


def encoder_lr_scales(scales: Mapping[str, float], modalities: list[str]) -> dict[str, float]:
    """``optim.lr_scale`` checked: known modalities, positive finite factors; those of this run's modalities that
    are not 1 (a modality the run leaves out has no encoder to scale)."""
    _check_modalities_named(scales, "optim.lr_scale")
    bad = {
        m: f
        for m, f in scales.items()
        if isinstance(f, bool) or not (isinstance(f, (int, float)) and math.isfinite(f) and f > 0)
    }
    if bad:
        raise ValueError(f"optim.lr_scale factors must be positive numbers, got {bad}; e.g. optim.lr_scale.image=2.0")
    return {m: float(scales[m]) for m in modalities if m in scales and scales[m] != 1}


def _check_modalities_named(per_modality: Mapping[str, Any], option: str) -> None:
    """A per-modality option's keys must be modalities: a misspelt one would otherwise be ignored."""
    unknown = sorted(set(per_modality) - set(MODALITIES))
    if unknown:
        raise ValueError(f"{option} names unknown modalities {unknown}; use {list(MODALITIES)}")
