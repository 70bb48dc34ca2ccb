"""avnotes: avdigits with long texts. Does the text model read a whole note, not only its first words?

Images, audio, classes and captions are made as avdigits makes them (its own records: the scans are dealt into
split pools by the dataset's name); the text is a note of 2 to 10 sentences of real English prose
(CPython's documentation, none naming a number) with the caption put at a random sentence boundary, about 20 to 200
words (median 85). Typos then touch the whole note. The text's bound is avdigits' (the prose reveals nothing). The
prose comes with Python, so a seed's texts differ between Python versions.
"""

from __future__ import annotations

import numpy as np

from benchmarks.accuracy.datasets import sources
from benchmarks.accuracy.datasets.avdigits import SYNONYMS, WORDS, AVDigits
from benchmarks.accuracy.datasets.plan import RecordPlan

NOTE_SENTENCES = (2, 10)  # prose sentences around the caption (inclusive)


def number_words() -> set[str]:
    """The words a caption names a digit with, lower-cased: no prose sentence may hold one."""
    return {w.lower() for w in (*WORDS, *(s for names in SYNONYMS for s in names))}


class AVNotes(AVDigits):
    name = "avnotes"
    summary = "avdigits with each caption inside a note of 2-10 sentences of English prose (long texts)"

    def load_sources(self, seed: int) -> None:
        super().load_sources(seed)
        self.prose = sources.prose(number_words())

    def text(self, plan: RecordPlan, rng: np.random.Generator) -> tuple[str, bool]:
        caption, informative = super().text(plan, rng)
        count = int(rng.integers(NOTE_SENTENCES[0], NOTE_SENTENCES[1] + 1))
        sentences = [self.prose[i] for i in rng.choice(len(self.prose), size=count, replace=False)]
        sentences.insert(int(rng.integers(0, count + 1)), caption)
        return " ".join(sentences), informative
