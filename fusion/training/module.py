"""LightningModule for multimodal classification: cross-entropy, accuracy and macro-F1 per split."""

from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

SPLITS = ("train", "val", "test")


class FusionClassifierModule(pl.LightningModule):
    """Trains any fusion network `net(inputs) -> logits`; logs <split>/loss, /acc, /f1_macro."""

    def __init__(self, net: nn.Module, num_classes: int, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.net = net
        self.modalities = list(net.encoders.keys())
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        metrics = MetricCollection({
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        })
        # ModuleDict keys cannot be "train" (nn.Module.train), hence the "<split>_" keys.
        self.metrics = nn.ModuleDict({f"{split}_": metrics.clone(prefix=f"{split}/") for split in SPLITS})
        self.losses = nn.ModuleDict({f"{split}_": MeanMetric() for split in SPLITS})
        self.val_acc_best = MaxMetric()
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.test_f1_per_class = MulticlassF1Score(num_classes, average=None)
        self.test_report: dict[str, torch.Tensor] = {}

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.net({m: batch[m] for m in self.modalities})

    def _step(self, batch: dict[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)
        loss = self.criterion(logits, batch["label"])
        preds = logits.argmax(dim=-1)
        self.losses[f"{split}_"](loss)
        self.metrics[f"{split}_"](preds, batch["label"])
        self.log(f"{split}/loss", self.losses[f"{split}_"], on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(preds))
        self.log_dict(self.metrics[f"{split}_"], on_step=False, on_epoch=True, prog_bar=split != "train",
                      batch_size=len(preds))
        return loss, preds

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.metrics["val_"]["val/acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        _, preds = self._step(batch, "test")
        self.test_confusion(preds, batch["label"])
        self.test_f1_per_class(preds, batch["label"])

    def on_test_epoch_end(self) -> None:
        self.test_report = {"confusion": self.test_confusion.compute().cpu(),
                            "f1_per_class": self.test_f1_per_class.compute().cpu()}
        self.test_confusion.reset()
        self.test_f1_per_class.reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return {"id": batch["id"], "label": batch["label"], "probs": torch.softmax(self(batch), dim=-1)}

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                                         "interval": "epoch"}}

