"""postcards: a tri-modal dataset with *complementary* modalities: the label needs two of them (10 classes).

Each record is a postcard to sort into one of ten bins. It has a picture, a voice memo naming an animal and a
handwritten note; each cue narrows the bin to two, and any two cues together identify it:

- image (group = class % 5): a crop of one of five real pictures, *temple* and *flower* (scikit-learn's sample
  photographs), *portrait* (Grace Hopper, matplotlib), *scan* (an MRI head scan, matplotlib), *handwriting*
  (a strip of 2-4 handwritten digits from scikit-learn's `load_digits`, dealt into disjoint split pools). A crop
  covers 25-70 % of the picture's shorter side at a random place, maybe mirrored and slightly rotated, resized
  to 28-80 px with a random aspect ratio; then the shared damage (blur, occlusion, inversion, low contrast,
  noise), grayscale or RGB, PNG or JPEG.
- audio (group = class // 2): an animal (cat, dog, bird, horse, fish) spoken by espeak-ng in English, French,
  German or Spanish (`chat`, `Hund`, `pájaro`, ...) with a voice of that language and one of eleven variants,
  then the shared damage (noise of four kinds at -5 to 20 dB SNR, clipping, 5 sample rates, WAV or FLAC).
- text (groups {0,3} {1,4} {2,5} {6,9} {7,8}): a short note with typos mentioning one of five topics (weather,
  food, sport, music, travel) through one of six real words each; 25 % of notes mention no topic.
- each modality is missing from about 8 % of records (never all three); some texts are files, most inline.

The class names say which picture and animal a bin gets (`temple-cat`); the topic pairing is a third, different
one, so no two modalities share a pair. Bayes expectations (dataset.json; upper bounds, since a damaged crop or
a noisy word may be illegible): a single modality reaches at most ~0.47 (image, audio) or ~0.38 (text), any two
~0.8-0.9, all three ~0.96.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from benchmarks.accuracy.datasets import sources
from benchmarks.accuracy.datasets.avdigits import place_ink
from benchmarks.accuracy.datasets.base import DatasetBuilder
from benchmarks.accuracy.datasets.imaging import ink_on_paper, random_size
from benchmarks.accuracy.datasets.plan import RecordPlan, pick, split_pools
from benchmarks.accuracy.datasets.speech import Utterance, draw_utterance

PICTURES = ("temple", "flower", "portrait", "scan", "handwriting")
ANIMALS = ("cat", "dog", "bird", "horse", "fish")
TOPIC_OF_CLASS = (0, 1, 2, 0, 1, 2, 3, 4, 4, 3)  # pairs {0,3} {1,4} {2,5} {6,9} {7,8}
NUM_CLASSES = len(TOPIC_OF_CLASS)
CLASSES = tuple(f"{PICTURES[c % 5]}-{ANIMALS[c // 2]}" for c in range(NUM_CLASSES))
# The animal words per language, and the espeak-ng voices that speak each language.
ANIMAL_WORDS = {
    "en": ("cat", "dog", "bird", "horse", "fish"),
    "fr": ("chat", "chien", "oiseau", "cheval", "poisson"),
    "de": ("Katze", "Hund", "Vogel", "Pferd", "Fisch"),
    "es": ("gato", "perro", "pájaro", "caballo", "pez"),
}
VOICES = {"en": ("en-us", "en-gb", "en-gb-scotland"), "fr": ("fr-fr", "fr-be"), "de": ("de",), "es": ("es", "es-419")}
TOPICS = (
    ("rain", "drizzle", "storm", "sunshine", "fog", "snow"),
    ("bread", "soup", "cheese", "apples", "pasta", "coffee"),
    ("football", "tennis", "cycling", "swimming", "rowing", "hiking"),
    ("guitar", "piano", "concert", "violin", "choir", "drums"),
    ("train", "airport", "ferry", "luggage", "passport", "hotel"),
)
NOTES = (
    "greetings from the coast, {} all week",
    "we had {} today!",
    "{} again, wish you were here",
    "thinking of you. {}.",
    "so much {} here",
    "loved the {}",
    "more {} tomorrow",
    "{} {} {}, that's the trip",
    "dear Sam, {} and more {}",
    "all good, {} every day",
)
BLANK_NOTES = (
    "greetings!",
    "see you soon, love",
    "no news here",
    "back on monday",
    "hello from us both",
    "miss you",
    "writing in a hurry",
    "x x x",
)
INFORMATIVE_NOTE = 0.75
CROP_SHARE = (0.25, 0.70)  # of the picture's shorter side
MIRROR_PROBABILITY = 0.5
ROTATION_DEGREES = 10.0
SIDE_PX = (28, 80)  # the written image's shorter side
ASPECT = (0.75, 1.33)  # width / height
STRIP_DIGITS = (2, 4)  # handwriting: digits per strip
STRIP_FILL = (0.75, 0.95)  # height share of each digit in its cell


class Postcards(DatasetBuilder):
    name = "postcards"
    summary = "10 bins = picture × spoken animal × note topic; each cue narrows to 2 (complementary modalities)"
    classes = CLASSES
    groups = {
        "image": tuple(c % 5 for c in range(NUM_CLASSES)),
        "audio": tuple(c // 2 for c in range(NUM_CLASSES)),
        "text": TOPIC_OF_CLASS,
    }
    informative = {"text": INFORMATIVE_NOTE, "image": 1.0, "audio": 1.0}

    def load_sources(self, seed: int) -> None:
        self.photos = sources.photographs()
        self.digits = sources.digits()
        self.pools = split_pools(self.name, seed, self.digits.labels)

    def image(self, plan: RecordPlan, rng: np.random.Generator) -> Image.Image:
        picture = PICTURES[self.groups["image"][plan.label]]
        width, height = random_size(rng, SIDE_PX, ASPECT)
        if picture == "handwriting":
            return self._strip(plan, rng).resize((width, height), Image.Resampling.BILINEAR)
        return crop(rng, self.photos[picture]).resize((width, height), Image.Resampling.BICUBIC)

    def _strip(self, plan: RecordPlan, rng: np.random.Generator) -> Image.Image:
        """A row of handwritten digits (any digits: the strip's look, not its number, is the cue)."""
        pool = self.pools[plan.split]
        count = int(rng.integers(STRIP_DIGITS[0], STRIP_DIGITS[1] + 1))
        cells = [
            place_ink(
                rng, self.digits.ink[pick(rng, pool[int(rng.integers(len(pool)))])], SIDE_PX, (1.0, 1.0), STRIP_FILL
            )
            for _ in range(count)
        ]
        height = min(c.shape[0] for c in cells)
        return ink_on_paper(rng, np.concatenate([c[:height, :height] for c in cells], axis=1))

    def utterance(self, plan: RecordPlan, rng: np.random.Generator) -> Utterance:
        language = pick(rng, tuple(ANIMAL_WORDS))
        return draw_utterance(rng, ANIMAL_WORDS[language][self.groups["audio"][plan.label]], VOICES[language])

    def text(self, plan: RecordPlan, rng: np.random.Generator) -> tuple[str, bool]:
        if rng.random() >= INFORMATIVE_NOTE:
            return pick(rng, BLANK_NOTES), False
        words = TOPICS[self.groups["text"][plan.label]]
        note = pick(rng, NOTES)
        return note.format(*(pick(rng, words) for _ in range(note.count("{}")))), True


def crop(rng: np.random.Generator, photo: np.ndarray) -> Image.Image:
    """A random square crop of the photo, maybe mirrored, slightly rotated (the corners filled from the edge)."""
    height, width = photo.shape[:2]
    side = int(min(height, width) * rng.uniform(*CROP_SHARE))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    image = Image.fromarray(photo[top : top + side, left : left + side])
    if rng.random() < MIRROR_PROBABILITY:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image.rotate(
        rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES),
        Image.Resampling.BILINEAR,
        fillcolor=tuple(int(v) for v in photo[top, left]),
    )
