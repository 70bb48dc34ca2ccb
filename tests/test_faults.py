"""Faults in training: a SIGKILL mid-epoch and resume, NaN losses, determinism, unsafe checkpoints,
modality dropout."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient

from fusion.data.ablation import drop_modalities, modality_dropout
from fusion.stages.train import train
from fusion.tracking.store import absolute_tracking_uri
from fusion.training.checkpoints import AtomicCheckpointIO, CheckpointError, load_checkpoint, load_weights
from fusion.training.module import NonFiniteLossError, dropout_rates
from fusion.training.resume import ResumeError, check_same_config, config_differences, resolve_checkpoint, run_folder
from tests.helpers.config import ROOT, TINY_TRAINING, tiny_config
from tests.helpers.tracking import assert_learned


# ---------------------------------------------------------------- modality dropout
def _batch(n: int = 64, present: dict | None = None) -> dict:
    present = present or {}
    return {
        "id": [str(i) for i in range(n)],
        "text": {
            "tokens": torch.ones(n, 5, dtype=torch.long),
            "mask": torch.ones(n, 5, dtype=torch.bool),
            "present": present.get("text", torch.ones(n, dtype=torch.bool)),
        },
        "image": {
            "image": torch.full((n, 3, 4, 4), 7, dtype=torch.uint8),
            "present": present.get("image", torch.ones(n, dtype=torch.bool)),
        },
        "audio": {
            "mel": torch.ones(n, 8, 6),
            "mask": torch.ones(n, 6, dtype=torch.bool),
            "present": present.get("audio", torch.ones(n, dtype=torch.bool)),
        },
    }


def _consistent(entry: dict) -> None:
    """Absent samples are exactly what the collate makes of a missing modality: zeros and False."""
    absent = ~entry["present"]
    for key, value in entry.items():
        assert not value[absent].any(), key


def test_modality_dropout_rate_and_never_all_modalities():
    generator = torch.Generator().manual_seed(0)
    n = 4000
    out = modality_dropout(_batch(n), {"text": 0.5, "image": 0.2, "audio": 0.0}, generator)
    kept = torch.stack([out[m]["present"] for m in ("text", "image", "audio")], dim=1)
    assert kept.any(dim=1).all()  # audio never dropped, so every sample keeps one
    assert kept[:, 2].all()
    assert abs(1 - kept[:, 0].float().mean().item() - 0.5) < 0.03
    assert abs(1 - kept[:, 1].float().mean().item() - 0.2) < 0.03
    for m in ("text", "image", "audio"):
        _consistent(out[m])
    # survivors are untouched
    assert (out["image"]["image"][kept[:, 1]] == 7).all()


def test_modality_dropout_keeps_one_modality_when_all_would_go():
    generator = torch.Generator().manual_seed(1)
    only_text = {"image": torch.zeros(500, dtype=torch.bool), "audio": torch.zeros(500, dtype=torch.bool)}
    batch = _batch(500, only_text)
    out = modality_dropout(batch, {"text": 0.99, "image": 0.99, "audio": 0.99}, generator)
    assert out["text"]["present"].all()  # the only present modality always stays
    out = modality_dropout(_batch(500), {"text": 0.9, "image": 0.9, "audio": 0.9}, generator)
    kept = torch.stack([out[m]["present"] for m in ("text", "image", "audio")], dim=1)
    assert kept.any(dim=1).all() and (kept.sum(dim=1) == 1).float().mean() > 0.5


def test_modality_dropout_off_is_identity_and_seeded():
    batch = _batch(16)
    assert modality_dropout(batch, {"text": 0.0, "image": 0.0, "audio": 0.0}) is batch
    a = modality_dropout(batch, {"text": 0.5, "image": 0.5}, torch.Generator().manual_seed(3))
    b = modality_dropout(batch, {"text": 0.5, "image": 0.5}, torch.Generator().manual_seed(3))
    assert torch.equal(a["text"]["present"], b["text"]["present"])


def test_drop_modalities_matches_a_missing_modality():
    out = drop_modalities(_batch(4), ["audio"])
    assert not out["audio"]["present"].any() and not out["audio"]["mel"].any()
    assert out["text"]["present"].all()


def test_dropout_rates_validation():
    assert dropout_rates(0.25, ["text", "audio"]) == {"text": 0.25, "audio": 0.25}
    assert dropout_rates({"text": 0.3}, ["text", "image"]) == {"text": 0.3, "image": 0.0}
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropout_rates(1.0, ["text"])
    with pytest.raises(ValueError, match="unknown modalities"):
        dropout_rates({"txet": 0.3}, ["text"])


@pytest.mark.slow
def test_training_with_modality_dropout_learns(processed_dir, tmp_path):
    cfg = tiny_config(
        tmp_path,
        processed_dir,
        ["fusion=late", "model.modality_dropout=0.3", "test_missing_modalities=true", "trainer.max_epochs=4"],
    )
    metrics = train(cfg)
    assert all(v == v for v in metrics.values())
    assert_learned(cfg)  # training loss fell and accuracy rose (a test accuracy bar would sit at chance here)
    assert {"test/acc_without_text", "test/acc_without_image", "test/acc_without_audio"} <= set(metrics)


# ---------------------------------------------------------------- checkpoints
class Payload:
    """Anything that would need unpickling: refused by weights_only loading."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_unsafe_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="unpickl"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="unpickl"):
        load_weights(torch.nn.Linear(1, 1), path)
    truncated = tmp_path / "cut.ckpt"
    torch.save({"state_dict": torch.nn.Linear(50, 50).state_dict()}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)


