"""The raw dataset folder as arrays for the baselines, decoded here, independently of the project's stages:
images with Pillow (grayscale, fixed size), audio with soundfile (mono, resampled, log-mel of fixed length),
texts as strings. A missing or undecodable modality is zeros with its `present` flag False.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from PIL import Image
from tqdm import tqdm

MODALITIES = ("text", "image", "audio")
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.jsonl"
IMAGE_SIZE = 28  # pixels per side (as MNIST / AV-MNIST)
SAMPLE_RATE = 16000
AUDIO_SECONDS = 1.5  # clips are cropped or zero-padded to this length
N_FFT, HOP, N_MELS = 512, 250, 64
LOG_EPS = 1e-6


@dataclass
class RawDataset:
    """Every record of one dataset: labels (class indices), splits, and each modality with its presence flags."""

    root: Path
    ids: list[str]
    classes: list[str]
    labels: np.ndarray  # [N] int
    splits: np.ndarray  # [N] str
    texts: list[str]  # "" where missing
    images: np.ndarray  # [N, 1, IMAGE_SIZE, IMAGE_SIZE] float32 in [0, 1]
    audio: np.ndarray  # [N, 1, N_MELS, frames] float32 log-mel
    present: dict[str, np.ndarray]  # modality -> [N] bool
    decode_errors: dict[str, int] = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        """The modalities some record holds (a dataset of one's own may lack one altogether)."""
        return [m for m in MODALITIES if self.present[m].any()]

    def split(self, name: str) -> np.ndarray:
        """Indices of the records of split `name`."""
        return np.flatnonzero(self.splits == name)


def read_manifest(root: Path) -> list[dict]:
    """The manifest's records; each must carry a split (the benchmark datasets write one)."""
    path = root / MANIFEST
    if not path.is_file():
        raise SystemExit(
            f"error: {path} not found; build the dataset first: python -m benchmarks.accuracy build <name> --out {root}"
        )
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    unsplit = [r["id"] for r in records if r.get("split") not in SPLITS]
    if unsplit:
        raise SystemExit(
            f"error: {path}: {len(unsplit)} records have no split (e.g. {unsplit[0]}); the baselines "
            f"need an explicit train/val/test split per record, as the benchmark builders write"
        )
    return records


def load(root: str | Path, progress: bool = True) -> RawDataset:
    """Decode every record of the dataset at `root`."""
    root = Path(root)
    records = read_manifest(root)
    classes = sorted({r["label"] for r in records if r["split"] == "train"})
    known = [r for r in records if r["label"] in classes]
    n = len(known)
    frames = _mel(torch.zeros(int(SAMPLE_RATE * AUDIO_SECONDS))).shape[-1]
    data = RawDataset(
        root=root,
        ids=[r["id"] for r in known],
        classes=classes,
        labels=np.array([classes.index(r["label"]) for r in known]),
        splits=np.array([r["split"] for r in known]),
        texts=[""] * n,
        images=np.zeros((n, 1, IMAGE_SIZE, IMAGE_SIZE), np.float32),
        audio=np.zeros((n, 1, N_MELS, frames), np.float32),
        present={m: np.zeros(n, bool) for m in MODALITIES},
        decode_errors={m: 0 for m in MODALITIES},
    )
    arrays = {"image": data.images, "audio": data.audio}
    for i, record in enumerate(tqdm(known, desc=f"decode {root.name}", unit="record", disable=not progress)):
        for modality, decode in DECODERS.items():
            try:
                value = decode(root, record)
            except (OSError, ValueError, RuntimeError, sf.LibsndfileError):
                data.decode_errors[modality] += 1
                continue
            if value is None:
                continue
            data.present[modality][i] = True
            if modality == "text":
                data.texts[i] = value
            else:
                arrays[modality][i, 0] = value
    return data


def decode_text(root: Path, record: dict) -> str | None:
    if record.get("text") is not None:
        return record["text"]
    if record.get("text_path") is not None:
        return (root / record["text_path"]).read_text(encoding="utf-8")
    return None


def decode_image(root: Path, record: dict) -> np.ndarray | None:
    """Grayscale, resized to IMAGE_SIZE², in [0, 1]."""
    if record.get("image") is None:
        return None
    with Image.open(root / record["image"]) as image:
        grey = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(grey, np.float32) / 255.0


def decode_audio(root: Path, record: dict) -> np.ndarray | None:
    """Mono, resampled to SAMPLE_RATE, cropped or padded to AUDIO_SECONDS, log-mel [N_MELS, frames]."""
    if record.get("audio") is None:
        return None
    samples, rate = sf.read(root / record["audio"], dtype="float32", always_2d=True)
    wave = torch.from_numpy(samples.mean(axis=1))
    if rate != SAMPLE_RATE:
        wave = torchaudio.functional.resample(wave, rate, SAMPLE_RATE)
    length = int(SAMPLE_RATE * AUDIO_SECONDS)
    wave = torch.nn.functional.pad(wave[:length], (0, max(0, length - wave.shape[0])))
    return _mel(wave).numpy()


_MEL = torchaudio.transforms.MelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)


def _mel(wave: torch.Tensor) -> torch.Tensor:
    return torch.log(_MEL(wave) + LOG_EPS)


DECODERS = {"text": decode_text, "image": decode_image, "audio": decode_audio}
