"""Text rendering: a planned sentence is a template with a keyword slot (a group's synonym, two, or a neutral
noun) and fillers, then character-level typos."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from fusion.data.sample.rng import _PURPOSE_RECORD, _STREAM_TEXT, _randint, _rng


def _typo(rng: np.random.Generator, text: str, tx: Mapping) -> str:
    """Character-level typos (swap, drop, double, replace) at typo_rate on alphabet letters."""
    alphabet, rate = str(tx["typo_alphabet"]), float(tx["typo_rate"])
    chars, out, i = list(text), [], 0
    while i < len(chars):
        ch = chars[i]
        if ch.lower() in alphabet and rng.random() < rate:
            op = int(rng.integers(4))
            if op == 0 and i + 1 < len(chars):  # swap with next
                out += [chars[i + 1], ch]
                i += 2
                continue
            if op == 1:  # drop
                pass
            elif op == 2:  # double
                out += [ch, ch]
            else:  # replace
                out.append(alphabet[int(rng.integers(len(alphabet)))])
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _pick(rng: np.random.Generator, items) -> str:
    """Uniformly random element of a config list."""
    return str(items[int(rng.integers(len(items)))])


def _keyword_slot(rng: np.random.Generator, groups: list[int], tx: Mapping) -> str:
    """Keyword phrase: a synonym per group, or a neutral noun when there is no group."""
    if not groups:
        return _pick(rng, tx["neutral_nouns"])
    return " and ".join(_pick(rng, tx["synonyms"][g]) for g in groups)


def render_text(cfg: Mapping, plan: dict) -> str:
    """Render the planned sentence: template + keyword slot + fillers, then typos."""
    tx, p = cfg["text"], plan["text"]
    rng = _rng(cfg["seed"], _PURPOSE_RECORD, plan["index"], _STREAM_TEXT)
    template = _pick(rng, tx["templates"])
    a, b = (str(tx["fillers"][int(i)]) for i in rng.choice(len(tx["fillers"]), size=2, replace=False))
    sentence = template.format(kw=_keyword_slot(rng, p["groups"], tx), a=a, b=b)
    extra = [_pick(rng, tx["fillers"]) for _ in range(_randint(rng, tx["extra_fillers"]))]
    if extra:
        sentence = f"{sentence} {' '.join(extra)}"
    if rng.random() < float(tx["capitalize_fraction"]):
        sentence = sentence[:1].upper() + sentence[1:]
    return _typo(rng, sentence, tx)
