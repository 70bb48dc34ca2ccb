"""Integration: train tiny models for real, track them in MLflow, evaluate the checkpoint."""

import csv
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient

from fusion.stages.evaluate import evaluate
from fusion.stages.train import train
from tests.helpers.config import tiny_config
from tests.helpers.tracking import assert_learned

pytestmark = pytest.mark.slow


def _client(cfg) -> MlflowClient:
    from fusion.tracking.store import absolute_tracking_uri

    return MlflowClient(tracking_uri=absolute_tracking_uri(cfg.logger.tracking_uri))


@pytest.fixture(scope="module")
def trained(processed_dir, tmp_path_factory):
    """One real tri-modal cross-attention run, then the evaluate stage on its checkpoint. Four epochs: in the
    tiny runs' two, half the steps are learning-rate warm-up and the accuracy moves by chance only."""
    tmp = tmp_path_factory.mktemp("run")
    cfg = tiny_config(tmp, processed_dir, ["fusion=cross_attention", "trainer.max_epochs=4"])
    metrics = train(cfg)
    return cfg, metrics, evaluate(cfg)


def test_training_learns_and_checkpoints(trained):
    cfg, metrics, _ = trained
    for key in ("train/loss", "val/acc", "val/f1_macro", "val/acc_best", "test/acc", "test/f1_macro"):
        assert key in metrics and metrics[key] == metrics[key]  # present and not NaN
    # the run's cost comes back too (benchmarks.accuracy.bare reads it where no MLflow store is kept)
    assert 0 < metrics["time/fit_cpu_seconds"] and 0 < metrics["time/epoch_seconds"] <= metrics["time/fit_seconds"]
    assert_learned(cfg)
    # the default vote (model.predict_with_heads=hybrid): validation, which picks the checkpoint, scores the fused
    # head, and the test the vote; both views are logged for both splits
    assert metrics["val/acc"] == metrics["val/acc_fused"] and metrics["test/acc"] == metrics["test/acc_vote"]
    assert {"val/acc_vote", "test/acc_fused", "test/f1_macro_vote"} <= set(metrics)
    checkpoints = {p.name for p in Path(cfg.paths.checkpoint_dir).iterdir()}
    assert {"best.ckpt", "last.ckpt"} <= checkpoints


def test_mlflow_run_has_params_metrics_tags_and_artifacts(trained):
    cfg, _, _ = trained
    client = _client(cfg)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "text_image_audio-cross_attention"
    tags = run.data.tags
    assert tags["modality"] == "text+image+audio" and tags["fusion"] == "cross_attention"
    assert tags["git_commit"] and tags["data_version"]
    params = run.data.params
    assert params["fusion/name"] == "cross_attention" and params["modality/name"] == "text+image+audio"
    assert params["trainer/max_epochs"] == str(cfg.trainer.max_epochs)
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(history) == cfg.trainer.max_epochs  # one point per epoch
    assert run.data.metrics["params/trainable"] > 0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "confusion_matrix.png"} <= artifacts


