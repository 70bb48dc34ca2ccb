"""The request mix of the load benchmark: JSON bodies built once from the sample, by kind (one tri-modal row with
base64 image and audio; one row with one or two modalities missing; a batch of rows missing modalities at random)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

SINGLE_ALL, SINGLE_MISSING, BATCH = "single_all", "single_missing", "batch16"
KINDS = (SINGLE_ALL, SINGLE_MISSING, BATCH)
SINGLE_KINDS = (SINGLE_ALL, SINGLE_MISSING)
MODALITIES = ("text", "image", "audio")


def full_rows(sample_root: Path) -> list[dict[str, str]]:
    """Request rows of the sample records holding every modality with inline text: image and audio as base64."""
    rows = []
    for line in (sample_root / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("text") and record.get("image") and record.get("audio"):
            rows.append(
                {
                    "id": record["id"],
                    "text": record["text"],
                    **{
                        m: base64.b64encode((sample_root / record[m]).read_bytes()).decode("ascii")
                        for m in ("image", "audio")
                    },
                }
            )
    return rows


def _without(row: dict[str, str], missing: set[str]) -> dict[str, Any]:
    return {key: (None if key in missing else value) for key, value in row.items()}


def _some_missing(rng: np.random.Generator, probability: float) -> set[str]:
    """Modalities dropped at random, never all three."""
    missing = {m for m in MODALITIES if rng.random() < probability}
    return missing if len(missing) < len(MODALITIES) else missing - {MODALITIES[int(rng.integers(3))]}


def build_payloads(rows: list[dict[str, str]], settings: Mapping[str, Any], seed: int) -> dict[str, list[bytes]]:
    """``payloads_per_kind`` JSON bodies per kind (``{"dataframe_records": [...]}``), seeded."""
    rng = np.random.default_rng(seed)
    count, batch, probability = (
        int(settings["payloads_per_kind"]),
        int(settings["batch_rows"]),
        float(settings["missing_probability"]),
    )

    def pick() -> dict[str, str]:
        return rows[int(rng.integers(len(rows)))]

    def one_or_two_missing() -> set[str]:
        return set(rng.choice(MODALITIES, size=int(rng.integers(1, 3)), replace=False).tolist())

    kinds = {
        SINGLE_ALL: lambda: [pick()],
        SINGLE_MISSING: lambda: [_without(pick(), one_or_two_missing())],
        BATCH: lambda: [_without(pick(), _some_missing(rng, probability)) for _ in range(batch)],
    }
    return {
        kind: [json.dumps({"dataframe_records": make()}).encode("utf-8") for _ in range(count)]
        for kind, make in kinds.items()
    }


def rows_of(kind: str, batch_rows: int) -> int:
    return batch_rows if kind == BATCH else 1
