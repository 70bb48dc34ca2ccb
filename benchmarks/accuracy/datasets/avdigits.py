"""avdigits: an AV-MNIST-like tri-modal digit dataset with *redundant* modalities (10 classes, digits 0-9).

Every modality, when legible, names the digit on its own; fusion helps because each is often damaged or missing.

- image: a real handwritten digit from scikit-learn's `load_digits` (8×8 scans by 43 writers), upscaled to
  16-48 px with a random aspect ratio, slight rotation and offset, dark ink on light paper of random colours,
  then blur, occlusion, low contrast, inverted contrast and noise at random; grayscale or RGB, PNG or JPEG.
  The scans are dealt per class into disjoint train / val / test pools, so test digits are unseen handwriting.
- audio: the digit word spoken by espeak-ng in one of seven English accents and eleven voice variants
  (`en-gb+f2`), at 110-220 words per minute and a random pitch, sometimes inside a short carrier phrase
  ("number seven"), with white / pink / brown noise or mains hum at -5 to 20 dB SNR, sometimes clipped,
  resampled to 8, 11.025, 16, 22.05 or 44.1 kHz, sometimes stereo, WAV or FLAC.
- text: a short caption with typos. 65 % name the digit (as a word, a numeral, a roman numeral or in French,
  Spanish or German); the rest are uninformative ("scanned card, blurry"), some with unrelated numbers
  ("batch 17"). About 40 % are stored in text/ files, the rest inline.
- each modality is missing from about 8 % of records (never all three).

Bayes expectations (dataset.json): a legible image or audio identifies the digit, so their bounds are the
presence rate (~0.92 plus chance on the rest); text alone is bounded by its informative share (~0.66).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from benchmarks.accuracy.datasets import sources
from benchmarks.accuracy.datasets.base import DatasetBuilder
from benchmarks.accuracy.datasets.imaging import ink_on_paper, random_size
from benchmarks.accuracy.datasets.plan import RecordPlan, pick, split_pools
from benchmarks.accuracy.datasets.speech import Utterance, draw_utterance

CLASSES = tuple(str(d) for d in range(10))
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Other names of each digit a caption may use: roman numerals and the French, Spanish and German words.
SYNONYMS = (
    ("nought", "nil", "zéro", "cero", "null"),
    ("I", "un", "uno", "eins"),
    ("II", "deux", "dos", "zwei"),
    ("III", "trois", "tres", "drei"),
    ("IV", "quatre", "cuatro", "vier"),
    ("V", "cinq", "cinco", "fünf"),
    ("VI", "six", "seis", "sechs"),
    ("VII", "sept", "siete", "sieben"),
    ("VIII", "huit", "ocho", "acht"),
    ("IX", "neuf", "nueve", "neun"),
)
ACCENTS = ("en", "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
CARRIERS = ("number {}", "{} please", "it is {}", "the digit {}")
CARRIER_PROBABILITY = 0.20
INFORMATIVE_CAPTION = 0.65
NUMBER_FORMS = ("word", "numeral", "synonym")
CAPTIONS = (
    "handwritten {}",
    "card shows a {}",
    "digit: {}",
    "looks like a {} to me",
    "{}?",
    "probably {}",
    "label {} (checked)",
    "a {} written in pen",
    "it's a {}",
    "clearly {}",
    "{} i think",
)
BLANK_CAPTIONS = (
    "scanned card, blurry",
    "no caption",
    "hard to read",
    "photo taken at the office",
    "see attached",
    "batch {}",
    "scan no. {}",
    "page {} of the form",
    "uploaded from phone",
    "card from the pile",
)
DISTRACTOR_NUMBERS = (10, 99)  # the unrelated two-digit numbers of blank captions
SIDE_PX = (16, 48)  # the image's shorter side
ASPECT = (0.8, 1.25)  # width / height
DIGIT_FILL = (0.6, 0.9)  # share of the shorter side the digit spans
ROTATION_DEGREES = 12.0


class AVDigits(DatasetBuilder):
    name = "avdigits"
    summary = "digits 0-9: handwritten scan, spoken word, caption (redundant modalities)"
    classes = CLASSES
    groups = {m: tuple(range(len(CLASSES))) for m in ("text", "image", "audio")}
    informative = {"text": INFORMATIVE_CAPTION, "image": 1.0, "audio": 1.0}

    def load_sources(self, seed: int) -> None:
        self.digits = sources.digits()
        self.pools = split_pools(self.name, seed, self.digits.labels)

    def image(self, plan: RecordPlan, rng: np.random.Generator) -> Image.Image:
        scan = self.digits.ink[pick(rng, self.pools[plan.split][plan.label])]
        return ink_on_paper(rng, place_ink(rng, scan, SIDE_PX, ASPECT, DIGIT_FILL))

    def spoken_digit(self, plan: RecordPlan, rng: np.random.Generator) -> str:
        """The digit word the record's recording says: its label's."""
        return WORDS[plan.label]

    def utterance(self, plan: RecordPlan, rng: np.random.Generator) -> Utterance:
        words = self.spoken_digit(plan, rng)
        if rng.random() < CARRIER_PROBABILITY:
            words = pick(rng, CARRIERS).format(words)
        return draw_utterance(rng, words, ACCENTS)

    def text(self, plan: RecordPlan, rng: np.random.Generator) -> tuple[str, bool]:
        if rng.random() >= INFORMATIVE_CAPTION:
            low, high = DISTRACTOR_NUMBERS
            return pick(rng, BLANK_CAPTIONS).format(int(rng.integers(low, high + 1))), False
        form = pick(rng, NUMBER_FORMS)
        number = {"word": WORDS[plan.label], "numeral": str(plan.label), "synonym": pick(rng, SYNONYMS[plan.label])}[
            form
        ]
        return pick(rng, CAPTIONS).format(number), True


def place_ink(
    rng: np.random.Generator,
    ink: np.ndarray,
    side_px: tuple[int, int],
    aspect: tuple[float, float],
    fill: tuple[float, float],
) -> np.ndarray:
    """Ink coverage (H×W in [0, 1]) scaled smoothly onto a canvas of random size and aspect, slightly rotated,
    at a random offset."""
    width, height = random_size(rng, side_px, aspect)
    glyph_h = max(4, round(min(width, height) * rng.uniform(*fill)))
    glyph_w = max(4, round(glyph_h * ink.shape[1] / ink.shape[0]))
    glyph = Image.fromarray(ink.astype(np.float32), mode="F").resize((glyph_w, glyph_h), Image.Resampling.BICUBIC)
    glyph = glyph.rotate(rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES), Image.Resampling.BILINEAR, expand=True)
    glyph_array = np.clip(np.asarray(glyph), 0.0, 1.0)[:height, :width]
    canvas = np.zeros((height, width), np.float32)
    top = int(rng.integers(0, height - glyph_array.shape[0] + 1))
    left = int(rng.integers(0, width - glyph_array.shape[1] + 1))
    canvas[top : top + glyph_array.shape[0], left : left + glyph_array.shape[1]] = glyph_array
    return canvas
