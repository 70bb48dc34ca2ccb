"""The dataset summary: counts per label, modality state and mode, format and split, and its human-readable
rendering (what the DVC stage prints)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

from fusion.data.sample.config import MODALITIES, _as_dict
from fusion.data.sample.targets import _TARGETS, _kv, _target


def summarize(cfg: Any, plans: list[dict]) -> dict:
    """Counts per class (or label statistics), per modality state/mode, sample rates, image formats,
    text storage, and for multiclass the Bayes-optimal accuracies."""
    c = _as_dict(cfg)
    target = _target(c)
    labels, bayes = target.summary(c, plans)
    mods = {}
    for mod in MODALITIES:
        states = Counter(p[mod]["state"] for p in plans)
        mods[mod] = {
            "present": states["clean"] + states["corrupt"],
            "missing": states["missing"],
            "corrupt": states["corrupt"],
            "clean": states["clean"],
            "modes": dict(sorted(Counter(p[mod]["mode"] for p in plans if "mode" in p[mod]).items())),
        }
    present = [p for p in plans if p["image"]["state"] != "missing"]
    summary = {
        "num_records": len(plans),
        "task": target.name,
        **labels,
        "modalities": mods,
        "sample_rates": dict(
            sorted(Counter(p["audio"]["sample_rate"] for p in plans if p["audio"]["state"] != "missing").items())
        ),
        "image_formats": dict(sorted(Counter(p["image"]["format"] for p in present).items())),
        "image_modes": dict(sorted(Counter("L" if p["image"]["grayscale"] else "RGB" for p in present).items())),
        "text_storage": dict(
            sorted(Counter(p["text"]["storage"] for p in plans if p["text"]["state"] != "missing").items())
        ),
        **bayes,
    }
    if c["write_splits"]:
        summary["splits"] = dict(sorted(Counter(p["split"] for p in plans).items()))
    return summary


def format_summary(summary: Mapping) -> str:
    """Human-readable multi-line rendering of a :func:`generate_sample` summary."""
    target = _TARGETS[summary.get("task", "multiclass")]
    lines = [
        f"sample: {summary['num_records']} records -> {summary.get('output_dir', '?')}",
        *target.label_lines(summary),
    ]
    for mod, st in summary["modalities"].items():
        lines.append(
            f"  {mod + ':':<14} present {st['present']} (clean {st['clean']}, corrupt {st['corrupt']}),"
            f" missing {st['missing']}; modes {_kv(st['modes'])}"
        )
    lines += [
        f"  sample rates:  {_kv(summary['sample_rates'])}",
        f"  image formats: {_kv(summary['image_formats'])}; modes {_kv(summary['image_modes'])}",
        f"  text storage:  {_kv(summary['text_storage'])}",
    ]
    if "splits" in summary:
        lines.append(f"  splits:        {_kv(summary['splits'])}")
    lines.append(target.bayes_line(summary))
    return "\n".join(lines)
