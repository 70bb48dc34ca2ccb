"""avnoisy: avdigits with harsher audio. Does the fused model hold when speech is buried in noise?

Everything is made as avdigits makes it (its own records: the scans are dealt into split pools by the dataset's
name), except that the noise is drawn at -15 to 10 dB SNR instead of -5 to 20, and half the recordings are clipped
instead of a fifth. The Bayes bounds are avdigits': they count missing modalities and uninformative captions, not
noise, so the audio's bound is further out of reach here.
"""

from __future__ import annotations

from benchmarks.accuracy.datasets.avdigits import AVDigits
from benchmarks.accuracy.datasets.sound import AudioDamage

NOISY = AudioDamage(snr_db=(-15.0, 10.0), clip_probability=0.5)


class AVNoisy(AVDigits):
    name = "avnoisy"
    summary = "avdigits with speech at -15 to 10 dB SNR, half of it clipped (harsh audio)"
    audio_damage = NOISY
