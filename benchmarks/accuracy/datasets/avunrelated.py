"""avunrelated: avnoisy whose recordings say a digit unrelated to the label. Does an uninformative modality cost?

Everything is made as avnoisy makes it (its own records and split pools), except what each recording says: a digit
drawn uniformly from the audio's own random stream, whatever the record's label, so the recordings are as real and
as damaged as avnoisy's and tell nothing about the class (a user's extra modality that does not bear on the label).
The Bayes bounds count the audio as never informative: those with audio equal those without it.
"""

from __future__ import annotations

import numpy as np

from benchmarks.accuracy.datasets.avdigits import WORDS
from benchmarks.accuracy.datasets.avnoisy import AVNoisy
from benchmarks.accuracy.datasets.plan import RecordPlan, pick


class AVUnrelated(AVNoisy):
    name = "avunrelated"
    summary = "avnoisy whose recordings say a digit unrelated to the label (an uninformative modality)"
    informative = {**AVNoisy.informative, "audio": 0.0}

    def spoken_digit(self, plan: RecordPlan, rng: np.random.Generator) -> str:
        """A digit word drawn from the audio's own stream, whatever the label."""
        return pick(rng, WORDS)
