"""Counts that describe a built dataset (for dataset.json): splits, presence, formats, rates, damage."""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

from benchmarks.accuracy.datasets.plan import MODALITIES


def describe(latents: list[Mapping[str, Any]]) -> dict[str, Any]:
    """What the records hold, from their latent descriptions (build.write_record)."""
    present = {m: [r[m] for r in latents if r[m] is not None] for m in MODALITIES}
    text, image, audio = present["text"], present["image"], present["audio"]
    return {
        "splits": _counts(r["split"] for r in latents),
        "labels": _counts(r["label"] for r in latents),
        "present": {m: len(present[m]) for m in MODALITIES},
        "text": {
            "storage": _counts(t["storage"] for t in text),
            "informative": sum(t["informative"] for t in text),
            "chars": _span(t["chars"] for t in text),
        },
        "image": {
            "format": _counts(i["format"] for i in image),
            "mode": _counts(i["mode"] for i in image),
            "width": _span(i["width"] for i in image),
            "height": _span(i["height"] for i in image),
            "damage": _counts(d for i in image for d in i["damage"]),
        },
        "audio": {
            "format": _counts(a["format"] for a in audio),
            "sample_rate": _counts(a["sample_rate"] for a in audio),
            "channels": _counts(a["channels"] for a in audio),
            "clipped": sum(a["clipped"] for a in audio),
            "noise": _counts(a["noise"] for a in audio),
            "snr_db": _span(a["snr_db"] for a in audio),
            "seconds": _span(a["seconds"] for a in audio),
        },
    }


def _counts(values: Iterable) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(values).items(), key=lambda kv: str(kv[0]))}


def _span(values: Iterable[float]) -> list[float] | None:
    """[min, max], or None when there is nothing to span."""
    values = list(values)
    return [min(values), max(values)] if values else None
