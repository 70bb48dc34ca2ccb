"""Audio: soundfile decode, mix to mono, torchaudio resample to one rate, log-mel spectrogram."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf
import torch
import torchaudio

from fusion.data.manifest import Record, RecordError, resolve_file


class AudioProcessor:
    """Decodes a record's audio file into a float16 log-mel spectrogram [n_mels, frames]."""

    modality = "audio"

    def __init__(self, cfg: Mapping[str, Any], root: Path, folder: str):
        self.cfg, self.root, self.folder = cfg, Path(root), folder
        self._mel: torchaudio.transforms.MelSpectrogram | None = None
        self.mean, self.std = 0.0, 1.0

    @property
    def rate(self) -> int:
        return int(self.cfg["sample_rate"])

    @property
    def max_samples(self) -> int:
        return int(round(float(self.cfg["max_seconds"]) * self.rate))

    @property
    def mel(self) -> torchaudio.transforms.MelSpectrogram:
        if self._mel is None:  # built lazily, once per worker process
            self._mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=self.rate,
                n_fft=int(self.cfg["n_fft"]),
                hop_length=int(self.cfg["hop_length"]),
                n_mels=int(self.cfg["n_mels"]),
                f_min=float(self.cfg["f_min"]),
                f_max=None if self.cfg["f_max"] is None else float(self.cfg["f_max"]),
            )
        return self._mel

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_mel": None}

    def fit(self, records: list[Record]) -> None:
        """Log-mel mean and std over (a seeded subset of) the training split, for standardisation."""
        rng = np.random.default_rng(int(self.cfg["norm_seed"]))
        count = min(len(records), int(self.cfg["norm_records"]))
        values = []
        for index in rng.choice(len(records), size=count, replace=False):
            try:
                values.append(self.log_mel(records[index]).flatten())
            except RecordError:
                continue  # rejected with its reason when the record itself is processed
        if values:
            stacked = torch.cat(values)
            self.mean, self.std = float(stacked.mean()), max(float(stacked.std()), 1e-6)

    def load_waveform(self, path: Path) -> torch.Tensor:
        """Mono float32 waveform at the target rate, cropped to max_seconds."""
        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
            raise RecordError(f"cannot decode audio: {exc}") from None
        if data.shape[0] == 0:
            raise RecordError("audio has zero samples")
        if not np.isfinite(data).all():
            raise RecordError("audio contains NaN or Inf samples")
        wave = torch.from_numpy(data.mean(axis=1))
        if rate != self.rate:
            wave = torchaudio.functional.resample(wave, orig_freq=rate, new_freq=self.rate)
        wave = wave[: self.max_samples]
        min_samples = int(self.cfg["n_fft"])  # shorter clips are zero-padded to one window
        if wave.numel() < min_samples:
            wave = torch.nn.functional.pad(wave, (0, min_samples - wave.numel()))
        return wave

    def log_mel(self, record: Record) -> torch.Tensor:
        wave = self.load_waveform(resolve_file(self.root, record.audio, self.folder))
        return torch.log(self.mel(wave) + float(self.cfg["log_eps"]))

    def process(self, record: Record) -> dict[str, torch.Tensor]:
        """Standardised log-mel, so that zero padding equals the training mean."""
        return {"mel": ((self.log_mel(record) - self.mean) / self.std).to(torch.float16)}

    def meta(self) -> dict[str, Any]:
        return {
            "n_mels": int(self.cfg["n_mels"]),
            "max_frames": self.max_samples // int(self.cfg["hop_length"]) + 1,
            "sample_rate": self.rate,
            "hop_length": int(self.cfg["hop_length"]),
            "log_mel_mean": self.mean,
            "log_mel_std": self.std,
        }

    def save(self, out_dir: Path) -> None:
        """No state beyond the parameters, which meta.json records."""