def test_test_records_hold_each_records_modalities_and_each_groups_accuracy_is_logged(trained):
    cfg, metrics, _ = trained
    with open(Path(cfg.paths.output_dir) / "test_records.csv", newline="", encoding="utf-8") as source:
        rows = list(csv.DictReader(source))
    held = {row["modalities"] for row in rows}
    # the sample leaves a modality out of some records, so the test split holds more than one group
    assert "text+image+audio" in held and len(held) > 1
    client = _client(cfg)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    logged = run.data.metrics
    total = 0.0
    for group in held:
        slug = group.replace("+", "_")
        group_rows = [row for row in rows if row["modalities"] == group]
        assert logged[f"test/records_holding_{slug}"] == len(group_rows)
        accuracy = sum(int(row["correct"]) for row in group_rows) / len(group_rows)
        assert logged[f"test/acc_holding_{slug}"] == pytest.approx(accuracy)
        total += accuracy * len(group_rows)
    assert total / len(rows) == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_evaluate_writes_dvc_metrics_and_plots_into_the_same_run(trained, tmp_path):
    cfg, metrics, evaluation = trained
    from pathlib import Path

    out = Path(cfg.paths.evaluate_dir)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == evaluation
    assert 0.0 <= saved["test"]["acc"] <= 1.0 and 0.0 <= saved["test"]["f1_macro"] <= 1.0
    # the evaluate stage reproduces the test metrics of the train run (same best checkpoint)
    assert saved["test"]["acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    rows = (out / "plots" / "confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) - 1 == saved["test"]["samples"]
    assert (out / "plots" / "per_class.csv").read_text().startswith("class,f1")
    assert (out / "confusion_matrix.png").stat().st_size > 0
    # each group of records holding the same modalities, as the train run found them (same checkpoint and records)
    groups = json.loads((out / "test_by_modalities.json").read_text())
    assert sum(g["records"] for g in groups.values()) == saved["test"]["samples"] and len(groups) > 1
    for held, group in groups.items():
        slug = held.replace("+", "_")
        assert group["acc"] == pytest.approx(metrics[f"test/acc_holding_{slug}"])
        assert group["records"] == metrics[f"test/records_holding_{slug}"]
    assert (out / "test_records.csv").read_text().startswith("id,target,prediction,correct,modalities")
    client = _client(cfg)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    assert run.info.run_id == saved["mlflow_run_id"]


@pytest.mark.parametrize(
    "fusion, modality", [("late", "text+image+audio"), ("cross_attention", "audio"), ("cross_attention", "text+image")]
)
def test_other_fusions_and_subsets_train(processed_dir, tmp_path, fusion, modality):
    cfg = tiny_config(
        tmp_path,
        processed_dir,
        [f"fusion={fusion}", f"modality={modality}", "trainer.max_epochs=1", "test_after_fit=false"],
    )
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


@pytest.mark.filterwarnings("ignore:You requested to overfit but enabled train dataloader shuffling")
def test_the_model_can_fit_a_batch(processed_dir, tmp_path):
    """Memorising one batch of the sample data: the classic check that the whole model can learn."""
    cfg = tiny_config(
        tmp_path,
        processed_dir,
        [
            "trainer.max_epochs=30",
            "+trainer.overfit_batches=1",
            "test_after_fit=false",
            "optim.optimizer.lr=3e-3",
            "model.dropout=0.0",
            "optim.scheduler=null",
            "augment.enabled=false",
            "callbacks.early_stopping.enabled=false",
        ],
    )
    metrics = train(cfg)
    assert metrics["train/acc"] >= 0.9 and metrics["train/loss"] < 0.3, metrics


def test_compare_lists_the_run_with_its_test_metrics(trained):
    from fusion.tracking.compare import compare_runs, to_markdown

    cfg, metrics, _ = trained
    comparison = compare_runs(cfg.logger.tracking_uri, cfg.logger.experiment_name)
    (table,) = comparison.tables
    (row,) = table.rows
    assert (table.metric, row.modality, row.fusion) == ("test/acc", "text+image+audio", "cross_attention")
    assert row.value == pytest.approx(metrics["test/acc"]) and row.params_trainable > 0
    lines = to_markdown(comparison).splitlines()
    assert any(
        line.startswith("| 1 | text+image+audio | cross_attention | ") and f"| {metrics['test/acc']:.3f} |" in line
        for line in lines
    )


FUSION_OPTIONS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "fusion").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("fusion", FUSION_OPTIONS)
def test_every_fusion_trains_and_tests_with_each_modality_removed(processed_dir, tmp_path, fusion):
    """Each shipped fusion config trains tri-modally for real, is tested, then tested again with each
    modality removed from every test sample; all metrics are finite and land in the run."""
    cfg = tiny_config(tmp_path, processed_dir, [f"fusion={fusion}", "trainer.max_epochs=2"])
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    run = _client(cfg).search_runs([_client(cfg).get_experiment_by_name(cfg.logger.experiment_name).experiment_id])[0]
    assert run.data.tags["fusion"] == fusion
    for modality in ("text", "image", "audio"):
        value = run.data.metrics[f"test/acc_without_{modality}"]
        assert 0.0 <= value <= 1.0
    assert run.data.metrics["params/trainable"] > 0


