"""Writing the dataset: each planned record's files and manifest entry, rendered into a temporary folder that
atomically replaces the output folder (:func:`generate_sample`, the entry point)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from tqdm import tqdm

from fusion.data.sample.audio import encode_audio, render_audio
from fusion.data.sample.config import SUBDIRS
from fusion.data.sample.image import encode_image, render_image
from fusion.data.sample.plan import plan_dataset
from fusion.data.sample.summary import summarize
from fusion.data.sample.text import render_text
from fusion.data.sample.validate import validate_config


def _write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to a file."""
    with open(path, "wb") as fh:
        fh.write(data)


def write_record(cfg: Mapping, plan: dict, root: Path) -> dict:
    """Render one record's files under ``root`` and return its manifest entry."""
    rid = plan["id"]
    entry: dict[str, Any] = {"id": rid, "label": plan["label"], "image": None, "audio": None}
    if plan["image"]["state"] != "missing":
        ext = "jpg" if plan["image"]["format"] == "jpeg" else "png"
        rel = f"{SUBDIRS['image']}/{rid}.{ext}"
        _write_bytes(root / rel, encode_image(render_image(cfg, plan), plan["image"]["format"], cfg["image"]))
        entry["image"] = rel
    if plan["audio"]["state"] != "missing":
        rel = f"{SUBDIRS['audio']}/{rid}.wav"
        _write_bytes(root / rel, encode_audio(*render_audio(cfg, plan), cfg["audio"]))
        entry["audio"] = rel
    if plan["text"]["state"] == "missing":
        entry["text"] = None
    elif plan["text"]["storage"] == "file":
        rel = f"{SUBDIRS['text']}/{rid}.txt"
        _write_bytes(root / rel, render_text(cfg, plan).encode("utf-8"))
        entry["text_path"] = rel
    else:
        entry["text"] = render_text(cfg, plan)
    if "split" in plan:
        entry["split"] = plan["split"]
    return entry


def _manifest_line(entry: dict) -> str:
    """One manifest line: sorted keys, UTF-8 kept as is."""
    return json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"


def _replace_dir(tmp: Path, output_dir: Path) -> None:
    """Move the finished ``tmp`` folder to ``output_dir``, removing any previous one."""
    old = None
    if output_dir.exists() or output_dir.is_symlink():
        old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.rename(output_dir, old)
    os.rename(tmp, output_dir)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


def generate_sample(cfg: Any, output_dir: Path) -> dict:
    """Generate the dataset into ``output_dir`` atomically and return a summary dict.

    Files are rendered into a hidden temporary sibling folder which then replaces
    ``output_dir``, so an interrupted run never leaves a complete-looking dataset.
    """
    c = validate_config(cfg)
    output_dir = Path(output_dir)
    plans = plan_dataset(c)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        os.chmod(tmp, 0o755)
        for sub in SUBDIRS.values():
            (tmp / sub).mkdir()
        lines = [
            _manifest_line(write_record(c, plan, tmp))
            for plan in tqdm(plans, desc="sample", unit="rec", disable=not c["progress"])
        ]
        with open(tmp / "manifest.jsonl", "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(lines)
        _replace_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = summarize(c, plans)
    summary["output_dir"] = str(output_dir)
    return summary
