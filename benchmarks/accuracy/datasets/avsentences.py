"""avsentences: avdigits with long recordings. Does the audio model hear the whole clip, not only its first second?

Images, captions and classes are made as avdigits makes them (its own records: the scans are dealt into split pools
by the dataset's name); the audio says the digit word inside a run of 3 to 12 words of real English prose (CPython's
documentation, none naming a number), the digit at a random word boundary: about 1 to 6 seconds at espeak-ng's
110-220 words a minute, with avdigits' noise, clipping and formats. The bounds are avdigits' (the prose reveals
nothing, and the digit is always said). The prose comes with Python, so a seed's recordings differ between Python
versions.
"""

from __future__ import annotations

import re

import numpy as np

from benchmarks.accuracy.datasets import sources
from benchmarks.accuracy.datasets.avdigits import ACCENTS, WORDS, AVDigits
from benchmarks.accuracy.datasets.avnotes import number_words
from benchmarks.accuracy.datasets.plan import RecordPlan, pick
from benchmarks.accuracy.datasets.speech import Utterance, draw_utterance

SPOKEN_WORDS = (3, 12)  # prose words around the digit (inclusive)


class AVSentences(AVDigits):
    name = "avsentences"
    summary = "avdigits with the digit spoken inside 3-12 words of English prose (recordings of 1-6 s)"

    def load_sources(self, seed: int) -> None:
        super().load_sources(seed)
        self.prose = sources.prose(number_words())

    def utterance(self, plan: RecordPlan, rng: np.random.Generator) -> Utterance:
        count = int(rng.integers(SPOKEN_WORDS[0], SPOKEN_WORDS[1] + 1))
        words = re.sub(r"[.,;:]", "", pick(rng, self.prose)).split()
        start = int(rng.integers(0, max(0, len(words) - count) + 1))
        spoken = words[start : start + count]
        spoken.insert(int(rng.integers(0, len(spoken) + 1)), WORDS[plan.label])
        return draw_utterance(rng, " ".join(spoken), ACCENTS)
