"""What each modality's perturbations act on, and back to the item the model reads, through the preprocessing
code itself: the preprocessed image tensor; the decoded waveform and the raw text, re-read via the manifest
and featurised with the processors' fitted state (log-mel mean/std in meta.json, text/tokenizer.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

from omegaconf import DictConfig
from torch.utils.data import Dataset

from fusion.data.datamodule import MultimodalDataset
from fusion.data.manifest import Record, RecordError, load_manifest, resolve_file
from fusion.preprocess.common import restored_processor
from fusion.robustness.perturbations import Perturbation, noise_rng

STAGE = "robustness"


class ModalityInput(Protocol):
    """`raw`: the clean input a perturbation acts on; `item`: a perturbed input as the shards store it
    (None where nothing of it is left, e.g. text without a token: the modality then counts as missing)."""

    def raw(self, record_id: str, item: dict) -> Any: ...
    def item(self, raw: Any) -> dict | None: ...


class ImageInput:
    """The preprocessed uint8 [C, H, W] image, perturbed at the size the model sees."""

    def raw(self, record_id: str, item: dict) -> Any:
        return item["image"]

    def item(self, raw: Any) -> dict | None:
        return {"image": raw}


class _ManifestInput:
    """Re-reads a record's raw file through the manifest (the test split's records) and its processor."""

    def __init__(self, processor: Any, records: dict[str, Record]):
        self.processor, self.records = processor, records

    def record(self, record_id: str) -> Record:
        if record_id not in self.records:
            raise KeyError(
                f"record {record_id!r} of the processed data is not in the manifest at "
                f"{self.processor.root}; the processed data is stale: re-run `dvc repro`."
            )
        return self.records[record_id]

    def _read_error(self, record_id: str, exc: RecordError) -> RuntimeError:
        return RuntimeError(
            f"record {record_id!r}: {exc}; it was preprocessed, so the raw file changed since: re-run `dvc repro`."
        )


class AudioInput(_ManifestInput):
    """The decoded mono waveform at the processing rate; back to the standardised log-mel."""

    def raw(self, record_id: str, item: dict) -> Any:
        record = self.record(record_id)
        try:
            return self.processor.load_waveform(resolve_file(self.processor.root, record.audio, self.processor.folder))
        except RecordError as exc:
            raise self._read_error(record_id, exc) from None

    def item(self, raw: Any) -> dict | None:
        return self.processor.features(raw)


class TextInput(_ManifestInput):
    """The raw text (inline or file); back to token ids with the fitted tokenizer."""

    def raw(self, record_id: str, item: dict) -> Any:
        try:
            return self.processor.read(self.record(record_id))
        except RecordError as exc:
            raise self._read_error(record_id, exc) from None

    def item(self, raw: Any) -> dict | None:
        try:
            return self.processor.encode(raw)
        except RecordError:  # nothing left to tokenize
            return None


def build_inputs(cfg: DictConfig, modalities: Sequence[str]) -> dict[str, ModalityInput]:
    """The inputs of `modalities`; the manifest is read only for text or audio."""
    inputs: dict[str, ModalityInput] = {}
    if "image" in modalities:
        inputs["image"] = ImageInput()
    if not {"text", "audio"} & set(modalities):
        return inputs
    data, processed = cfg.data, Path(cfg.data.processed_dir)
    manifest = load_manifest(data.root, data.manifest, data.split, stage=STAGE, task=cfg.task.name)
    records = {r.id: r for r in manifest.records if r.split == "test"}
    for modality, kind in (("text", TextInput), ("audio", AudioInput)):
        if modality in modalities:
            processor = restored_processor(
                modality, cfg.preprocess[modality], processed / modality, manifest.root, data.dirs[modality]
            )
            inputs[modality] = kind(processor, records)
    return inputs


class PerturbedDataset(Dataset):
    """A split with named perturbations applied at one level, in order, to every present item of their
    modality; each seeded per (record, perturbation name, level, seed). Level 0 yields the split unchanged."""

    def __init__(
        self,
        base: MultimodalDataset,
        inputs: dict[str, ModalityInput],
        steps: Sequence[tuple[str, Perturbation]],
        level: float,
        seed: int,
    ):
        self.base, self.inputs, self.level, self.seed = base, inputs, float(level), int(seed)
        self.steps: dict[str, list[tuple[str, Perturbation]]] = {}
        for name, perturbation in steps:
            self.steps.setdefault(perturbation.modality, []).append((name, perturbation))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        sample = self.base[index]
        if self.level == 0.0:
            return sample
        for modality, steps in self.steps.items():
            if sample[modality] is None:  # missing stays missing
                continue
            source = self.inputs[modality]
            raw = source.raw(sample["id"], sample[modality])
            for name, perturbation in steps:
                raw = perturbation(raw, self.level, noise_rng(self.seed, sample["id"], name, self.level))
            sample[modality] = source.item(raw)
        return sample
