"""Exact Bayes-optimal accuracy of the multiclass design for every subset of modalities: the ceiling that a
trained model is compared against."""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations, product
from typing import Any, Mapping

import numpy as np

from fusion.data.sample.config import MODALITIES, _as_dict


def _state_probs(section: Mapping) -> dict[str, float]:
    """Prior of the modality's state."""
    m, k = float(section["missing_fraction"]), float(section["corrupt_fraction"])
    return {"missing": m, "corrupt": k, "clean": 1.0 - m - k}


def _joint_states(cfg: Mapping) -> dict[tuple[str, str, str], float]:
    """Exact joint state distribution including the all-missing re-draw."""
    priors = [_state_probs(cfg[mod]) for mod in MODALITIES]
    joint: dict[tuple[str, str, str], float] = Counter()
    for combo in product(("missing", "corrupt", "clean"), repeat=3):
        p = math.prod(priors[j][s] for j, s in enumerate(combo))
        if all(s == "missing" for s in combo):
            for j in range(3):
                present = priors[j]["clean"] + priors[j]["corrupt"]
                for s in ("clean", "corrupt"):
                    share = (priors[j][s] / present) if present > 0 else float(s == "clean")
                    new = list(combo)
                    new[j] = s
                    joint[tuple(new)] += p / 3 * share
        else:
            joint[combo] += p
    return joint


def _observations(cfg: Mapping, mod: str, state: str, c: int) -> list[tuple[Any, float]]:
    """What a perfect observer sees of one modality, with probabilities.

    Detectable corruptions (no shape, pure noise, no/two keywords) are uninformative;
    a corrupt random-band tone looks like a clean one from a random band.
    """
    sec = cfg[mod]
    if state == "missing":
        return [("missing", 1.0)]
    if state == "clean":
        return [(("group", int(sec["groups"][c])), 1.0)]
    if mod == "audio":
        q, nb = float(sec["corrupt_tone_fraction"]), len(sec["bands"])
        return [("corrupt", 1.0 - q)] + [(("group", b), q / nb) for b in range(nb)]
    return [("corrupt", 1.0)]


def bayes_optimal_accuracy(cfg: Any) -> dict[str, float]:
    """Exact accuracy of the Bayes-optimal classifier for every subset of modalities."""
    c = _as_dict(cfg)
    n_classes = len(c["class_names"])
    joint: dict[tuple, np.ndarray] = {}
    for states, p_states in _joint_states(c).items():
        for y in range(n_classes):
            per_mod = [_observations(c, mod, s, y) for mod, s in zip(MODALITIES, states, strict=True)]
            for obs in product(*per_mod):
                key = tuple(o for o, _ in obs)
                vec = joint.setdefault(key, np.zeros(n_classes))
                vec[y] += p_states / n_classes * math.prod(pr for _, pr in obs)
    out = {}
    for r in range(1, 4):
        for subset in _subsets(r):
            marg: dict[tuple, np.ndarray] = {}
            for key, vec in joint.items():
                k = tuple(key[j] for j in subset)
                marg[k] = marg.get(k, np.zeros(n_classes)) + vec
            name = "+".join(MODALITIES[j] for j in subset)
            out[name] = round(float(sum(v.max() for v in marg.values())), 4)
    return out


def _subsets(r: int) -> list[tuple[int, ...]]:
    """Index subsets of the three modalities of size r, in a fixed order."""
    return list(combinations(range(len(MODALITIES)), r))