def test_atomic_checkpoint_io_never_leaves_a_partial_file(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "ckpt" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, target)
    assert io.load_checkpoint(target)["step"] == 1
    with pytest.raises((AttributeError, pickle.PicklingError), match="(?i)can't pickle"):
        io.save_checkpoint({"step": 2, "bad": lambda: None}, target)  # fails while serialising
    assert io.load_checkpoint(target)["step"] == 1  # the previous checkpoint is intact
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
    with pytest.raises(CheckpointError):
        io.load_checkpoint(target, weights_only=False)


# ---------------------------------------------------------------- resume helpers
def test_resolve_checkpoint_and_run_folder(tmp_path):
    runs = tmp_path / "runs"
    old = runs / "2026-01-01_10-00-00-text_image-late"
    other = runs / "2026-01-01_11-00-00-text_image-late_avg"
    for folder in (old, other):
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
    new = runs / "2026-01-01_12-00-00-text_image-late"
    assert run_folder(None, new, "-text_image-late") == new
    assert run_folder("last", new, "-text_image-late") == old  # not the late_avg run
    assert run_folder(str(old / "checkpoints" / "last.ckpt"), new, "-x") == old
    with pytest.raises(ResumeError, match="no run folder"):
        run_folder("last", new, "-audio-late")
    assert resolve_checkpoint(None, old / "checkpoints") is None
    assert resolve_checkpoint("last", old / "checkpoints") == old / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint(str(old), "unused") == old / "checkpoints" / "last.ckpt"
    with pytest.raises(ResumeError, match="ckpt_path=null"):
        resolve_checkpoint("last", new / "checkpoints")


def test_resume_refuses_a_changed_config(tmp_path):
    cfg = tiny_config(tmp_path)
    from omegaconf import OmegaConf

    saved = OmegaConf.to_yaml(cfg, resolve=True)
    check_same_config(
        {"config": saved},
        tiny_config(
            tmp_path, overrides=["ckpt_path=last", f"paths.output_dir={tmp_path / 'other'}", "data.num_workers=3"]
        ),
        Path("x"),
    )
    changed = tiny_config(tmp_path, overrides=["optim.optimizer.lr=0.5"])
    assert config_differences(saved, changed) == [f"optim.optimizer.lr: {cfg.optim.optimizer.lr} -> 0.5"]
    with pytest.raises(ResumeError, match="optim.optimizer.lr"):
        check_same_config({"config": saved}, changed, Path("x"))


