"""The benchmark run: every system on every dataset and seed, one after the other on this machine.

Layout under `--out`: results.json (every raw number, rewritten after each run, so an interrupted benchmark
keeps what it measured and `--resume` continues it), accuracy.md (the tables), logs/ (each subprocess's output),
work/ (shards, run folders, the MLflow store) and data/ (the built datasets, unless --data-dir says otherwise).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks.accuracy.baselines import lenet, logreg, rawdata
from benchmarks.accuracy.datasets.build import DATASET_INFO, MANIFEST, build, fingerprint
from benchmarks.accuracy.datasets.registry import DATASETS, builder
from benchmarks.accuracy.runner import project, summary
from benchmarks.accuracy.runner.systems import System, preprocess_only
from benchmarks.accuracy.timing import timed
from benchmarks.machine import describe
from fusion.data.manifest import MODALITY_KEYS

RESULTS, TABLES = "results.json", "accuracy.md"
BASELINES = {"logreg": logreg.run, "lenet": lenet.run}
ERROR_CHARS = 300


@dataclass
class Settings:
    """What one `run` does (the CLI's options, resolved)."""

    datasets: list[str]
    seeds: list[int]
    systems: list[System]
    out: Path
    data_dir: Path
    records: int | None = None  # None: each dataset's default
    dataset_seed: int = 0
    checkout: Path = project.PROJECT_ROOT  # the project whose train.py is measured
    project_overrides: tuple[str, ...] = ()  # added to every train.py run (--quick: fewer epochs; --set)
    baseline_epochs: int = lenet.EPOCHS
    preprocess_timeout: float = project.PREPROCESS_TIMEOUT_SECONDS
    train_timeout: float = project.TRAIN_TIMEOUT_SECONDS
    markdown: Path | None = None  # RESULTS.md to update (None: only accuracy.md under out)
    resume: bool = False
    rebuild: bool = False  # build the datasets even when a complete folder is there
    command: str = "python -m benchmarks.accuracy run"
    say: Callable[[str], None] = field(default=print, repr=False)


def own_dataset(entry: str) -> Path | None:
    """The folder of a dataset of one's own, resolved: ``entry`` is no benchmark dataset's name and names a folder
    that holds manifest.jsonl (the project's data contract); None for a benchmark dataset."""
    if entry in DATASETS:
        return None
    path = Path(entry).expanduser()
    return path.resolve() if (path / MANIFEST).is_file() else None


def own_info(root: Path) -> dict[str, Any]:
    """What dataset.json says of a benchmark dataset, for a folder of one's own: its records, their splits and the
    modalities they hold (Bayes bounds only the benchmark's builders know). Every record needs a split."""
    records = rawdata.read_manifest(root)
    held = [m for m in rawdata.MODALITIES if any(r.get(k) is not None for r in records for k in MODALITY_KEYS[m])]
    return {
        "summary": f"your dataset ({root})",
        "records": len(records),
        "splits": {split: n for split, n in sorted(Counter(r["split"] for r in records).items())},
        "modalities": held,
    }


def dataset_root(settings: Settings, name: str) -> Path:
    records = settings.records or builder(name).default_records
    return settings.data_dir / f"{name}-n{records}-s{settings.dataset_seed}"


def ensure_dataset(settings: Settings, name: str) -> Path:
    """The dataset folder, built unless a complete one (manifest and dataset.json) is there (or --rebuild)."""
    root = dataset_root(settings, name)
    with _dataset_lock(root):
        if settings.rebuild or not ((root / MANIFEST).is_file() and (root / DATASET_INFO).is_file()):
            settings.say(f"[{name}] building {root}")
            build(builder(name), root, settings.records, settings.dataset_seed)
    return root


@contextlib.contextmanager
def _dataset_lock(root: Path):
    """Held while a dataset folder is checked and built: runs started together on the same data dir (e.g. the
    systems split over two processes) build it once, and none swaps the folder under another's preprocessing."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


class DatasetWork:
    """What the systems of one dataset share within a run: its shards per set of preprocessing overrides (made
    once, with their timing) and its decoded raw data for the baselines (decoded once, timed)."""

    def __init__(self, settings: Settings, name: str, root: Path, info: dict[str, Any]):
        self.settings, self.name, self.root, self.info = settings, name, root, info
        self.modalities = list(info.get("modalities", rawdata.MODALITIES))  # a folder of one's own may lack some
        self.work = settings.out / "work" / name
        self.logs = settings.out / "logs" / name
        self._processed: dict[tuple[str, ...], Path] = {}
        self._raw: rawdata.RawDataset | None = None

    def processed(self, overrides: tuple[str, ...]) -> Path:
        if overrides not in self._processed:
            digest = hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8] if overrides else "defaults"
            folder = self.work / f"processed-{digest}"
            self.settings.say(f"[{self.name}] preprocessing into {folder}")
            timings = project.preprocess(
                self.root,
                folder,
                overrides,
                self.logs / f"preprocess-{digest}.log",
                self.settings.checkout,
                self.settings.preprocess_timeout,
                self.modalities,
            )
            self.info.setdefault("preprocess", {})[digest] = {m: asdict(t) for m, t in timings.items()}
            self._processed[overrides] = folder
        return self._processed[overrides]

    def raw(self) -> rawdata.RawDataset:
        if self._raw is None:
            with timed() as timing:
                self._raw = rawdata.load(self.root)
            self.info["baseline_decode"] = {**asdict(timing), "errors": self._raw.decode_errors}
        return self._raw


def run_system(settings: Settings, work: DatasetWork, system: System, seed: int) -> dict[str, Any]:
    """One (dataset, system, seed): its figures, or its error."""
    row: dict[str, Any] = {"dataset": work.name, "system": system.name, "seed": seed, "error": None}
    try:
        if system.kind == "project":
            row.update(_project_row(settings, work, system, seed))
        else:
            kwargs = {"epochs": settings.baseline_epochs} if system.kind == "lenet" else {}
            row.update(BASELINES[system.kind](work.raw(), seed, **kwargs).to_json())
    except Exception as exc:  # one failing system is a result, not the end of the benchmark
        row["error"] = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
    return row


def _project_row(settings: Settings, work: DatasetWork, system: System, seed: int) -> dict[str, Any]:
    # On a dataset without some modality the fused systems use those it holds (a --set modality= comes later and wins).
    fused_on_fewer = not system.alone and work.modalities != list(rawdata.MODALITIES)
    held = [f"modality={'+'.join(work.modalities)}"] if fused_on_fewer else []
    overrides = [*held, *system.overrides, *settings.project_overrides]
    processed = work.processed(preprocess_only(overrides))
    run_dir = work.work / "runs" / f"{system.name}-s{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    result = project.train(
        work.root,
        processed,
        seed,
        run_dir,
        settings.out / "work" / "mlflow",
        overrides,
        work.logs / f"{system.name}-s{seed}.log",
        settings.checkout,
        settings.train_timeout,
    )
    return {
        "test_acc": result.test_acc,
        "test_f1_macro": result.test_f1_macro,
        "without": result.without,
        "holding": result.holding,
        "cpu_seconds": result.timing.cpu,
        "wall_seconds": result.timing.wall,
        "fit_seconds": result.fit_seconds,
        "fit_cpu_seconds": result.fit_cpu_seconds,
        "run_id": result.run_id,
        "run_dir": str(run_dir),
        "overrides": overrides,
    }


def load_results(settings: Settings) -> dict[str, Any]:
    """A fresh results document, or with --resume the one under --out (its successful runs are kept)."""
    path = settings.out / RESULTS
    if settings.resume and path.is_file():
        results = json.loads(path.read_text(encoding="utf-8"))
        results["runs"] = [r for r in results["runs"] if not r.get("error")]
        before = results.get("settings", {}).get("project_overrides", [])
        if before != list(settings.project_overrides) and any(r.get("run_id") for r in results["runs"]):
            raise SystemExit(
                f"error: the kept runs of --resume in {path} were trained with the overrides {before or 'none'}, "
                f"this run would add {list(settings.project_overrides) or 'none'}: give the same --set (and "
                "--quick) or another --out"
            )
        return results
    return {"runs": [], "datasets": {}}


def _checked_fingerprint(results: dict[str, Any], name: str, root: Path) -> str:
    """The dataset folder's fingerprint, checked against the one the kept runs (--resume) were measured on: one
    results.json never mixes runs on two versions of a dataset (a rebuild in another environment can differ)."""
    now = fingerprint(root)
    before = results["datasets"].get(name, {}).get("fingerprint")
    if before and before != now and any(r["dataset"] == name for r in results["runs"]):
        raise SystemExit(
            f"error: {root} is not the {name} data the kept runs of --resume were measured on (fingerprint "
            f"{before[:12]}, now {now[:12]}): rerun without --resume, or point --data-dir at that data"
        )
    return now


def save(settings: Settings, results: dict[str, Any]) -> Path:
    path = settings.out / RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def run(settings: Settings) -> dict[str, Any]:
    """Run everything, save results.json after each run, then write the tables."""
    results = load_results(settings)
    results["load_average"] = {"started": os.getloadavg()[0]}
    results.update(
        machine=describe(torch.device("cpu")),
        command=settings.command,
        started=_now(),
        systems=summary.labels(settings.systems, settings.project_overrides),
        settings={
            "seeds": settings.seeds,
            "records": settings.records,
            "dataset_seed": settings.dataset_seed,
            "checkout": str(settings.checkout),
            "project_overrides": list(settings.project_overrides),
            "baseline_epochs": settings.baseline_epochs,
        },
    )
    for entry in settings.datasets:
        own = own_dataset(entry)
        name, root = (own.name, own) if own else (entry, ensure_dataset(settings, entry))
        info = own_info(root) if own else json.loads((root / DATASET_INFO).read_text(encoding="utf-8"))
        info.pop("description", None)
        fingerprint_now = _checked_fingerprint(results, name, root)
        results["datasets"][name] = {**info, "path": str(root), "fingerprint": fingerprint_now}
        work = DatasetWork(settings, name, root, results["datasets"][name])
        absent = [s.name for s in settings.systems if s.alone and s.alone not in work.modalities]
        if absent:
            settings.say(f"[{name}] skipping {', '.join(absent)}: the dataset holds no such modality")
        for seed in settings.seeds:
            for system in settings.systems:
                if system.name in absent or any(
                    r["dataset"] == name and r["system"] == system.name and r["seed"] == seed for r in results["runs"]
                ):
                    continue
                row = run_system(settings, work, system, seed)
                results["runs"].append(row)
                save(settings, results)
                settings.say(f"[{name}] seed {seed} {system.name}: " + _brief(row))
    results["finished"] = _now()
    results["load_average"]["finished"] = os.getloadavg()[0]
    path = save(settings, results)
    summary.publish(results, path, settings.out / TABLES, settings.markdown)
    return results


def _brief(row: dict[str, Any]) -> str:
    if row.get("error"):
        return f"FAILED {row['error']}"
    acc = row.get("test_acc")
    return (
        f"test acc {'n/a' if acc is None else f'{acc:.3f}'}, CPU {row['cpu_seconds']:.0f} s, "
        f"wall {row['wall_seconds']:.0f} s"
    )


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
