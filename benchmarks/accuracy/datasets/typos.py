"""Typing mistakes and sloppy formatting applied to the datasets' texts: swapped, dropped, doubled and mistyped
letters (neighbouring keys), random case, stray whitespace."""

from __future__ import annotations

import numpy as np

from benchmarks.accuracy.datasets.plan import pick

TYPO_RATE = (0.0, 0.08)  # per letter, drawn per text
SHOUT_PROBABILITY = 0.10  # the whole text in capitals
LOWER_PROBABILITY = 0.25  # all lower case
SPACES_PROBABILITY = 0.15  # doubled spaces and a trailing space
KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbours() -> dict[str, str]:
    """Keys next to each letter on a QWERTY keyboard (same row), for substitution typos."""
    out: dict[str, str] = {}
    for row in KEYBOARD_ROWS:
        for i, key in enumerate(row):
            out[key] = row[max(0, i - 1) : i] + row[i + 1 : i + 2]
    return out


NEIGHBOURS = _neighbours()
EDITS = ("swap", "drop", "double", "neighbour")


def typo(rng: np.random.Generator, text: str, rate: float) -> str:
    """Each letter, with probability `rate`, swapped with the next one, dropped, doubled or replaced by a neighbour."""
    chars = list(text)
    out: list[str] = []
    i = 0
    while i < len(chars):
        char = chars[i]
        if not char.isalpha() or rng.random() >= rate:
            out.append(char)
            i += 1
            continue
        edit = pick(rng, EDITS)
        if edit == "swap" and i + 1 < len(chars):
            out += [chars[i + 1], char]
            i += 2
            continue
        if edit == "double":
            out += [char, char]
        elif edit == "neighbour" and char.lower() in NEIGHBOURS:
            keys = NEIGHBOURS[char.lower()]
            out.append(pick(rng, keys))
        elif edit != "drop":
            out.append(char)
        i += 1
    return "".join(out)


def sloppy(rng: np.random.Generator, text: str) -> str:
    """`text` with typos at a random rate, sometimes all capitals or all lower case, sometimes stray spaces."""
    text = typo(rng, text, float(rng.uniform(*TYPO_RATE)))
    draw = rng.random()
    if draw < SHOUT_PROBABILITY:
        text = text.upper()
    elif draw < SHOUT_PROBABILITY + LOWER_PROBABILITY:
        text = text.lower()
    if rng.random() < SPACES_PROBABILITY:
        text = text.replace(" ", "  ") + " "
    return text