def test_resume_names_settings_an_earlier_version_lacked(tmp_path):
    """A checkpoint whose config lacks settings added since cannot be continued by any override: the error says
    it comes from an earlier version and lists the added keys; a changed value among them keeps the usual error."""
    import yaml
    from omegaconf import OmegaConf

    cfg = tiny_config(tmp_path)
    older = OmegaConf.to_container(cfg, resolve=True)
    del older["optim"]["lr_scale"]
    saved = yaml.safe_dump(older)
    assert "optim.lr_scale.image: (absent) -> 2.0" in config_differences(saved, cfg)
    with pytest.raises(ResumeError, match=r"earlier version(.|\n)*optim\.lr_scale\.image: \(absent\) -> 2\.0"):
        check_same_config({"config": saved}, cfg, Path("x"))
    changed = tiny_config(tmp_path, overrides=["optim.optimizer.lr=0.5"])
    with pytest.raises(ResumeError, match="another config"):
        check_same_config({"config": saved}, changed, Path("x"))


# ---------------------------------------------------------------- NaN loss, determinism
class PoisonWeights(pl.Callback):
    """Turns one weight into NaN at a given step, as an exploding update would."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            with torch.no_grad():
                next(module.net.head.parameters()).fill_(float("nan"))


@pytest.mark.slow
def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(processed_dir, tmp_path, monkeypatch):
    import fusion.stages.train as train_module

    build = train_module.build_callbacks
    monkeypatch.setattr(train_module, "build_callbacks", lambda cfg: [*build(cfg), PoisonWeights(1, 1)])
    cfg = tiny_config(tmp_path, processed_dir, ["fusion=late", "trainer.max_epochs=3"])
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at epoch 1.*last good checkpoint"):
        train(cfg)
    last = load_checkpoint(Path(cfg.paths.checkpoint_dir) / "last.ckpt")
    assert last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    client = MlflowClient(absolute_tracking_uri(cfg.logger.tracking_uri))
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_same_seed_same_data_same_config_gives_the_same_metrics(processed_dir, tmp_path):
    def results(name: str, *overrides: str) -> dict[str, float]:
        metrics = train(
            tiny_config(tmp_path / name, processed_dir, ["fusion=gated", "model.modality_dropout=0.2", *overrides])
        )
        timings = [k for k in metrics if k.startswith("time/")]
        assert timings  # wall-clock figures (DataWaitMonitor) differ run to run by nature; the rest must not
        return {k: v for k, v in metrics.items() if k not in timings}

    first = results("a")
    assert results("b") == first
    assert results("c", "seed=7") != first


# ---------------------------------------------------------------- SIGKILL mid-epoch, then resume
PAUSE_DRIVER = textwrap.dedent("""
    # train.py with one extra callback that parks the process mid-epoch, so the test can SIGKILL it there.
    import runpy, sys, time
    from pathlib import Path
    import pytorch_lightning as pl
    sys.path.insert(0, {root!r})
    import fusion.stages.train as train_module

    class Park(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == {epoch} and batch_idx == {batch}:
                Path({marker!r}).write_text(str(trainer.global_step))
                time.sleep(3600)

    build = train_module.build_callbacks
    train_module.build_callbacks = lambda cfg: [*build(cfg), Park()]
    sys.argv = ["train.py", *sys.argv[1:]]
    runpy.run_path({train!r}, run_name="__main__")
""")


def _wait_for(path: Path, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            out, err = process.communicate(timeout=60)
            raise AssertionError(f"training ended before the kill point ({process.returncode}):\n{err[-4000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("training did not reach the kill point in time")
        time.sleep(0.2)


def _metrics(client: MlflowClient, run_id: str) -> dict:
    run = client.get_run(run_id)
    histories = {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in ("val/acc", "val/loss", "train/loss")
    }
    scalars = {k: v for k, v in run.data.metrics.items() if k.startswith("test/")}
    return {"histories": histories, "test": scalars}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(processed_dir, tmp_path, subprocess_env):
    db = tmp_path / "mlflow.db"
    common = [
        *TINY_TRAINING,
        "trainer.max_epochs=3",
        "fusion=late",
        "model.modality_dropout=0.2",
        f"data.processed_dir={processed_dir}",
        f"logger.tracking_uri=sqlite:///{db}",
        f"logger.artifact_location={tmp_path / 'artifacts'}",
    ]
    runs = tmp_path / "runs"
    suffix = "text_image_audio-late"
    reference = subprocess.run(
        [sys.executable, "train.py", *common, f"hydra.run.dir={runs / 'reference'}"],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert reference.returncode == 0, reference.stderr[-4000:]
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("fusion").experiment_id
    (uninterrupted,) = client.search_runs([experiment])

    killed_dir = runs / f"2026-01-01_01-00-00-{suffix}"
    marker = tmp_path / "parked"
    driver = tmp_path / "driver.py"
    driver.write_text(
        PAUSE_DRIVER.format(root=str(ROOT), epoch=1, batch=2, marker=str(marker), train=str(ROOT / "train.py")),
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, str(driver), *common, f"hydra.run.dir={killed_dir}"],
        cwd=ROOT,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _wait_for(marker, process, timeout=300)
    os.killpg(process.pid, signal.SIGKILL)  # a real kill, mid-epoch 1
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert load_checkpoint(killed_dir / "checkpoints" / "last.ckpt")["epoch"] == 0

    (interrupted,) = [r for r in client.search_runs([experiment]) if r.info.run_id != uninterrupted.info.run_id]
    assert interrupted.info.status == "RUNNING"

    resumed = subprocess.run(
        [
            sys.executable,
            "train.py",
            *common,
            "ckpt_path=last",
            f"hydra.run.dir={runs / f'2026-01-01_02-00-00-{suffix}'}",
        ],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"Resuming from {killed_dir / 'checkpoints' / 'last.ckpt'}" in resumed.stdout

    runs_now = client.search_runs([experiment])
    assert len(runs_now) == 2  # the resumed run continued the interrupted one; no third run
    continued = client.get_run(interrupted.info.run_id)
    assert continued.info.status == "FINISHED"
    expected, got = _metrics(client, uninterrupted.info.run_id), _metrics(client, continued.info.run_id)
    assert got["histories"] == expected["histories"]
    assert got["test"] == pytest.approx(expected["test"], abs=1e-6) and got["test"]
    assert (killed_dir / "run.json").read_text().count('"finished"') == 1

    again = subprocess.run(
        [
            sys.executable,
            "train.py",
            *common,
            "optim.optimizer.lr=0.1",
            "ckpt_path=last",
            f"hydra.run.dir={runs / f'2026-01-01_03-00-00-{suffix}'}",
        ],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode != 0 and "optim.optimizer.lr" in again.stderr and "Traceback" not in again.stderr


# ---------------------------------------------------------------- security
def test_shards_hold_no_pickled_items(processed_dir):
    import json

    for modality in ("text", "image", "audio"):
        index = json.loads((processed_dir / modality / "shards" / "index.json").read_text(encoding="utf-8"))
        formats = index["config"]["data_format"]
        assert formats and not any("pickle" in f for f in formats), (modality, formats)


def test_mlflow_ui_and_serving_commands_bind_to_localhost():
    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "Makefile", *sorted((ROOT / "docs").glob("*.md"))]
    lines = [
        line
        for path in docs
        for line in path.read_text(encoding="utf-8").splitlines()
        if any(cmd in line for cmd in ("mlflow ui --", "mlflow server", "mlflow models serve"))
    ]
    assert lines
    for line in lines:
        assert "--host 127.0.0.1" in line, line