@pytest.mark.parametrize("precision,fused", [("32-true", True), ("bf16-mixed", False)])
def test_fused_adamw_where_lightning_can_clip_its_gradients(processed_dir, tmp_path, precision, fused):
    """optim.optimizer.fused (on in conf/) holds in full precision; under mixed precision Lightning cannot clip a
    fused optimizer's gradients, so the same AdamW runs unfused there and training goes on."""
    from fusion.training.setup import build_datamodule, build_module

    cfg = tiny_config(tmp_path, processed_dir, [f"trainer.precision={precision}"])
    assert cfg.optim.optimizer.fused and cfg.trainer.gradient_clip_val
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    trainer = pl.Trainer(
        accelerator="cpu",
        precision=precision,
        max_steps=2,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule)
    assert trainer.global_step == 2
    assert bool(trainer.optimizers[0].defaults["fused"]) is fused
    assert all(bool(group["fused"]) is fused for group in trainer.optimizers[0].param_groups)  # what step() reads


def test_lr_scale_gives_one_encoder_its_own_learning_rate(processed_dir, tmp_path):
    """optim.lr_scale.image=3: the image encoder's parameters (and only they) step at 3 times the learning rate of
    the rest, through warm-up and schedule alike (the scheduler takes each group's scaled rate as its base)."""
    from fusion.training.setup import build_datamodule, build_module

    cfg = tiny_config(tmp_path, processed_dir, ["optim.lr_scale.image=3.0"])
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, datamodule)
    optimizer, scheduler = trainer.optimizers[0], trainer.lr_scheduler_configs[0].scheduler
    groups = {group["name"]: group for group in optimizer.param_groups}
    image = {id(p) for p in module.net.encoders["image"].parameters()}
    rest = {id(p) for p in module.parameters()} - image
    assert {name: {id(p) for p in group["params"]} for name, group in groups.items()} == {
        "base": rest,
        "image_encoder": image,
    }
    base, scaled = (scheduler.get_last_lr()[list(groups).index(name)] for name in ("base", "image_encoder"))
    assert 0 < base < cfg.optim.optimizer.lr and scaled == pytest.approx(3 * base)  # mid warm-up, still 3 times


def test_lr_scale_is_checked():
    from fusion.training.module import encoder_lr_scales

    assert encoder_lr_scales({"image": 2.0, "audio": 1.0}, ["text", "image", "audio"]) == {"image": 2.0}
    assert encoder_lr_scales({"image": 2}, ["text"]) == {}  # the run has no image encoder to scale
    for bad, message in (
        ({"imgae": 2.0}, "unknown modalities"),
        ({"image": 0.0}, "positive"),
        ({"image": True}, "positive"),
    ):
        with pytest.raises(ValueError, match=message):
            encoder_lr_scales(bad, ["image"])


def test_a_raised_rate_on_a_pretrained_backbone_is_named():
    """The default factor is for encoders learned from scratch: raising a pretrained backbone's rate gets a warning."""
    from fusion.config import compose
    from fusion.training.setup import raised_pretrained_rates

    assert raised_pretrained_rates(compose([])) == []  # the default CNN, learned from scratch
    timm = ["model.image.kind=timm", "model.image.pretrained=true", "model.image.checkpoint_path=/weights.safetensors"]
    assert raised_pretrained_rates(compose(timm)) == ["image"]
    assert raised_pretrained_rates(compose([*timm, "model.image.freeze=true"])) == []
    assert raised_pretrained_rates(compose([*timm, "optim.lr_scale.image=1.0"])) == []
    assert raised_pretrained_rates(compose(["model/text=pretrained", "optim.lr_scale.text=2.0"])) == ["text"]
    assert raised_pretrained_rates(compose([*timm, "optim.lr_scale.image=fast"])) == []  # the module names the error
