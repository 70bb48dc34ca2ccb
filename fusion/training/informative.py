"""Does each modality tell the label? After testing, each modality head of the best checkpoint is scored on the
validation split against chance, and a modality whose head is no better is named with the fix.

A modality that carries nothing about the label is not free: it costs its encoder's training and serving time (the
audio encoder is most of a training step), and the network can memorise its training records and lean on them
(avnoisy with its recordings shuffled between records tested 3.2 points lower tri-modal than trained on text and
image alone; on avunrelated, whose recordings say a random digit, the cost was within the seeds' spread;
docs/results.md). Its head, trained on it alone, shows it: on records it never trained on it is right about as
often as answers drawn at random.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from pytorch_lightning.utilities import move_data_to_device
from torch import Tensor

from fusion.tracking.stats import binomial_upper_tail

TAG = "uninformative_modalities"  # MLflow tag: the modalities that failed the check, joined by "+"


@dataclass(frozen=True)
class HeadCheck:
    """One modality head's validation outcome: right on ``correct`` of the ``records`` that hold the modality, where
    answers independent of the labels would be right at the rate ``chance``; ``p_value`` = P(at least ``correct``
    right by chance)."""

    modality: str
    correct: int
    records: int
    chance: float
    p_value: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.records if self.records else 0.0

    def informative(self, alpha: float) -> bool:
        """Better than chance at level ``alpha``; a modality no validation record holds cannot be judged, so it
        passes."""
        return self.records == 0 or self.p_value < alpha


def chance_agreement(predictions: Tensor, labels: Tensor, num_classes: int) -> float:
    """The accuracy of answers given with the predictions' class frequencies but independently of the labels:
    sum over classes of P(prediction = c) * P(label = c) (the expected agreement of Cohen's kappa). A head that
    always answers the majority class gets that class's share; one that learnt nothing else gets no more."""
    if predictions.numel() == 0:
        return 0.0
    predicted = torch.bincount(predictions, minlength=num_classes).double() / predictions.numel()
    actual = torch.bincount(labels, minlength=num_classes).double() / labels.numel()
    return float((predicted * actual).sum())


def check_head(modality: str, predictions: Tensor, labels: Tensor, num_classes: int) -> HeadCheck:
    """A head's answers and the labels over the records holding its modality -> its :class:`HeadCheck`
    (one-sided binomial test of its correct answers against :func:`chance_agreement`)."""
    correct, records = int((predictions == labels).sum()), int(labels.numel())
    chance = chance_agreement(predictions, labels, num_classes)
    return HeadCheck(modality, correct, records, chance, binomial_upper_tail(correct, records, chance))


@torch.no_grad()
def head_answers(net, loader, device: torch.device, precision=None) -> dict[str, tuple[Tensor, Tensor]]:
    """{modality: (each head's answers, the labels)} over the loader's records that hold the modality; with
    ``precision`` (the trainer's precision plugin) the batches and the forward pass are cast as in testing."""
    was_training = net.training
    net.eval()
    answers: dict[str, list[Tensor]] = {m: [] for m in net.modalities}
    labels: dict[str, list[Tensor]] = {m: [] for m in net.modalities}
    try:
        for batch in loader:
            batch = move_data_to_device(batch, device)
            if precision is not None:
                batch = precision.convert_input(batch)
            with precision.forward_context() if precision is not None else nullcontext():
                _, head_logits = net({m: batch[m] for m in net.modalities}, with_modality_logits=True)
            for m, logits in head_logits.items():
                present = batch[m]["present"]
                answers[m].append(logits[present].argmax(dim=-1).cpu())
                labels[m].append(batch["label"][present].cpu())
    finally:
        net.train(was_training)
    empty = torch.zeros(0, dtype=torch.long)
    return {m: (torch.cat(answers[m] or [empty]), torch.cat(labels[m] or [empty])) for m in net.modalities}


def warning(failed: list[HeadCheck], modalities: list[str], alpha: float) -> str:
    """What a run prints when some modality's head is no better than chance, with the fix."""
    lines = [
        f"[modality check] on the validation split, the best checkpoint's per-modality heads find no sign of the "
        f"label in {' and '.join(c.modality for c in failed)} (one-sided binomial test against chance, p >= {alpha:g}):"
    ]
    for c in failed:
        lines.append(
            f"  {c.modality}: right on {c.correct} of {c.records} records that hold it ({c.accuracy:.3f}), where "
            f"answers independent of the label would be right on {c.chance:.3f} (p = {c.p_value:.2g})"
        )
    rest = [m for m in modalities if m not in {c.modality for c in failed}]
    fix = (
        f"compare with a run without it: modality={'+'.join(rest)} (conf/modality/ has every combination)"
        if rest
        else "check that the labels and the files belong together (data.root's manifest)"
    )
    lines.append(
        "  A modality that tells nothing about the label costs training time and can cost accuracy: the network "
        f"can memorise its training records (docs/results.md, 'An uninformative modality'). {fix[0].upper()}{fix[1:]}."
    )
    return "\n".join(lines)


def check_modalities(trainer, module, datamodule, logger, alpha: float) -> dict[str, float]:
    """Score each modality head of the module's current (best) weights on the validation split; log
    ``val/head_chance_<m>`` and ``val/head_pvalue_<m>`` (and the tag ``uninformative_modalities`` when some fail),
    print the warning, and return the logged metrics. Without per-modality heads or for another task than multiclass
    there is nothing to check; under several processes (each would score its share of the records) it says so."""
    net = module.net
    if getattr(net, "modality_heads", None) is None or module.task.name != "multiclass":
        return {}
    if trainer.world_size != 1:
        print("[modality check] skipped: it scores every validation record in one process (trainer.devices=1)")
        return {}
    answers = head_answers(net, datamodule.loader("val"), module.device, trainer.precision_plugin)
    num_classes = module.task.num_outputs
    checks = [check_head(m, *answers[m], num_classes) for m in net.modalities]
    metrics: dict[str, float] = {}
    for c in checks:
        metrics[f"val/head_chance_{c.modality}"] = c.chance
        metrics[f"val/head_pvalue_{c.modality}"] = c.p_value
    logger.log_metrics(metrics)
    failed = [c for c in checks if not c.informative(alpha)]
    if failed:
        logger.experiment.set_tag(logger.run_id, TAG, "+".join(c.modality for c in failed))
        print(warning(failed, list(net.modalities), alpha), flush=True)
    return metrics
