"""Sharded per-modality tensors on disk: written with litdata `optimize`, read by id.

Layout of one modality folder (a DVC output):
  shards/           litdata chunks, one item per record: {"id": str, <tensor fields>}
  ids.json          [record ids in shard order], so readers need not scan the shards
  meta.json         what training needs to know (shapes, vocab size, classes, counts)
  records.jsonl     every valid manifest record (id, label, split): the same for every modality
  rejected.jsonl    every record this stage could not use, with the reason
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from litdata import StreamingDataset, optimize
from litdata.processing.data_processor import DataProcessor

# Reads are random access by id (a shuffled loader): deserialise only the requested item. litdata's default
# decodes a window of neighbouring items per read for sequential streaming, which random reads waste
# (measured in benchmarks/: 100-200 µs instead of 16-28 µs per item).
DECODE_ONE_ITEM = 0

# litdata logs cache set-up details at INFO each time a dataset opens (once per loader worker).
logging.getLogger("litdata").setLevel(logging.WARNING)


class DataSetupError(ValueError):
    """The processed data cannot serve this run as it is (missing, from different runs, without a split or a
    modality the run needs); the message names the fix, and the CLIs print it without a traceback."""


class MissingProcessedData(DataSetupError, FileNotFoundError):
    """No processed data where the run looks for it."""


def write_shards(fn: Callable, inputs: list, out_dir: Path, num_workers: int, chunk_bytes: str) -> list[str]:
    """Run `fn` over inputs in worker processes into litdata chunks; returns ids in shard order."""
    if not inputs:
        return []
    # keep_data_ordered: items land in input order, so the same inputs give the same chunks.
    with _interrupt_exits_nonzero(), _start_method_kept():
        optimize(
            fn=fn,
            inputs=inputs,
            output_dir=str(out_dir),
            chunk_bytes=chunk_bytes,
            num_workers=max(1, min(num_workers, len(inputs))),
            mode="overwrite",
            keep_data_ordered=True,
        )
    if not _wrote_items(out_dir / "index.json"):  # every input was rejected
        shutil.rmtree(out_dir, ignore_errors=True)
        return []
    canonical_chunks(out_dir / "index.json")
    _stamp_content_version(out_dir / "index.json")
    dataset = StreamingDataset(str(out_dir))
    return [dataset[i]["id"] for i in range(len(dataset))]


def _wrote_items(index_path: Path) -> bool:
    """Whether litdata's optimize wrote any item: with every input rejected it writes no index, or (depending on how
    the workers finished) an index without a config or chunks."""
    if not index_path.exists():
        return False
    index = json.loads(index_path.read_text(encoding="utf-8"))
    return bool(index.get("config")) and bool(index.get("chunks"))


@contextmanager
def _start_method_kept() -> Iterator[None]:
    """litdata's optimize switches the process-wide multiprocessing start method to spawn; put the previous one
    back, so DataLoaders started later in the same process fork their workers as before (spawning cost ~6 s)."""
    previous = multiprocessing.get_start_method(allow_none=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(previous, force=True)


@contextmanager
def _interrupt_exits_nonzero() -> Iterator[None]:
    """litdata's Ctrl-C handler stops its workers and then exits with status 0, which tells DVC and shells
    that the stage succeeded; this handler does the same but exits with 130 (interrupted)."""
    original = DataProcessor._signal_handler

    def interrupted(self: DataProcessor, signum: int, frame: Any) -> None:
        for stop_queue in self.stop_queues:
            stop_queue.put(None)
        for worker in self.workers:
            worker.join(0)
        print(
            "interrupted: no output was written (the previous one, if any, is unchanged)", file=sys.stderr, flush=True
        )
        os._exit(128 + signal.SIGINT)

    DataProcessor._signal_handler = interrupted
    try:
        yield
    finally:
        DataProcessor._signal_handler = original


def canonical_chunks(index_path: Path) -> None:
    """Re-cut the chunks so that their boundaries and names depend only on the items, not on how many worker
    processes wrote them: litdata names a chunk after its worker (`chunk-<worker>-<n>.bin`) and each worker fills
    its own chunks, so `preprocess.num_workers` changed the files (and the DVC hash) though not the items. The
    items' bytes are copied unchanged, in order, into `chunk-<n>.bin` files filled up to the configured
    `chunk_bytes` (an item larger than that gets a chunk of its own)."""
    folder = index_path.parent
    index = json.loads(index_path.read_text(encoding="utf-8"))
    config = index["config"]
    if config.get("compression") or config.get("encryption") or any(c.get("dim") for c in index["chunks"]):
        raise ValueError(f"{index_path}: compressed, encrypted or token chunks are not re-cut")
    limit = int(config["chunk_bytes"] or 0)
    chunks, items, size = [], [], 0

    def flush() -> None:
        header = 4 + 4 * (len(items) + 1)
        offsets = np.cumsum([header, *map(len, items)], dtype=np.uint64)
        data = np.uint32(len(items)).tobytes() + offsets.astype(np.uint32).tobytes() + b"".join(items)
        name = f"chunk-{len(chunks)}.bin.tmp"
        (folder / name).write_bytes(data)
        chunks.append({"chunk_bytes": len(data), "chunk_size": len(items), "dim": None, "filename": name})
        items.clear()

    for old in index["chunks"]:
        path = folder / old["filename"]
        for item in _chunk_items(path):
            if items and limit and 4 + 4 * (len(items) + 2) + size + len(item) > limit:
                flush()
                size = 0
            items.append(item)
            size += len(item)
        path.unlink()
    if items:
        flush()
    for chunk in chunks:
        final = chunk["filename"].removesuffix(".tmp")
        os.replace(folder / chunk["filename"], folder / final)
        chunk["filename"] = final
    index["chunks"] = chunks
    index_path.write_text(json.dumps(index, sort_keys=True), encoding="utf-8")


def _chunk_items(path: Path) -> list[bytes]:
    """The items' bytes of a litdata chunk file: uint32 count, uint32 offsets[count + 1], the items."""
    data = path.read_bytes()
    count = int(np.frombuffer(data, np.uint32, 1)[0])
    offsets = np.frombuffer(data, np.uint32, count + 1, offset=4)
    if int(offsets[-1]) != len(data):
        raise ValueError(f"{path}: not a plain litdata chunk ({len(data)} bytes, offsets end at {offsets[-1]})")
    return [data[offsets[i] : offsets[i + 1]] for i in range(count)]


