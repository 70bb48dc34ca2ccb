"""Real speech from the espeak-ng synthesiser (Debian package `espeak-ng`): a word in a voice, as a waveform.

espeak-ng is a formant synthesiser with many languages and voice variants; it runs offline in ~10 ms per word,
so the builders can speak every record anew with its own voice, speed and pitch.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from benchmarks.accuracy.datasets.plan import pick

ESPEAK = "espeak-ng"
INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu; CI: .ci/run installs it)"
TIMEOUT_SECONDS = 30
# Voice variants (`-v <language>+<variant>`): espeak-ng's seven male and four female formant sets.
VARIANTS = tuple([f"m{i}" for i in range(1, 8)] + [f"f{i}" for i in range(1, 5)])
SPEED_WPM = (110, 220)  # words per minute (-s)
PITCH = (15, 85)  # 0-99 (-p)
SILENCE_THRESHOLD = 0.01  # fraction of the peak under which leading and trailing samples count as silence


class SpeechError(RuntimeError):
    """espeak-ng is missing or failed."""


@dataclass(frozen=True)
class Utterance:
    """What to say and how: espeak-ng's voice (`en-gb+f2`), words per minute and pitch."""

    text: str
    voice: str
    speed: int
    pitch: int


def require_espeak() -> str:
    """The espeak-ng executable, or a SpeechError that says how to install it."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise SpeechError(f"{ESPEAK} is not on PATH; the benchmark datasets speak their audio with it: {INSTALL_HINT}")
    return path


def draw_utterance(rng: np.random.Generator, text: str, languages: tuple[str, ...]) -> Utterance:
    """A random voice (one of `languages` with a random variant), speed and pitch for `text`."""
    return Utterance(
        text=text,
        voice=f"{pick(rng, languages)}+{pick(rng, VARIANTS)}",
        speed=int(rng.integers(SPEED_WPM[0], SPEED_WPM[1] + 1)),
        pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
    )


def speak(utterance: Utterance) -> tuple[np.ndarray, int]:
    """The utterance as float32 mono samples in [-1, 1] with leading and trailing silence trimmed, and its rate."""
    command = [
        require_espeak(),
        "-v",
        utterance.voice,
        "-s",
        str(utterance.speed),
        "-p",
        str(utterance.pitch),
        "--stdout",
        utterance.text,
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise SpeechError(f"{' '.join(command)} did not finish in {TIMEOUT_SECONDS} s") from None
    if done.returncode != 0 or not done.stdout:
        reason = done.stderr.decode("utf-8", "replace").strip() or f"exit status {done.returncode}, no audio"
        raise SpeechError(f"{' '.join(command)} failed: {reason}. Check the voice exists: espeak-ng --voices")
    samples, rate = sf.read(io.BytesIO(done.stdout), dtype="float32", always_2d=False)
    return trim_silence(samples), int(rate)


def trim_silence(samples: np.ndarray, threshold: float = SILENCE_THRESHOLD) -> np.ndarray:
    """Samples between the first and last one louder than `threshold` × the peak (all of them if none is)."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    loud = np.flatnonzero(np.abs(samples) > threshold * peak) if peak > 0 else np.array([], dtype=int)
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples
