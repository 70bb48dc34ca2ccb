"""Realistic audio damage and encoding, shared by the datasets: a spoken clip placed at a random offset, background
noise (white, pink, brown or mains hum) at a random SNR, clipping, a resample to one of five rates, sometimes
stereo, written as WAV or FLAC.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from benchmarks.accuracy.datasets.plan import pick

SAMPLE_RATES = (8000, 11025, 16000, 22050, 44100)
LEAD_SECONDS = (0.02, 0.30)  # silence before the speech
TRAIL_SECONDS = (0.02, 0.25)  # and after it
PEAK = (0.2, 0.9)  # speech peak level before noise
SNR_DB = (-5.0, 20.0)  # speech power / noise power
NOISE_KINDS = ("white", "pink", "brown", "hum")
HUM_HZ = (50.0, 60.0)  # mains frequency of the hum noise
HUM_HARMONICS = 6
HUM_HISS = 0.1  # white noise mixed into the hum, relative amplitude
CLIP_PROBABILITY = 0.20
CLIP_GAIN = (2.0, 8.0)  # gain before hard clipping at full scale
STEREO_PROBABILITY = 0.10
STEREO_GAIN = (0.6, 1.0)  # level of the second channel
FLAC_PROBABILITY = 0.40
SUBTYPE = "PCM_16"


@dataclass(frozen=True)
class AudioDamage:
    """How hard a dataset's recordings are hit: the range the SNR is drawn from and the share clipped."""

    snr_db: tuple[float, float] = SNR_DB
    clip_probability: float = CLIP_PROBABILITY


DEFAULT_DAMAGE = AudioDamage()


@dataclass(frozen=True)
class AudioFile:
    """An encoded clip: its bytes and extension, rate, channels, length and what was done to it."""

    data: bytes
    extension: str
    sample_rate: int
    channels: int
    seconds: float
    snr_db: float
    noise: str
    clipped: bool


def place(rng: np.random.Generator, speech: np.ndarray, rate: int) -> np.ndarray:
    """The speech with random silence before and after it, scaled to a random peak level."""
    lead = np.zeros(int(rng.uniform(*LEAD_SECONDS) * rate), np.float32)
    trail = np.zeros(int(rng.uniform(*TRAIL_SECONDS) * rate), np.float32)
    peak = float(np.max(np.abs(speech))) or 1.0
    return np.concatenate([lead, speech * (rng.uniform(*PEAK) / peak), trail]).astype(np.float32)


def coloured_noise(rng: np.random.Generator, kind: str, length: int, rate: int) -> np.ndarray:
    """Unit-power noise: white, pink (1/f power), brown (1/f²) or mains hum with its harmonics and some hiss."""
    if kind == "hum":
        t = np.arange(length) / rate
        base = pick(rng, HUM_HZ)
        phases = rng.uniform(0, 2 * np.pi, size=HUM_HARMONICS)
        weights = 1.0 / np.arange(1, HUM_HARMONICS + 1)
        noise = sum(
            w * np.sin(2 * np.pi * base * (k + 1) * t + p) for k, (w, p) in enumerate(zip(weights, phases, strict=True))
        )
        noise = noise + HUM_HISS * rng.standard_normal(length)
    else:
        white = rng.standard_normal(length)
        exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[kind]
        spectrum = np.fft.rfft(white)
        frequencies = np.fft.rfftfreq(length, 1.0 / rate)
        spectrum[1:] /= frequencies[1:] ** exponent
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=length)
    power = float(np.mean(noise**2)) or 1.0
    return (noise / np.sqrt(power)).astype(np.float32)


def add_noise(
    rng: np.random.Generator, clip: np.ndarray, speech_power: float, rate: int, snr_range: tuple[float, float]
) -> tuple[np.ndarray, float, str]:
    """The clip with noise of a random kind at an SNR drawn from `snr_range` (relative to the speech's power)."""
    kind = pick(rng, NOISE_KINDS)
    snr_db = float(rng.uniform(*snr_range))
    noise = coloured_noise(rng, kind, len(clip), rate) * np.sqrt(speech_power / 10 ** (snr_db / 10))
    return (clip + noise).astype(np.float32), snr_db, kind


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling from `rate` to `target` Hz."""
    if rate == target:
        return samples
    divisor = gcd(rate, target)
    return resample_poly(samples, target // divisor, rate // divisor).astype(np.float32)


def render_file(
    rng: np.random.Generator, speech: np.ndarray, rate: int, damage: AudioDamage = DEFAULT_DAMAGE
) -> AudioFile:
    """Place, noise, maybe clip, resample, maybe make stereo, encode: one damaged recording of `speech`."""
    clip = place(rng, speech, rate)
    voiced = clip[np.abs(clip) > 0]
    power = float(np.mean(voiced**2)) if voiced.size else 1.0
    clip, snr_db, kind = add_noise(rng, clip, power, rate, damage.snr_db)
    clipped = bool(rng.random() < damage.clip_probability)
    if clipped:
        clip = clip * rng.uniform(*CLIP_GAIN)
    clip = np.clip(clip, -1.0, 1.0)
    target = pick(rng, SAMPLE_RATES)
    clip = np.clip(resample(clip, rate, target), -1.0, 1.0)
    if rng.random() < STEREO_PROBABILITY:
        clip = np.stack([clip, clip * rng.uniform(*STEREO_GAIN)], axis=1)
    extension = "flac" if rng.random() < FLAC_PROBABILITY else "wav"
    buffer = io.BytesIO()
    sf.write(buffer, clip, target, subtype=SUBTYPE, format=extension.upper())
    return AudioFile(
        buffer.getvalue(),
        extension,
        target,
        1 if clip.ndim == 1 else clip.shape[1],
        len(clip) / target,
        snr_db,
        kind,
        clipped,
    )