def _stamp_content_version(index_path: Path) -> None:
    """Replace litdata's wall-clock ``updated_at`` in index.json by a hash of the chunk files, so the same
    inputs give byte-identical shards (and the same DVC hash / ``data_version``). litdata only uses the
    value as a cache key for remote datasets, which a content hash serves as well."""
    index = json.loads(index_path.read_text(encoding="utf-8"))
    digest = hashlib.sha256()
    for chunk in index["chunks"]:
        digest.update((index_path.parent / chunk["filename"]).read_bytes())
    index["updated_at"] = digest.hexdigest()[:16]
    index_path.write_text(json.dumps(index, sort_keys=True), encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: Iterable[str]) -> None:
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def item_nbytes(item: Any) -> int:
    """Bytes held by the tensors and arrays of a decoded item (a dict of them, maybe nested)."""
    if isinstance(item, dict):
        return sum(item_nbytes(v) for v in item.values())
    if isinstance(item, (list, tuple)):
        return sum(item_nbytes(v) for v in item)
    if isinstance(item, torch.Tensor):
        return item.numel() * item.element_size()
    return item.nbytes if isinstance(item, np.ndarray) else 0


class ModalityShards:
    """Random access by record id to one modality's processed items.

    The small files (meta.json, ids.json, records.jsonl) are read from `folder`; the chunks from
    `folder/shards`, or, with `shards_url` (e.g. s3://bucket/processed), streamed by litdata from
    `<shards_url>/<modality>/shards` into `cache_dir` as they are needed (local chunks are memory-mapped).
    Decoded items are kept in memory up to `memory_cache_mb` (per process; the first items read stay), so
    the epochs after the first of a small dataset read no chunk again; nothing reads them mutably.
    """

    def __init__(
        self,
        folder: Path,
        shards_url: str | None = None,
        cache_dir: str | None = None,
        memory_cache_mb: float = 0.0,
    ):
        self.folder = Path(folder)
        if not (self.folder / "meta.json").is_file():
            raise MissingProcessedData(
                f"no processed data in {self.folder}: run the preprocessing stage first "
                f"(`dvc repro preprocess_{self.folder.name}`)"
            )
        self.meta = json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
        ids = json.loads((self.folder / "ids.json").read_text(encoding="utf-8"))
        self.position = {record_id: i for i, record_id in enumerate(ids)}
        self.source = (
            f"{shards_url.rstrip('/')}/{self.folder.name}/shards" if shards_url else str(self.folder / "shards")
        )
        self.cache_dir = cache_dir
        self._dataset: StreamingDataset | None = None
        self.memory_cache_bytes = int(memory_cache_mb * 2**20)
        self._items: dict[int, Any] = {}
        self._cached_bytes = 0

    @property
    def modality(self) -> str:
        return self.meta["modality"]

    def records(self) -> list[dict]:
        return read_jsonl(self.folder / "records.jsonl")

    def get(self, record_id: str) -> dict | None:
        """The record's item, or None where this modality is missing or was rejected."""
        index = self.position.get(record_id)
        if index is None:
            return None
        item = self._items.get(index)
        if item is not None:
            return item
        if self._dataset is None:  # opened lazily, so each DataLoader worker opens its own
            self._dataset = StreamingDataset(self.source, cache_dir=self.cache_dir, batch_decode=DECODE_ONE_ITEM)
            self._check_same_run(self._dataset)
        item = self._dataset[index]
        size = item_nbytes(item)
        if self._cached_bytes + size <= self.memory_cache_bytes:
            self._items[index] = item
            self._cached_bytes += size
        return item

    def _check_same_run(self, dataset: StreamingDataset) -> None:
        """The chunks (their index.json, local or fetched into the cache) hold as many items as ids.json lists.
        len(dataset) is not it: under distributed training litdata reports one rank's share."""
        index = json.loads((Path(dataset.input_dir.path) / "index.json").read_text(encoding="utf-8"))
        items = sum(chunk["chunk_size"] for chunk in index["chunks"])
        if items != len(self.position):
            raise DataSetupError(
                f"{self.source} holds {items} items but {self.folder / 'ids.json'} lists "
                f"{len(self.position)}: the chunks and the small files come from different "
                f"preprocessing runs; copy both from the same run"
            )

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_dataset": None, "_items": {}, "_cached_bytes": 0}
