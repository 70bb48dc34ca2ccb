"""Seeded input perturbations at a noise level l in [0, 1], after MultiBench (Liang et al., 2021): gaussian
noise, blur and occlusion on the preprocessed uint8 image; white noise at an SNR on the decoded waveform;
typos and word dropout on the raw text. Level 0 returns the clean input itself."""

from __future__ import annotations

import hashlib
import math
import string
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torchvision.transforms.v2.functional import gaussian_blur

UINT8_MAX = 255


def noise_rng(seed: int, record_id: str, perturbation: str, level: float) -> np.random.Generator:
    """The generator for one (record, perturbation, level): the same numbers on every run and in any
    DataLoader worker (Python's hash() is salted per process, so a sha256 of the key is used)."""
    key = f"{int(seed)}|{record_id}|{perturbation}|{float(level)!r}".encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:16], "little"))


class Perturbation:
    """One kind of noise for one modality; `apply` gets a level in (0, 1]."""

    kind: ClassVar[str]
    modality: ClassVar[str]

    def __call__(self, clean: Any, level: float, rng: np.random.Generator) -> Any:
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"noise level {level} is outside [0, 1] (robustness.levels)")
        return clean if level == 0.0 else self.apply(clean, level, rng)

    def apply(self, clean: Any, level: float, rng: np.random.Generator) -> Any:
        raise NotImplementedError


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    return image.round().clamp(0, UINT8_MAX).to(torch.uint8)


class GaussianNoise(Perturbation):
    """Additive gaussian noise on a uint8 image, std = level * max_std of the 0-255 range."""

    kind, modality = "gaussian_noise", "image"

    def __init__(self, max_std: float):
        self.max_std = float(max_std)

    def apply(self, clean: torch.Tensor, level: float, rng: np.random.Generator) -> torch.Tensor:
        noise = rng.normal(0.0, level * self.max_std * UINT8_MAX, size=tuple(clean.shape))
        return _to_uint8(clean.float() + torch.from_numpy(noise).float())


class GaussianBlur(Perturbation):
    """Gaussian blur of a uint8 image, sigma = level * max_sigma pixels, kernel radius ceil(truncate * sigma)."""

    kind, modality = "gaussian_blur", "image"

    def __init__(self, max_sigma: float, truncate: float):
        self.max_sigma, self.truncate = float(max_sigma), float(truncate)

    def apply(self, clean: torch.Tensor, level: float, rng: np.random.Generator) -> torch.Tensor:
        sigma = level * self.max_sigma
        radius = math.ceil(self.truncate * sigma)
        if radius == 0:
            return clean
        size = 2 * radius + 1
        return gaussian_blur(clean, kernel_size=[size, size], sigma=[sigma, sigma])


class Occlusion(Perturbation):
    """A square of colour `fill` at a random place, covering level * max_area of a [C, H, W] image."""

    kind, modality = "occlusion", "image"

    def __init__(self, max_area: float, fill: int):
        self.max_area, self.fill = float(max_area), int(fill)

    def apply(self, clean: torch.Tensor, level: float, rng: np.random.Generator) -> torch.Tensor:
        height, width = clean.shape[-2:]
        side = math.sqrt(level * self.max_area)
        box_h, box_w = round(side * height), round(side * width)
        top, left = int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1))
        occluded = clean.clone()
        occluded[..., top : top + box_h, left : left + box_w] = self.fill
        return occluded


class WhiteNoise(Perturbation):
    """White gaussian noise added to a waveform at SNR = max_snr_db - level * (max_snr_db - min_snr_db)."""

    kind, modality = "white_noise", "audio"

    def __init__(self, max_snr_db: float, min_snr_db: float):
        self.max_snr_db, self.min_snr_db = float(max_snr_db), float(min_snr_db)

    def snr_db(self, level: float) -> float:
        return self.max_snr_db - level * (self.max_snr_db - self.min_snr_db)

    def apply(self, clean: torch.Tensor, level: float, rng: np.random.Generator) -> torch.Tensor:
        power = float(clean.double().pow(2).mean())
        noise_power = power / 10.0 ** (self.snr_db(level) / 10.0)  # a silent clip stays silent
        noise = rng.normal(0.0, math.sqrt(noise_power), size=tuple(clean.shape))
        return clean + torch.from_numpy(noise).to(clean.dtype)


class Typos(Perturbation):
    """Each letter gets a typo of one of `kinds` with probability level * max_rate: `replace` (another
    letter, same case), `delete`, `double` (typed twice) or `swap` (with the next character)."""

    kind, modality = "typos", "text"
    KINDS = ("replace", "delete", "double", "swap")

    def __init__(self, max_rate: float, kinds: Sequence[str]):
        self.max_rate, self.kinds = float(max_rate), list(kinds)
        unknown = [k for k in self.kinds if k not in self.KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"typos kinds must be a non-empty list of {', '.join(self.KINDS)}; got {self.kinds}")

    def apply(self, clean: str, level: float, rng: np.random.Generator) -> str:
        rate = level * self.max_rate
        chars, out, i = list(clean), [], 0
        while i < len(chars):
            char = chars[i]
            if not (char.isalpha() and rng.random() < rate):
                out.append(char)
                i += 1
                continue
            kind = self.kinds[int(rng.integers(len(self.kinds)))]
            if kind == "replace":
                out.append(_other_letter(char, rng))
            elif kind == "double":
                out += [char, char]
            elif kind == "swap" and i + 1 < len(chars):
                out += [chars[i + 1], char]
                i += 1
            elif kind == "swap":  # the last character has nothing to swap with
                out.append(char)
            i += 1
        return "".join(out)


def _other_letter(char: str, rng: np.random.Generator) -> str:
    letters = [c for c in string.ascii_lowercase if c != char.lower()]
    letter = letters[int(rng.integers(len(letters)))]
    return letter.upper() if char.isupper() else letter


class WordDropout(Perturbation):
    """Each whitespace-separated word is dropped with probability level * max_rate; one word always stays."""

    kind, modality = "word_dropout", "text"

    def __init__(self, max_rate: float):
        self.max_rate = float(max_rate)

    def apply(self, clean: str, level: float, rng: np.random.Generator) -> str:
        words = clean.split()
        if not words:
            return clean
        keep = rng.random(len(words)) >= level * self.max_rate
        if not keep.any():
            keep[int(rng.integers(len(words)))] = True
        return " ".join(word for word, kept in zip(words, keep, strict=True) if kept)


KINDS: dict[str, type[Perturbation]] = {
    p.kind: p for p in (GaussianNoise, GaussianBlur, Occlusion, WhiteNoise, Typos, WordDropout)
}


def build_perturbation(name: str, settings: Mapping[str, Any]) -> Perturbation:
    """The perturbation of robustness.perturbations.<name>: its `kind` and that kind's knobs."""
    knobs = dict(settings)
    kind = knobs.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"robustness.perturbations.{name}.kind={kind!r}; use one of {', '.join(KINDS)}")
    try:
        return KINDS[kind](**knobs)
    except TypeError as exc:
        raise ValueError(f"robustness.perturbations.{name} ({kind}): {exc}") from None
