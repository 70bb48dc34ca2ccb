"""Byte-identical preprocessing: the output folder does not depend on `preprocess.num_workers` (chunks are re-cut
by item, not by worker) nor on the number of torch threads (audio is computed in float64, stored in float16)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from fusion.config import compose
from fusion.data.manifest import load_manifest
from fusion.data.shards import ModalityShards
from fusion.preprocess.audio import AudioProcessor
from fusion.preprocess.common import run_preprocess

SMALL_CHUNKS = "preprocess.chunk_bytes=1KB"  # several chunks per worker, so the boundaries matter


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_output_is_byte_identical_for_one_and_two_workers(sample_root, tmp_path):
    outputs = {}
    for workers in (1, 2):
        cfg = compose(
            [
                f"data.root={sample_root}",
                f"data.processed_dir={tmp_path / str(workers)}",
                f"preprocess.num_workers={workers}",
                SMALL_CHUNKS,
            ]
        )
        run_preprocess("text", cfg)
        outputs[workers] = _files(tmp_path / str(workers) / "text")
    chunks = [name for name in outputs[1] if name.endswith(".bin")]
    assert len(chunks) > 2 and chunks[:2] == ["shards/chunk-0.bin", "shards/chunk-1.bin"]
    assert outputs[1] == outputs[2]
    shards = ModalityShards(tmp_path / "2" / "text")  # the re-cut chunks read back, item by id
    assert all(shards.get(record_id)["id"] == record_id for record_id in shards.position)


def test_audio_features_do_not_depend_on_the_thread_count(sample_root):
    cfg = compose([f"data.root={sample_root}"])
    records = [r for r in load_manifest(sample_root, "manifest.jsonl", cfg.data.split, "test").records if r.audio]
    before = torch.get_num_threads()
    results = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            processor = AudioProcessor(cfg.preprocess.audio, sample_root, "audio")
            processor.fit([r for r in records if r.split == "train"])
            results[threads] = (processor.mean, processor.std, [processor.process(r)["mel"] for r in records[:40]])
    finally:
        torch.set_num_threads(before)
    (mean1, std1, mels1), (mean2, std2, mels2) = results[1], results[2]
    assert (mean1, std1) == (mean2, std2)
    assert all(a.dtype == torch.float16 and torch.equal(a, b) for a, b in zip(mels1, mels2, strict=True))
