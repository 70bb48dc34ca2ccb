"""The systems the benchmark compares: this project (defaults, tuned, each modality alone) and the baselines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import yaml

TUNED_FILE = Path(__file__).resolve().parents[1] / "tuned.yaml"
PREPROCESS_PREFIX = "preprocess."  # overrides with this prefix also go to the preprocessing stage


@dataclass(frozen=True)
class System:
    """A row of the results table. `kind` is project (train.py with `overrides`) or a baseline module's name;
    `alone` names the modality a unimodal project system stands for."""

    name: str
    label: str
    kind: str
    overrides: tuple[str, ...] = ()
    alone: str | None = None


def preprocess_only(overrides: Sequence[str]) -> tuple[str, ...]:
    """The overrides that the preprocessing stage takes too (``preprocess.*``)."""
    return tuple(o for o in overrides if o.startswith(PREPROCESS_PREFIX))


def checked_overrides(overrides: Sequence[str]) -> tuple[str, ...]:
    """``--set`` values as given, each a Hydra ``key=value``; anything else stops with the value and the form."""
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or not key.strip():
            raise SystemExit(
                f"error: --set takes a Hydra override KEY=VALUE (e.g. --set fusion=gated), got {override!r}"
            )
    return tuple(overrides)


def tuned_overrides(path: Path = TUNED_FILE) -> tuple[str, ...]:
    """The list of Hydra overrides in tuned.yaml (a YAML list of strings)."""
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(
            f"error: cannot read {path}: {exc}; it must hold a YAML list of overrides, e.g. ['fusion=late']"
        ) from None
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise SystemExit(f"error: {path} must hold a YAML list of key=value strings (Hydra overrides), got {value!r}")
    return tuple(value)


TUNED = "project-tuned"


def catalogue(tuned: tuple[str, ...] = ()) -> dict[str, System]:
    """Every system by name, in table order."""
    systems = [
        System("project", "this project, defaults", "project"),
        System(TUNED, "this project, tuned (tuned.yaml)", "project", tuned),
    ]
    systems += [
        System(f"project-{m}", f"this project, modality={m}", "project", (f"modality={m}",), alone=m)
        for m in ("text", "image", "audio")
    ]
    systems += [
        System("logreg", "logistic regression per modality, late fusion", "logreg"),
        System("lenet", "LeNet late fusion, SGD 30 epochs (MultiBench)", "lenet"),
    ]
    return {s.name: s for s in systems}


def select(names: str | None, tuned: tuple[str, ...]) -> list[System]:
    """The systems named (comma-separated), in table order; by default all of them, less the tuned one while
    tuned.yaml is empty (it would repeat the defaults)."""
    known = catalogue(tuned)
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else [n for n in known if n != TUNED or tuned]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise SystemExit(f"error: unknown system(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if TUNED in wanted and not tuned:
        raise SystemExit(
            f"error: --systems names {TUNED} but {TUNED_FILE} holds no overrides; add some "
            f"(a YAML list such as ['fusion=late']) or leave {TUNED} out"
        )
    return [s for n, s in known.items() if n in wanted]
