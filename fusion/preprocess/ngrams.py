"""Character n-gram tokens (fastText's subwords, Bojanowski et al., 2017): each word ``w`` becomes ``<w>`` and its
character n-grams, so a typo changes a few tokens of the word instead of making it unknown. The vocabulary is
the n-grams whose presence depends on the training texts' labels (or those found in the most training texts);
unknown n-grams are left out."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from fusion.preprocess.selection import ClassCounts, dependence_p_values, label_groups
from fusion.pretrained import NGRAM

__all__ = ["NGRAM", "CharNgramTokenizer", "is_saved_ngram_tokenizer"]

PAD, UNK = "[PAD]", "[UNK]"
FORMAT = "fusion-char-ngrams"  # marks the saved vocabulary (tokenizer.json) as this tokenizer's
WORD = re.compile(r"\w+")


class Encoding(NamedTuple):
    """What :meth:`CharNgramTokenizer.encode` returns (the ``ids`` attribute, as a ``tokenizers`` encoding)."""

    ids: list[int]


class CharNgramTokenizer:
    """Word-bounded character n-grams (``min_n``..``max_n``, plus the whole ``<word>``) of the NFKC-normalised,
    optionally lower-cased text, each kept once in order of first appearance."""

    def __init__(self, vocab: list[str], min_n: int, max_n: int, lowercase: bool = True) -> None:
        if not 1 <= min_n <= max_n:
            raise ValueError(f"preprocess.text.ngrams: need 1 <= min_n <= max_n, got min_n={min_n}, max_n={max_n}")
        self.vocab, self.min_n, self.max_n, self.lowercase = list(vocab), min_n, max_n, lowercase
        self.ids = {token: i for i, token in enumerate(self.vocab)}
        self.eligible: int | None = None  # set by train: n-grams in at least min_frequency texts (kept or not)
        self.dependent: int | None = None  # set by train with labels: of those, the ones that depend on the label

    def grams(self, text: str) -> list[str]:
        """The text's n-grams (with repeats), word by word."""
        text = unicodedata.normalize("NFKC", text)
        text = text.lower() if self.lowercase else text
        out: list[str] = []
        for word in WORD.findall(text):
            marked = f"<{word}>"
            out.append(marked)
            for n in range(self.min_n, self.max_n + 1):
                out.extend(marked[i : i + n] for i in range(len(marked) - n + 1) if marked[i : i + n] != marked)
        return out

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        vocab_size: int,
        min_frequency: int,
        min_n: int,
        max_n: int,
        lowercase: bool = True,
        labels: Sequence[Any] | None = None,
        alpha: float | None = None,
    ) -> "CharNgramTokenizer":
        """After [PAD] and [UNK], at most ``vocab_size`` - 2 of the n-grams found in at least ``min_frequency``
        texts: with ``labels`` (one per text) and ``alpha``, those whose presence depends on the label at
        p < ``alpha`` (:mod:`fusion.preprocess.selection`), the most dependent first; else those found in the
        most texts. Ties in alphabetical order, so the vocabulary is the same on every run."""
        probe = cls([PAD, UNK], min_n, max_n, lowercase)
        grouped = label_groups(labels) if labels is not None and alpha is not None else None
        by_class = ClassCounts(grouped[0]) if grouped is not None else None
        counts: Counter = by_class.holding if by_class is not None else Counter()  # texts holding each n-gram
        for i, text in enumerate(texts):
            grams = set(probe.grams(text))
            if by_class is not None:
                by_class.add(grams, grouped[1][i])
            else:
                counts.update(grams)
        kept = sorted((g for g, c in counts.items() if c >= min_frequency), key=lambda g: (-counts[g], g))
        eligible = len(kept)
        if by_class is not None:
            p = dict(zip(kept, dependence_p_values(by_class, kept), strict=True))
            kept = sorted((g for g in kept if p[g] < alpha), key=lambda g: (p[g], -counts[g], g))
        tokenizer = cls([PAD, UNK, *kept[: max(0, vocab_size - 2)]], min_n, max_n, lowercase)
        tokenizer.eligible = eligible
        tokenizer.dependent = len(kept) if by_class is not None else None
        return tokenizer

    def encode(self, text: str) -> Encoding:
        """Ids of the known n-grams, each once, in order of first appearance; [UNK] alone when none is known
        (a text of only unseen words still says that a text is there)."""
        grams = self.grams(text)
        ids = list(dict.fromkeys(i for i in map(self.ids.get, grams) if i is not None))
        return Encoding(ids or ([self.ids[UNK]] if grams else []))

    def id_to_token(self, index: int) -> str | None:
        return self.vocab[index] if 0 <= index < len(self.vocab) else None

    def token_to_id(self, token: str) -> int | None:
        return self.ids.get(token)

    def get_vocab_size(self) -> int:
        return len(self.vocab)

    def to_str(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "min_n": self.min_n,
                "max_n": self.max_n,
                "lowercase": self.lowercase,
                "vocab": self.vocab,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_str(cls, text: str) -> "CharNgramTokenizer":
        state = json.loads(text)
        return cls(state["vocab"], int(state["min_n"]), int(state["max_n"]), bool(state["lowercase"]))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_str(), encoding="utf-8")


def is_saved_ngram_tokenizer(text: str) -> bool:
    """Whether a saved tokenizer.json holds this tokenizer (else a Hugging Face ``tokenizers`` one)."""
    try:
        state = json.loads(text)
    except ValueError:
        return False
    return isinstance(state, dict) and state.get("format") == FORMAT
