"""The trained model's test metric on perturbed inputs: one curve over the noise levels per perturbation of the
run's modalities (and `all` of them at once), and the metric with each modality removed."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset
from torchmetrics import MeanMetric, Metric
from tqdm.auto import tqdm

from fusion.data.ablation import WithoutModalities
from fusion.data.datamodule import MultimodalDataModule
from fusion.robustness.inputs import ModalityInput, PerturbedDataset
from fusion.robustness.perturbations import Perturbation, build_perturbation
from fusion.robustness.results import Curves
from fusion.training.module import FusionModule

ALL = "all"  # the curve with every perturbation of robustness.all_at_once applied together
MIXED_PRECISION = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}

Steps = list[tuple[str, Perturbation]]


def check_levels(levels: Sequence[float]) -> list[float]:
    """robustness.levels as floats: increasing from 0.0 (the clean input, where every curve starts) to <= 1.0."""
    levels = [float(level) for level in levels]
    if (
        len(levels) < 2
        or levels[0] != 0.0
        or levels[-1] > 1.0
        or any(b <= a for a, b in zip(levels, levels[1:], strict=False))
    ):
        raise ValueError(
            f"robustness.levels={levels}: need at least two increasing levels from 0.0 (the clean "
            f"input) up to at most 1.0, e.g. [0.0, 0.5, 1.0]"
        )
    return levels


def curve_names(robustness: DictConfig) -> list[str]:
    """Every curve the settings can give, whichever modalities a run uses: each perturbation, then `all`."""
    return [*robustness.perturbations, ALL]


def plan_curves(robustness: DictConfig, modalities: Sequence[str]) -> dict[str, Steps]:
    """curve name → the perturbations applied for it: each configured one of the run's modalities, then
    `all` (robustness.all_at_once restricted to those modalities) when it holds any."""
    built = {name: build_perturbation(name, settings) for name, settings in robustness.perturbations.items()}
    if ALL in built:
        raise ValueError(f"robustness.perturbations.{ALL}: the name is taken by the all-at-once curve; rename it")
    unknown = [name for name in robustness.all_at_once if name not in built]
    if unknown:
        raise ValueError(f"robustness.all_at_once names {unknown}, not in robustness.perturbations ({list(built)})")
    used = {name: p for name, p in built.items() if p.modality in modalities}
    plan = {name: [(name, p)] for name, p in used.items()}
    together = [(name, used[name]) for name in robustness.all_at_once if name in used]
    if together:
        plan[ALL] = together
    return plan


class ModelMetric:
    """task.metric of the module (e.g. test/acc) over a DataLoader, in eval mode on `device`."""

    def __init__(self, module: FusionModule, device: torch.device, precision: str):
        self.module, self.device = module.eval().to(device), device
        self.task = module.task
        self.name = self.task.metric.split("/", 1)[1]
        dtype = MIXED_PRECISION.get(str(precision))
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext

    def _metric(self) -> Metric:
        return (MeanMetric() if self.name == "loss" else self.task.metrics()[self.name]).to(self.device)

    @torch.inference_mode()
    def __call__(self, loader: DataLoader) -> float:
        metric = self._metric()
        for batch in loader:
            batch = _to(batch, self.device)
            with self.autocast():
                outputs = self.module(batch)
            outputs = outputs.float()
            if self.name == "loss":
                metric.update(self.task.loss(outputs, batch["label"]), weight=len(batch["label"]))
            else:
                metric.update(*self.task.metric_inputs(outputs, batch["label"]))
        return float(metric.compute())


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {key: _to(value, device) for key, value in batch.items()}
    return batch


def device_for(accelerator: str) -> torch.device:
    """The trainer's accelerator (trainer.accelerator) as a torch device; CPU where no GPU is present."""
    wants_gpu = str(accelerator) in ("gpu", "cuda", "auto")
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


def measure(
    score: ModelMetric,
    datamodule: MultimodalDataModule,
    inputs: dict[str, ModalityInput],
    plan: dict[str, Steps],
    levels: Sequence[float],
    seed: int,
    batch_size: int,
    num_workers: int,
) -> Curves:
    """Every evaluation under one progress bar: the clean test split once (level 0 of every curve), each
    modality removed (multi-modal runs), then each curve at each level above 0."""
    test = datamodule.dataset("test")

    def loader(dataset: Dataset, collate: Callable = datamodule.collate) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)

    removable = datamodule.modalities if len(datamodule.modalities) > 1 else []
    jobs: list[tuple[str, Any, float | None, DataLoader]] = [("clean", None, 0.0, loader(test))]
    jobs += [(f"without {m}", m, None, loader(test, WithoutModalities(datamodule.collate, [m]))) for m in removable]
    jobs += [
        (f"{name} @ {level:g}", name, level, loader(PerturbedDataset(test, inputs, steps, level, seed)))
        for name, steps in plan.items()
        for level in levels[1:]
    ]
    curves: dict[str, list[float]] = {name: [] for name in plan}
    without: dict[str, float] = {}
    clean = float("nan")
    progress = tqdm(jobs, desc="robustness", unit="eval", dynamic_ncols=True)
    for label, key, level, data in progress:
        progress.set_postfix_str(label)
        value = score(data)
        if key is None:
            clean = value
            for values in curves.values():
                values.append(value)
        elif level is None:
            without[key] = value
        else:
            curves[key].append(value)
    return Curves(clean, list(levels), curves, without, len(test))
