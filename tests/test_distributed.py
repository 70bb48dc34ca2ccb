"""Distributed training: trainer=ddp_cpu (2 gloo processes) against one process, samplers, strategies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from pytorch_lightning.strategies import FSDPStrategy
from torch.utils.data import DistributedSampler

from fusion.config import compose
from fusion.data.datamodule import MultimodalDataModule
from fusion.data.samplers import UnpaddedDistributedSampler
from fusion.models.attention import Block
from fusion.training.checkpoints import load_checkpoint
from fusion.training.strategies import fsdp_strategy, relaunches_script

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 16  # the tiny sample has 80 training records: 5 global batches, split evenly over 2 processes
COMPARED_METRICS = (
    "train/loss",
    "train/acc",
    "train/f1_macro",
    "val/loss",
    "val/acc",
    "val/f1_macro",
    "test/loss",
    "test/acc",
    "test/f1_macro",
)
TOLERANCE = 1e-4  # float32 sums in another order (2 processes of 1 thread vs 1 process of 2 threads)


def _train(trainer: str, batch_size: int, processed_dir: Path, out: Path, env: dict) -> tuple:
    """train.py with `trainer` on text+audio with the patch audio encoder (no BatchNorm: SyncBatchNorm needs
    GPUs), manifest order, no dropout and no augmentation (its draws are per process), so one and two processes
    see the same global batches; returns (MLflow run, run folder)."""
    run_dir, db = out / f"run-{trainer}", out / f"{trainer}.db"
    args = [
        sys.executable,
        "train.py",
        f"trainer={trainer}",
        "modality=text+audio",
        "fusion=cross_attention",
        "trainer.max_epochs=2",
        "trainer.enable_model_summary=false",
        f"data.batch_size={batch_size}",
        "data.shuffle=false",
        "data.num_workers=0",
        "model.dim=32",
        "model.head_hidden=32",
        "model.dropout=0.0",
        "model.audio.kind=patch",
        "augment.enabled=false",
        f"data.processed_dir={processed_dir}",
        f"logger.tracking_uri=sqlite:///{db}",
        f"logger.artifact_location={out / 'artifacts'}",
        f"hydra.run.dir={run_dir}",
    ]
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{trainer} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("fusion").experiment_id])
    assert len(runs) == 1, f"{trainer}: {len(runs)} MLflow runs, expected one (rank 0 only)"
    return client, runs[0], run_dir


def _history(client: MlflowClient, run, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


@pytest.mark.slow
def test_ddp_cpu_matches_a_single_process_with_the_same_global_batch(processed_dir, tmp_path, subprocess_env):
    single = _train("cpu", GLOBAL_BATCH, processed_dir, tmp_path, subprocess_env)
    ddp = _train("ddp_cpu", GLOBAL_BATCH // 2, processed_dir, tmp_path, subprocess_env)

    for key in COMPARED_METRICS:
        expected, got = _history(*single[:2], key), _history(*ddp[:2], key)
        assert [s for s, _ in got] == [s for s, _ in expected], key
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], abs=TOLERANCE), key
    weights = {
        name: load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]
        for name, run_dir in (("single", single[2]), ("ddp", ddp[2]))
    }
    assert weights["ddp"].keys() == weights["single"].keys()
    for name, tensor in weights["single"].items():
        torch.testing.assert_close(weights["ddp"][name], tensor, atol=TOLERANCE, rtol=0, msg=name)

    client, run, run_dir = ddp
    assert run.data.params["trainer/devices"] == "2" and run.data.params["trainer/strategy"] == "ddp"
    samples = _history(client, run, "time/train_samples_per_second")
    assert len(samples) == 2 and all(v > 0 for _, v in samples)  # throughput summed over the 2 ranks
    # One run folder: rank 1 writes into rank 0's (no second Hydra folder, no per-rank config copy).
    assert sorted(p.name for p in tmp_path.glob("run-*")) == ["run-cpu", "run-ddp_cpu"]
    assert [p.name for p in run_dir.rglob(".hydra")] == [".hydra"]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def test_a_sweep_with_a_relaunching_strategy_is_refused_with_the_fix(subprocess_env, tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "-m", "trainer=ddp_cpu", "fusion=late,gated", f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "cannot run inside a -m sweep" in result.stderr and "without -m" in result.stderr


@pytest.mark.parametrize(
    "trainer, expected",
    [
        ({"strategy": "ddp", "devices": 2}, True),
        ({"strategy": "ddp", "devices": -1}, True),
        ({"strategy": "ddp", "devices": 1}, False),
        ({"strategy": "ddp_spawn", "devices": 2}, False),
        ({"strategy": "auto", "devices": 1}, False),
        ({"strategy": {"_target_": "fusion.training.strategies.fsdp_strategy"}, "devices": -1}, True),
    ],
)
def test_relaunches_script(trainer, expected):
    assert relaunches_script(trainer) is expected


@pytest.mark.parametrize("size, world", [(7, 2), (20, 2), (5, 3), (1, 2)])
def test_unpadded_sampler_gives_every_sample_exactly_once(size, world):
    dataset = list(range(size))
    parts = [list(UnpaddedDistributedSampler(dataset, num_replicas=world, rank=r)) for r in range(world)]
    assert sorted(i for part in parts for i in part) == dataset
    assert [len(UnpaddedDistributedSampler(dataset, num_replicas=world, rank=r)) for r in range(world)] == [
        len(part) for part in parts
    ]


def test_evaluation_loaders_use_the_unpadded_sampler_when_distributed(processed_dir, monkeypatch):
    import fusion.data.datamodule as datamodule_module

    data = MultimodalDataModule(processed_dir, ["text"], batch_size=4, shuffle=False)
    assert data.train_dataloader().sampler.__class__.__name__ == "SequentialSampler"
    monkeypatch.setattr(datamodule_module, "distributed_world", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 1)
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    for split in ("val", "test"):
        sampler = data.loader(split).sampler
        assert isinstance(sampler, UnpaddedDistributedSampler) and list(sampler)[:2] == [1, 3]
    # Training: a DistributedSampler (ranks evened out for gradient sync) that keeps data.shuffle=false in order.
    train = data.train_dataloader().sampler
    assert type(train) is DistributedSampler and not train.shuffle and list(train)[:2] == [1, 3]


def test_fsdp_option_builds_lightnings_strategy_with_the_wrap_policy():
    cfg = compose(["trainer=fsdp"])
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    assert Block in policy._module_classes
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"


def test_fsdp_strategy_names_a_bad_class_path():
    with pytest.raises(ValueError, match="trainer.strategy.wrap.*importable class paths"):
        fsdp_strategy(wrap=["fusion.models.attention.NoSuchBlock"])
