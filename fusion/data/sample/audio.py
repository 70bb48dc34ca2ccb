"""Audio rendering and encoding: a planned clip becomes an enveloped harmonic tone in its band plus noise, or
pure noise, saved as WAV."""

from __future__ import annotations

import io
import math
from typing import Mapping

import numpy as np
import soundfile as sf

from fusion.data.sample.rng import _PURPOSE_RECORD, _STREAM_AUDIO, _rng, _uniform


def _envelope(rng: np.random.Generator, n: int, sr: int, au: Mapping) -> np.ndarray:
    """Attack / exponentially decaying sustain / release amplitude envelope, peak 1."""
    t = np.arange(n, dtype=np.float64) / sr
    attack = max(1, int(_uniform(rng, au["attack_seconds"]) * sr))
    release = max(1, int(_uniform(rng, au["release_seconds"]) * sr))
    env = np.exp(-_uniform(rng, au["decay_rate"]) * t)
    env[:attack] *= np.linspace(0.0, 1.0, attack, endpoint=False)[: min(attack, n)]
    env[-release:] *= np.linspace(1.0, 0.0, release)[-min(release, n) :]
    return env


def _tone(rng: np.random.Generator, band, n: int, sr: int, au: Mapping) -> np.ndarray:
    """Harmonic tone with fundamental uniform in ``band``, harmonics kept below Nyquist."""
    t = np.arange(n, dtype=np.float64) / sr
    f0 = _uniform(rng, band)
    limit = float(au["nyquist_margin"]) * sr / 2
    out = np.zeros(n)
    total = 0.0
    for k, amp in enumerate(au["harmonics"], start=1):
        phase = rng.uniform(0, 2 * math.pi)
        if k * f0 < limit:
            out += float(amp) * np.sin(2 * math.pi * k * f0 * t + phase)
            total += abs(float(amp))
    return out / max(total, 1e-9)


def render_audio(cfg: Mapping, plan: dict) -> tuple[np.ndarray, int]:
    """Render the planned clip: tone in a band plus noise, or pure noise; float in [-1, 1]."""
    au, p = cfg["audio"], plan["audio"]
    rng = _rng(cfg["seed"], _PURPOSE_RECORD, plan["index"], _STREAM_AUDIO)
    sr = int(p["sample_rate"])
    n = max(1, int(round(_uniform(rng, (au["min_seconds"], au["max_seconds"])) * sr)))
    if p["group"] is None:
        signal = rng.normal(0.0, _uniform(rng, au["corrupt_noise_level"]), size=n)
    else:
        band = au["bands"][p["group"]]
        tone = _tone(rng, band, n, sr, au) * _envelope(rng, n, sr, au)
        noise = rng.normal(0.0, _uniform(rng, au["noise_level"]), size=n)
        signal = _uniform(rng, au["peak_amplitude"]) * tone + noise
    return np.clip(signal, -1.0, 1.0).astype(np.float32), sr


def encode_audio(signal: np.ndarray, sr: int, au: Mapping) -> bytes:
    """WAV bytes (16-bit PCM by default) written with soundfile."""
    buf = io.BytesIO()
    sf.write(buf, signal, sr, subtype=str(au["subtype"]), format="WAV")
    return buf.getvalue()
