"""A trained model with everything its inputs need, in one folder: the model bundle.

Written next to every tested run and logged inside its MLflow model (fusion/serving/pyfunc.py), so a run can
be explained, served or used for prediction after its checkpoint folder and processed data are gone:

    config.yaml                 the run's resolved config (model, fusion, task, preprocessing settings)
    weights.pt                  the network's state dict (torch.save, read back with weights_only=True)
    preprocess/<m>/meta.json    each modality's preprocessing metadata (labels, image size, audio rate,
                                log-mel statistics, vocabulary size)
    preprocess/text/tokenizer.json   the fitted tokenizer (text runs)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from fusion.data.collate import MultimodalCollate
from fusion.data.datamodule import LABEL_META
from fusion.models.builder import build_model
from fusion.models.model import MultimodalClassifier
from fusion.preprocess.common import Processor, restored_processor
from fusion.tasks.labels import LabelSpec, label_spec
from fusion.tasks.objectives import Task, build_task

CONFIG, WEIGHTS, PREPROCESS = "config.yaml", "weights.pt", "preprocess"
# The fitted preprocessing state of a processed modality folder that inference needs.
STATE_FILES = ("meta.json", "tokenizer.json")


class BundleError(RuntimeError):
    """A folder is not a usable model bundle; the message names the file and the fix."""


def save_bundle(
    folder: str | Path, cfg: DictConfig, net: torch.nn.Module | Mapping[str, Tensor], processed_dir: str | Path
) -> Path:
    """Write the bundle of ``net`` (a network or its state dict, trained with ``cfg`` on ``processed_dir``) into
    ``folder`` (replaced)."""
    state = net if isinstance(net, Mapping) else net.state_dict()
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / PREPROCESS).mkdir(parents=True)
    (folder / CONFIG).write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    torch.save({k: v.detach().cpu() for k, v in state.items()}, folder / WEIGHTS)
    for modality in cfg.modality.names:
        source, target = Path(processed_dir) / modality, folder / PREPROCESS / modality
        target.mkdir()
        for name in STATE_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, target / name)
    return folder


class ModelBundle:
    """A loaded bundle: the network in eval mode on the CPU, its task and labels, and the preprocessing."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        missing = [name for name in (CONFIG, WEIGHTS, PREPROCESS) if not (self.folder / name).exists()]
        if missing:
            raise BundleError(
                f"{self.folder} is not a model bundle (missing {', '.join(missing)}); point at the "
                f"'bundle' folder of a logged MLflow model (runs:/<run id>/model) or of a run folder."
            )
        self.cfg: DictConfig = OmegaConf.create((self.folder / CONFIG).read_text(encoding="utf-8"))
        self.modalities: list[str] = list(self.cfg.modality.names)
        self.metas: dict[str, dict] = {m: self._meta(m) for m in self.modalities}
        info = {key: self.metas[self.modalities[0]].get(key) for key in LABEL_META}
        self.labels: LabelSpec = label_spec(info["task"])(info)
        self.task: Task = build_task(self.cfg.task, self.labels)
        self.net: MultimodalClassifier = build_model(
            self.cfg.model,
            self.cfg.fusion,
            self.modalities,
            self.metas,
            self.labels.num_outputs,
            multiclass=self.cfg.task.name == "multiclass",
        )
        state = torch.load(self.folder / WEIGHTS, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net.eval()
        self.collate = MultimodalCollate(self.metas, label_dtype=getattr(torch, self.labels.dtype))

    def _meta(self, modality: str) -> dict[str, Any]:
        path = self.folder / PREPROCESS / modality / "meta.json"
        if not path.is_file():
            raise BundleError(
                f"{path} is missing: the bundle was written without the {modality} preprocessing "
                f"metadata; log the model again from its run (python -m fusion.explain ... or evaluate)."
            )
        return json.loads(path.read_text(encoding="utf-8"))

    @property
    def classes(self) -> list[str]:
        """Class (or label) names in output order; empty for regression."""
        return list(self.labels.classes)

    @property
    def output_names(self) -> list[str]:
        """One name per model output: the class names, or ``value`` for regression."""
        return self.classes or ["value"]

    def processor(
        self, modality: str, root: str | Path = ".", folder: str = ".", overrides: Mapping[str, Any] | None = None
    ) -> Processor:
        """The modality's preprocessing with its fitted state, reading raw files under ``root``/``folder``;
        ``overrides`` replace settings of its ``preprocess.<modality>`` block (serving's own guards)."""
        cfg = OmegaConf.merge(self.cfg.preprocess[modality], overrides or {})
        return restored_processor(modality, cfg, self.folder / PREPROCESS / modality, root, folder)

    def batch(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Samples ``{"id", <modality>: item or None}`` (items as the preprocessing makes them) -> a model batch."""
        return self.collate([{"label": self.labels.placeholder, **s} for s in samples])

    @torch.no_grad()
    def scores(self, batch: dict[str, Any]) -> Tensor:
        """The task's scores of a batch: class probabilities, label probabilities or values [B, outputs]."""
        return self.task.scores(self.net({m: batch[m] for m in self.modalities})).float()
