"""What a benchmark dataset defines: its classes, what each modality reveals, and the clean content of a record.

The shared machinery (plan.py, imaging.py, sound.py, typos.py, build.py) does the rest: labels and splits,
missing modalities, damage, formats, files and the manifest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from benchmarks.accuracy.datasets.plan import RecordPlan
from benchmarks.accuracy.datasets.sound import DEFAULT_DAMAGE, AudioDamage
from benchmarks.accuracy.datasets.speech import Utterance

DEFAULT_RECORDS = 1500


class DatasetBuilder(ABC):
    """One benchmark dataset. Subclasses set the class attributes and render a record's clean content; every
    method gets the record's plan and the generator of that modality's stream, so records are independent."""

    name: str
    summary: str  # one line for tables and dataset.json
    classes: Sequence[str]
    groups: Mapping[str, Sequence[int]]  # modality -> the group each class shows (see bayes.py)
    informative: Mapping[str, float]  # modality -> P(the content reveals its group | present)
    default_records: int = DEFAULT_RECORDS
    audio_damage: AudioDamage = DEFAULT_DAMAGE  # SNR range and clipping share of the recordings (sound.py)
    class_ratio: float = 1.0  # most / least frequent class; 1 = balanced (plan.class_shares)
    label_noise: float = 0.0  # share of the training and validation records whose manifest names a wrong class

    def load_sources(self, seed: int) -> None:  # noqa: B027 (an optional hook: most datasets load nothing)
        """Load the real signals once per build (photos, digit scans); `seed` may deal them into split pools."""

    @abstractmethod
    def image(self, plan: RecordPlan, rng: np.random.Generator) -> Image.Image:
        """The record's clean picture, at the size it is to be written."""

    @abstractmethod
    def utterance(self, plan: RecordPlan, rng: np.random.Generator) -> Utterance:
        """What the record's audio says, in which voice."""

    @abstractmethod
    def text(self, plan: RecordPlan, rng: np.random.Generator) -> tuple[str, bool]:
        """The record's clean text, and whether it reveals the text's group."""
