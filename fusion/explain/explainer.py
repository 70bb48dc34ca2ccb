"""Attention figures and modality contributions for chosen samples of a model bundle, written to a folder:

summary.json               the samples (id, label, prediction, scores), the contributions, which files exist
contribution.png / .csv    per sample and on average over a split: removal change, gate values, attention mass
index.html                 every figure of every sample on one self-contained page
<sample>/text_attention.html, text_attention.png, image_attention.png, audio_attention.png,
<sample>/cross_<query>_to_<key>.png   (rows: the query modality's tokens, columns: the key modality's)
"""

from __future__ import annotations

import base64
import csv
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from fusion.explain import figures
from fusion.explain.capture import captured_attention
from fusion.explain.contribution import change_name, removal_changes, split_removal
from fusion.explain.maps import BOTTLENECKS, LATENTS, AttentionMaps, attention_maps
from fusion.explain.views import TokenView, audio_view, image_view, special_view, step_view, text_view
from fusion.meta import FEATURES
from fusion.serving.bundle import ModelBundle
from fusion.serving.predictions import prediction_rows

SUMMARY, CONTRIBUTION, INDEX = "summary.json", "contribution", "index.html"


def sample_folder(sample_id: str) -> str:
    """A file-system-safe folder name for a record id (other characters become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", sample_id).strip(".") or "sample"


@dataclass
class SampleResult:
    id: str
    label: str
    prediction: str
    files: list[str] = field(default_factory=list)
    contribution: dict[str, dict[str, float]] = field(default_factory=dict)  # measure -> modality -> value


def _label_text(bundle: ModelBundle, label: Any) -> str:
    if bundle.labels.task == "multiclass":
        return bundle.classes[int(label)]
    if bundle.labels.task == "multilabel":
        return "|".join(c for c, v in zip(bundle.classes, label, strict=True) if float(v) > 0.5) or "(none)"
    return f"{float(label):.3g}"


def _views(
    bundle: ModelBundle, maps: AttentionMaps, batch: dict, masks: dict, i: int, tokenizer: Any
) -> dict[str, TokenView]:
    """The token view of every modality the sample holds (and of latents / bottleneck queries)."""
    views: dict[str, TokenView] = {}
    encoders = bundle.net.encoders
    for m, weights in maps.tokens.items():
        if not bool(batch[m]["present"][i]):
            continue
        row = weights[i]
        if m in maps.mass and float(maps.mass[m][i]) > 0:  # a share of a joint softmax: within-modality weights
            row = row / maps.mass[m][i]
        if bundle.metas[m].get("kind") == FEATURES:  # precomputed features: one token per step
            views[m] = step_view(m, row, masks[m][i])
        elif m == "text":
            views[m] = text_view(row, masks[m][i], batch["text"]["tokens"][i], tokenizer)
        elif m == "image":
            views[m] = image_view(row, encoders["image"])
        else:
            meta = bundle.metas["audio"]
            views[m] = audio_view(row, masks[m][i], encoders["audio"], meta["hop_length"] / meta["sample_rate"])
    for (query, _), matrix in maps.cross.items():
        if query in (LATENTS, BOTTLENECKS):
            views.setdefault(query, special_view(query, matrix.shape[1]))
    return views


def _sample_figures(
    bundle: ModelBundle,
    maps: AttentionMaps,
    batch: dict,
    masks: dict,
    i: int,
    title: str,
    folder: Path,
    cfg: DictConfig,
    tokenizer: Any,
) -> list[Path]:
    views, written = _views(bundle, maps, batch, masks, i, tokenizer), []
    note = f"weights: {maps.source}, mean over heads"
    featured = {m for m in views if bundle.metas.get(m, {}).get("kind") == FEATURES}
    for m in sorted(featured):  # precomputed features: the weights over the steps
        written.append(
            figures.plot_text_attention(views[m].labels, views[m].weights, folder / f"{m}_attention.png", title)
        )
    if "text" in views and "text" not in featured:
        v = views["text"]
        (folder / "text_attention.html").write_text(
            figures.text_attention_html(v.labels, v.weights, title, note), encoding="utf-8"
        )
        written += [
            folder / "text_attention.html",
            figures.plot_text_attention(v.labels, v.weights, folder / "text_attention.png", title),
        ]
    if "image" in views and "image" not in featured:
        image = batch["image"]["image"][i].expand(3, -1, -1).permute(1, 2, 0).numpy()  # grey shown as RGB
        written.append(
            figures.plot_image_attention(image, views["image"].weights, folder / "image_attention.png", title)
        )
    if "audio" in views and "audio" not in featured:
        v, meta = views["audio"], bundle.metas["audio"]
        mel, frames = batch["audio"]["mel"][i].numpy(), int(batch["audio"]["mask"][i].sum())
        written.append(
            figures.plot_audio_attention(
                mel[:, :frames],
                v.weights,
                v.frames_per_token,
                meta["hop_length"] / meta["sample_rate"],
                folder / "audio_attention.png",
                title,
                valid_frames=frames,
            )
        )
    limit = int(cfg.max_tokens)
    for (query, key), matrix in maps.cross.items():
        if query not in views or key not in views:
            continue
        q, k = views[query], views[key]
        block = matrix[i][q.valid][:, k.valid].numpy()[:limit, :limit]
        written.append(
            figures.plot_cross_attention(
                block,
                q.labels[:limit],
                k.labels[:limit],
                query,
                key,
                folder / f"cross_{query}_to_{key}.png",
                f"{title} · {query} attending to {key} ({cfg.layer} layer)",
            )
        )
    return written


def explain_batch(
    bundle: ModelBundle, samples: Sequence[dict], out_dir: str | Path, cfg: DictConfig
) -> list[SampleResult]:
    """Figures of ``samples`` (dataset items: id, label, one item or None per modality) into ``out_dir``."""
    out_dir = Path(out_dir)
    net, task = bundle.net, bundle.task
    batch = bundle.collate(list(samples))
    inputs = {m: batch[m] for m in bundle.modalities}
    with torch.no_grad(), captured_attention(net) as records:
        scores = task.scores(net(inputs)).float()
        _, masks = net.encode(inputs)
    maps = attention_maps(net.fusion, records, str(cfg.layer))
    changes = removal_changes(net, task, batch)
    rows = prediction_rows(batch["id"], scores, task)
    tokenizer = getattr(bundle.processor("text"), "tokenizer", None) if "text" in bundle.modalities else None  # once
    results = []
    for i, sample_id in enumerate(batch["id"]):
        folder = out_dir / sample_folder(sample_id)
        folder.mkdir(parents=True, exist_ok=True)
        result = SampleResult(sample_id, _label_text(bundle, batch["label"][i].tolist()), str(rows[i]["prediction"]))
        title = f"{sample_id} · true: {result.label} · predicted: {result.prediction}"
        files = _sample_figures(bundle, maps, batch, masks, i, title, folder, cfg, tokenizer)
        result.files = [str(p.relative_to(out_dir)) for p in files]
        result.contribution[change_name(task)] = {m: float(v[i]) for m, v in changes.items()}
        if maps.gates:
            result.contribution["gate value"] = {m: float(v[i]) for m, v in maps.gates.items()}
        if maps.mass:
            result.contribution["attention mass"] = {m: float(v[i]) for m, v in maps.mass.items()}
        results.append(result)
    return results


def _matrix(results: Sequence[SampleResult], measure: str, modalities: list[str]) -> np.ndarray:
    return np.array([[r.contribution[measure].get(m, np.nan) for m in modalities] for r in results], dtype=float)


def write_contribution(
    results: Sequence[SampleResult],
    modalities: list[str],
    split: dict[str, dict] | None,
    split_name: str,
    metric: str,
    out_dir: Path,
    title: str,
) -> list[Path]:
    """contribution.png (per sample, and the split averages when given) and contribution.csv."""
    measures = list(results[0].contribution) if results else []
    averages = None
    if split:
        # Named as the per-sample removal measure: drawn as a hatched "average" group in that measure's panel.
        averages = {
            measures[0]: np.array([split[m]["change"] for m in modalities]),
            f"{metric} drop when removed ({split_name} split)": np.array([split[m]["metric_drop"] for m in modalities]),
        }
    png = figures.plot_contribution(
        [r.id for r in results],
        modalities,
        {name: _matrix(results, name, modalities) for name in measures},
        out_dir / f"{CONTRIBUTION}.png",
        title,
        averages=averages,
    )
    path = out_dir / f"{CONTRIBUTION}.csv"
    with path.open("w", encoding="utf-8", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(["sample", "measure", *modalities])
        for r in results:
            for name in measures:
                writer.writerow([r.id, name, *(r.contribution[name].get(m, "") for m in modalities)])
        for name, values in (averages or {}).items():
            writer.writerow([f"(mean over the {split_name} split)", name, *values.tolist()])
    return [png, path]


def write_index(results: Sequence[SampleResult], out_dir: Path, title: str) -> Path:
    """index.html: every sample's figures on one self-contained page (PNGs inlined, the text HTML embedded)."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    contribution = out_dir / f"{CONTRIBUTION}.png"
    if contribution.is_file():
        parts.append(f"<h2>Modality contribution</h2>{_img(contribution)}")
    for r in results:
        parts.append(
            f"<h2>{html.escape(r.id)}: true {html.escape(r.label)}, predicted {html.escape(r.prediction)}</h2>"
        )
        for name in r.files:
            path = out_dir / name
            if path.suffix == ".png":
                parts.append(_img(path))
            elif path.suffix == ".html":
                parts.append(
                    f'<iframe srcdoc="{html.escape(path.read_text(encoding="utf-8"))}" '
                    f'style="width:100%;height:220px;border:0"></iframe>'
                )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}img{max-width:100%;display:block;"
        "margin:1em 0}</style></head><body>" + "\n".join(parts) + "</body></html>"
    )
    path = out_dir / INDEX
    path.write_text(page, encoding="utf-8")
    return path


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def explain_samples(
    bundle: ModelBundle,
    samples: Sequence[dict],
    out_dir: str | Path,
    cfg: DictConfig,
    split_batches: Iterable[dict] | None = None,
    split_name: str = "test",
    title: str = "",
) -> dict[str, Any]:
    """The whole explain folder for ``samples``; ``split_batches`` (optional) gives the split averages of the
    removal measures. Returns the summary (also written to summary.json)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = title or f"{bundle.cfg.modality.name} · {bundle.cfg.fusion.name}"
    results = explain_batch(bundle, samples, out_dir, cfg)
    split = split_removal(bundle.net, bundle.task, split_batches) if split_batches is not None else None
    write_contribution(
        results, bundle.modalities, split, split_name, bundle.task.metric, out_dir, f"{title}: modality contribution"
    )
    write_index(results, out_dir, f"{title}: attention and modality contribution")
    summary = {
        "modality": bundle.cfg.modality.name,
        "fusion": bundle.cfg.fusion.name,
        "layer": str(cfg.layer),
        "samples": [
            {
                "id": r.id,
                "label": r.label,
                "prediction": r.prediction,
                "folder": sample_folder(r.id),
                "contribution": r.contribution,
            }
            for r in results
        ],
        "files": {r.id: r.files for r in results},
        "split": None if split is None else {"name": split_name, "metric": bundle.task.metric, "per_modality": split},
    }
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
