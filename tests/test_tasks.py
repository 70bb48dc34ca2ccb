"""Tasks beyond multiclass: labels per task in the manifest, the sample generator, targets, the Task
classes (loss and metrics against hand computations), the modality ablation, and real tiny runs."""

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from fusion.config import compose
from fusion.data.ablation import WithoutModalities, drop_modalities
from fusion.data.collate import MultimodalCollate
from fusion.data.datamodule import MultimodalDataModule
from fusion.data.manifest import load_manifest
from fusion.data.sample import generate_sample, plan_dataset, validate_config
from fusion.tasks.labels import MultiLabel, Scalar, SingleLabel, label_spec
from fusion.tasks.objectives import Multiclass, Multilabel, Regression, SignAccuracy, build_task
from fusion.tracking.store import absolute_tracking_uri
from tests.helpers.config import TINY_TRAINING, tiny_config
from tests.helpers.project import copy_dvc_project

ROOT = Path(__file__).resolve().parents[1]
SPLIT = {"seed": 0, "train": 0.7, "val": 0.15, "test": 0.15}
SAMPLE_DEFAULT = ROOT / "conf" / "sample" / "default.yaml"
MODALITIES = ("text", "image", "audio")


def write_lines(root: Path, lines: list) -> None:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    (root / "manifest.jsonl").write_text(text + "\n", encoding="utf-8")


def row(i: int, label, split: str = "train") -> dict:
    return {"id": f"r{i}", "label": label, "split": split, "text": f"text {i}"}


def reasons(manifest) -> dict[str, str]:
    return {r.id: r.reason for r in manifest.rejections}


def task_cfg(name: str, **knobs) -> dict:
    cfg = OmegaConf.to_container(compose([f"task={name}"]).task)
    return {**cfg, **knobs}


# --------------------------------------------------------------------------- manifest per task


def test_multilabel_manifest_rejects_bad_labels_with_reasons(tmp_path):
    write_lines(
        tmp_path,
        [
            row(1, ["b", "a"]),
            row(2, []),
            row(3, ["c"]),
            row(4, "a"),
            row(5, ["a", 3]),
            row(6, ["a", "a"]),
            row(7, ["a", ""]),
            {"id": "r8", "split": "train", "text": "no label"},
            row(9, ["a", "zzz"], split="test"),
            row(10, ["c"], split="val"),
        ],
    )
    manifest = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="t", task="multilabel")
    assert [r.id for r in manifest.records] == ["r1", "r2", "r3", "r10"]
    assert manifest.records[0].label == ["b", "a"]  # the label as given
    assert manifest.classes == ["a", "b", "c"]  # sorted union over the training split
    why = reasons(manifest)
    assert "not a list" in why["r4"] and "not a list" in why["r8"]
    assert "non-empty class name strings" in why["r5"] and "non-empty class name strings" in why["r7"]
    assert "'a' is listed twice" in why["r6"]
    assert why["r9"] == "label 'zzz' does not occur in the training split"


def test_regression_manifest_rejects_non_finite_and_non_numbers(tmp_path):
    write_lines(
        tmp_path,
        [
            row(1, 1.5),
            row(2, -2),
            row(3, 0.5, split="test"),
            row(4, "1.5"),
            row(5, True),
            row(6, None),
            row(7, [1.0]),
            '{"id": "r8", "label": NaN, "split": "train", "text": "x"}',
            '{"id": "r9", "label": Infinity, "split": "train", "text": "x"}',
            '{"id": "r10", "label": -Infinity, "split": "train", "text": "x"}',
        ],
    )
    manifest = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="t", task="regression")
    assert [(r.id, r.label) for r in manifest.records] == [("r1", 1.5), ("r2", -2), ("r3", 0.5)]
    why = reasons(manifest)
    assert why["r4"] == "'label' must be a number, got str"
    assert why["r5"] == "'label' must be a number, got bool"
    assert why["r6"] == "'label' must be a number, got null"
    assert "got list" in why["r7"]
    for rid in ("r8", "r9", "r10"):
        assert "must be a finite number" in why[rid]
    stats = manifest.labels.info["target_stats"]  # from the training split only
    assert stats["count"] == 2 and stats["mean"] == pytest.approx(-0.25) and stats["std"] == pytest.approx(1.75)
    assert manifest.classes == []


def test_multiclass_rejects_a_list_and_regression_splits_all_records(tmp_path):
    write_lines(tmp_path, [row(1, ["a"]), row(2, "a")])
    manifest = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="t")  # multiclass, as before
    assert "a class name string is required" in reasons(manifest)["r1"]
    rows = [{"id": f"r{i}", "label": float(i % 7) - 3, "text": "x"} for i in range(200)]  # no split field
    write_lines(tmp_path, rows)
    manifest = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="t", task="regression")
    counts = {s: sum(r.split == s for r in manifest.records) for s in ("train", "val", "test")}
    assert counts == {"train": 140, "val": 30, "test": 30}


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="available: multiclass, multilabel, regression"):
        label_spec("ranking")


# --------------------------------------------------------------------------- sample generator


def small_sample(task: str, n: int = 60, **overrides):
    cfg = OmegaConf.load(SAMPLE_DEFAULT)
    cfg.num_records, cfg.progress, cfg.task = n, False, task
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{k}={v}" for k, v in overrides.items()]))


def _digest(root: Path) -> str:
    """Hash of the manifest and text files: the generator's random streams, without image/audio codecs."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and (path.name == "manifest.jsonl" or path.parent.name == "text"):
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_multiclass_sample_is_unchanged_by_tasks(tmp_path):
    """Digests computed with the generator as it was before tasks existed (24 records, default config)."""
    generate_sample(small_sample("multiclass", 24), tmp_path / "a")
    generate_sample(small_sample("multiclass", 24, write_splits=True), tmp_path / "b")
    assert _digest(tmp_path / "a") == "03162b135d76b9fee436cf0be0f1a45561fc2efe550bd6f31129a4b9cc5b9adc"
    assert _digest(tmp_path / "b") == "104b662f13ce50ef4717ece489276b042e262e101c2a7c14a813695c7c1b4b1b"


def test_sample_task_follows_task_name():
    assert compose().sample.task == "multiclass"
    assert compose(["task=regression"]).sample.task == "regression"


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_sample_is_deterministic_per_task(task, tmp_path):
    cfg = small_sample(task, 16)
    generate_sample(cfg, tmp_path / "a")
    generate_sample(cfg, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    generate_sample(small_sample(task, 16, seed=1), tmp_path / "c")
    assert (tmp_path / "a/manifest.jsonl").read_bytes() != (tmp_path / "c/manifest.jsonl").read_bytes()


def _shown(plan: dict, modality: str) -> int | None:
    """The group a clean modality shows (None otherwise)."""
    p = plan[modality]
    if p["state"] != "clean":
        return None
    return p["groups"][0] if modality == "text" else p["group"]


def test_multilabel_sample_labels_are_the_genres_its_modalities_show():
    cfg = small_sample("multilabel", 400)
    genres = list(cfg.multilabel.genres)
    plans = plan_dataset(cfg)
    sizes = set()
    for plan in plans:
        label = plan["label"]
        assert label == sorted(set(label), key=genres.index) and 1 <= len(label) <= 3
        assert label == [genres[g] for g in plan["genres"]]
        sizes.add(len(label))
        shown = {_shown(plan, m) for m in ("image", "audio", "text")} - {None}
        assert shown <= set(plan["genres"])  # a clean modality shows a genre of the record
        if all(plan[m]["state"] == "clean" for m in ("image", "audio", "text")):
            assert shown == set(plan["genres"])  # all three clean: the exact set
    assert sizes == {1, 2, 3}
    counts = {g: sum(g in p["label"] for p in plans) for g in genres}
    assert min(counts.values()) > 0.3 * max(counts.values())


def test_regression_sample_scores_are_learnable_from_the_modalities():
    cfg = small_sample("regression", 400)
    values = list(cfg.regression.group_values)
    plans = plan_dataset(cfg)
    labels = np.array([p["label"] for p in plans])
    assert np.isfinite(labels).all() and labels.min() >= -3 and labels.max() <= 3
    assert all(isinstance(p["label"], float) and p["label"] == round(p["label"], 2) for p in plans)
    latent = np.array([sum(values[g] for g in p["latent_groups"].values()) for p in plans])
    assert np.abs(labels - latent).max() < 6 * float(cfg.regression.noise_std)
    for plan in plans:
        for m in ("image", "audio", "text"):
            if _shown(plan, m) is not None:
                assert _shown(plan, m) == plan["latent_groups"][m]  # a clean modality shows its group
    assert (labels < 0).mean() > 0.3 and (labels >= 0).mean() > 0.3


@pytest.mark.parametrize(
    "task, key, value, match",
    [
        ("multilabel", "multilabel.genres", "[a,b]", "genres needs one entry per group"),
        ("multilabel", "multilabel.max_labels", 4, "max_labels"),
        ("regression", "regression.group_values", "[1.0]", "group_values needs one entry per group"),
        ("regression", "regression.range", "[1.0,-1.0]", "lo < hi"),
        ("ranking", "seed", 0, "task must be one of"),
    ],
)
def test_invalid_task_sample_config(task, key, value, match):
    with pytest.raises(ValueError, match=match):
        validate_config(small_sample(task, **{key: value}))


# --------------------------------------------------------------------------- targets and ablation


def test_label_specs_encode_targets_and_collate_dtypes():
    multi = MultiLabel.fit([["b"], ["a", "c"], []])
    assert multi.classes == ["a", "b", "c"] and multi.num_outputs == 3
    assert multi.encode(["c", "a"]) == [1.0, 0.0, 1.0] and multi.encode([]) == [0.0, 0.0, 0.0]
    assert multi.unknown(["a", "d"]) == "label 'd' does not occur in the training split"
    single = SingleLabel.fit(["b", "a", "b"])
    assert single.encode("b") == 1 and single.num_outputs == 2
    scalar = Scalar.fit([1, 2, 3, 4])
    assert scalar.encode(2) == 2.0 and scalar.num_outputs == 1 and scalar.unknown(99.0) is None
    assert scalar.info["target_stats"]["std"] == pytest.approx(np.std([1, 2, 3, 4]))
    for spec, labels, dtype, shape in (
        (multi, [["a"], []], torch.float32, (2, 3)),
        (scalar, [1.5, -2.0], torch.float32, (2,)),
        (single, ["a", "b"], torch.int64, (2,)),
    ):
        collate = MultimodalCollate({}, label_dtype=getattr(torch, spec.dtype))
        batch = collate([{"id": str(i), "label": spec.encode(label)} for i, label in enumerate(labels)])
        assert batch["label"].dtype == dtype and tuple(batch["label"].shape) == shape


def _batch() -> dict:
    metas = {"text": {}, "image": {"size": 2, "channels": 3}, "audio": {"n_mels": 2}}
    samples = [
        {
            "id": str(i),
            "label": i,
            "text": {"tokens": torch.tensor([3, 4])},
            "image": {"image": torch.full((3, 2, 2), 7, dtype=torch.uint8)},
            "audio": {"mel": torch.ones(2, 3)},
        }
        for i in range(2)
    ]
    return MultimodalCollate(metas)(samples)


def test_drop_modalities_marks_absent_zeroes_and_keeps_the_rest():
    batch = _batch()
    dropped = drop_modalities(batch, ["text", "image"])
    for modality in ("text", "image"):
        assert not dropped[modality]["present"].any()
        assert all(int(v.count_nonzero()) == 0 for v in dropped[modality].values())
        assert set(dropped[modality]) == set(batch[modality])
        assert all(dropped[modality][k].shape == batch[modality][k].shape for k in batch[modality])
    assert not dropped["text"]["mask"].any()
    assert dropped["audio"] is batch["audio"] and dropped["label"] is batch["label"]
    assert batch["text"]["present"].all() and int(batch["image"]["image"].sum()) > 0  # input untouched


def test_without_modalities_wraps_a_collate():
    metas = {"audio": {"n_mels": 2}}
    collate = WithoutModalities(MultimodalCollate(metas), ["audio"])
    batch = collate([{"id": "a", "label": 0, "audio": {"mel": torch.ones(2, 3)}}])
    assert batch["label"].tolist() == [0] and not batch["audio"]["present"].any()
    assert not batch["audio"]["mask"].any() and int(batch["audio"]["mel"].count_nonzero()) == 0


# --------------------------------------------------------------------------- Task classes


def test_multiclass_task_matches_cross_entropy_and_counts():
    task = build_task(task_cfg("multiclass", label_smoothing=0.1), SingleLabel.fit(["a", "b", "c"]))
    assert isinstance(task, Multiclass) and task.num_outputs == 3 and task.best_key == "val/acc_best"
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    target = torch.tensor([0, 2, 0, 1])
    assert torch.allclose(task.loss(logits, target), F.cross_entropy(logits, target, label_smoothing=0.1))
    preds, tgt = task.metric_inputs(logits, target)
    assert preds.tolist() == [0, 2, 1, 2]
    metrics = task.metrics()
    assert metrics(preds, tgt)["acc"] == pytest.approx(0.5)
    report = task.report_metrics()
    report.update(preds, tgt)
    computed = report.compute()
    assert computed["confusion"].tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 1]]
    # per-class F1 by hand: a: p=1, r=1/2 -> 2/3; b: 0; c: p=1/2, r=1 -> 2/3
    assert computed["f1_per_class"].tolist() == pytest.approx([2 / 3, 0.0, 2 / 3])
    assert task.report_scalars(computed) == pytest.approx({"test/f1_a": 2 / 3, "test/f1_b": 0.0, "test/f1_c": 2 / 3})


def test_class_balance_losses_by_hand():
    labels = SingleLabel.fit(["a", "b", "c"])
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    target = torch.tensor([0, 2, 0, 1])
    per_sample = F.cross_entropy(logits, target, reduction="none")
    counts = [6, 3, 1]

    plain = build_task(task_cfg("multiclass"), labels)
    assert plain.class_balance == "none" and not plain.uses_class_counts
    reweight = build_task(task_cfg("multiclass", class_balance="reweight"), labels)
    assert reweight.uses_class_counts
    with pytest.raises(RuntimeError, match="class_balance=reweight needs fit_class_counts"):
        reweight.loss(logits, target)
    reweight.fit_class_counts(counts)
    weight = torch.tensor([10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)])[target]  # N / (classes x count)
    assert torch.allclose(reweight.loss(logits, target), (weight * per_sample).sum() / weight.sum())

    adjust = build_task(task_cfg("multiclass", class_balance="logit_adjust", logit_adjust_tau=0.5), labels)
    adjust.fit_class_counts(counts)
    shifted = logits + 0.5 * torch.tensor([0.6, 0.3, 0.1]).log()
    by_hand = -shifted.log_softmax(dim=-1).gather(1, target[:, None]).mean()
    assert torch.allclose(adjust.loss(logits, target), by_hand)
    # the rare class's logit is pushed down in training, so the model's own logit for it must learn to rise
    assert adjust.loss(logits, torch.tensor([2, 2, 2, 2])) > F.cross_entropy(logits, torch.tensor([2, 2, 2, 2]))

    for balance in ("reweight", "logit_adjust"):
        balanced = build_task(task_cfg("multiclass", class_balance=balance), labels)
        balanced.fit_class_counts([4, 4, 4])
        assert torch.allclose(balanced.loss(logits, target), per_sample.mean()), balance
        balanced.fit_class_counts([5, 0, 1])  # a class the training split lacks counts as one: finite
        assert torch.isfinite(balanced.loss(logits, target)), balance
    with pytest.raises(ValueError, match="2 class counts for 3 classes"):
        reweight.fit_class_counts([1, 2])
    with pytest.raises(ValueError, match="task.class_balance must be one of none, reweight, logit_adjust"):
        build_task(task_cfg("multiclass", class_balance="focal"), labels)


def test_generalised_cross_entropy_by_hand():
    labels = SingleLabel.fit(["a", "b", "c"])
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]], requires_grad=True)
    target = torch.tensor([0, 2, 0, 1])
    p_true = logits.softmax(dim=-1).gather(1, target[:, None]).squeeze(1)
    gce = build_task(task_cfg("multiclass", loss="gce", gce_q=0.7), labels)
    assert torch.allclose(gce.loss(logits, target), ((1 - p_true**0.7) / 0.7).mean())
    # q -> 0 is cross-entropy; q = 1 the mean absolute error of the true class's probability
    near_ce = build_task(task_cfg("multiclass", loss="gce", gce_q=1e-4), labels)
    assert torch.allclose(near_ce.loss(logits, target), F.cross_entropy(logits, target), atol=1e-3)
    mae = build_task(task_cfg("multiclass", loss="gce", gce_q=1.0), labels)
    assert torch.allclose(mae.loss(logits, target), (1 - p_true).mean())
    # a sample's gradient is cross-entropy's times p_true ** q: the implausible record (index 2) pulls less
    (grad_gce,) = torch.autograd.grad(gce.loss(logits, target), logits)
    (grad_ce,) = torch.autograd.grad(F.cross_entropy(logits, target), logits)
    ratio = grad_gce.norm(dim=1) / grad_ce.norm(dim=1)
    assert torch.allclose(ratio, p_true.detach() ** 0.7, atol=1e-5)
    # class weights: the same weighted mean as cross-entropy's
    weighted = build_task(task_cfg("multiclass", loss="gce", class_balance="reweight"), labels)
    weighted.fit_class_counts([6, 3, 1])
    weight = torch.tensor([10 / 18, 10 / 9, 10 / 3])[target]
    per_sample = (1 - p_true**0.7) / 0.7
    assert torch.allclose(weighted.loss(logits, target), (weight * per_sample).sum() / weight.sum())
    with pytest.raises(ValueError, match="task.loss=gce takes hard labels: set optim.label_smoothing=0"):
        build_task(task_cfg("multiclass", loss="gce", label_smoothing=0.1), labels)
    with pytest.raises(ValueError, match=r"task.gce_q must be in \(0, 1\]"):
        build_task(task_cfg("multiclass", loss="gce", gce_q=0.0), labels)
    with pytest.raises(ValueError, match="task.loss must be one of cross_entropy, gce"):
        build_task(task_cfg("multiclass", loss="focal"), labels)


def test_class_counts_reach_the_task_and_training_runs(sample_root, processed_dir, tmp_path):
    from fusion.stages.train import train
    from fusion.training.setup import build_datamodule, build_module

    cfg = tiny_config(tmp_path, processed_dir, ["task.class_balance=logit_adjust", "trainer.max_epochs=1"])
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    manifest = [json.loads(line) for line in (sample_root / cfg.data.manifest).read_text().splitlines()]
    trained = {record_id for record_id, _ in datamodule.dataset("train").records}
    train_labels = [r["label"] for r in manifest if r["id"] in trained]  # the sample leaves the split to data.split
    by_hand = [train_labels.count(name) for name in datamodule.classes]
    assert datamodule.class_counts() == by_hand and sum(by_hand) == len(datamodule.dataset("train"))
    assert module.task.class_counts.tolist() == by_hand
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["test/acc"])


def test_multilabel_task_loss_and_metrics_by_hand():
    task = build_task(task_cfg("multilabel"), MultiLabel.fit([["a", "b", "c"]]))
    assert isinstance(task, Multilabel) and task.monitor == "val/f1_macro" and task.mode == "max"
    logits = torch.tensor([[3.0, -2.0, 0.5], [-1.0, 2.0, -3.0], [0.2, 0.3, -0.1], [-2.0, -2.0, -2.0]])
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    p = torch.sigmoid(logits)
    by_hand = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    assert task.loss(logits, target).item() == pytest.approx(by_hand.item(), rel=1e-5)
    values = task.metrics()(*task.metric_inputs(logits, target))
    predicted = (p > 0.5).int().numpy()  # [[1,0,1],[0,1,0],[1,1,0],[0,0,0]]
    truth = target.int().numpy()
    tp, fp, fn = [((predicted == a) & (truth == b)).sum(axis=0) for a, b in ((1, 1), (1, 0), (0, 1))]
    assert values["f1_micro"].item() == pytest.approx(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()))
    per_class = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    assert values["f1_macro"].item() == pytest.approx(per_class.mean())
    assert values["subset_acc"].item() == pytest.approx(np.mean((predicted == truth).all(axis=1)))  # 2 of 4
    assert values["hamming"].item() == pytest.approx(np.mean(predicted != truth))  # 2 of 12
    assert task.report_scalars({"f1_per_class": torch.tensor(per_class)}) == pytest.approx(
        {"test/f1_a": 1.0, "test/f1_b": 1.0, "test/f1_c": 0.0}
    )


def test_regression_task_standardises_and_metrics_by_hand():
    labels = Scalar.fit([0.0, 2.0, 4.0])  # mean 2, std sqrt(8/3)
    task = build_task(task_cfg("regression"), labels)
    assert isinstance(task, Regression) and task.num_outputs == 1 and task.best_key == "val/mae_best"
    mean, std = 2.0, math.sqrt(8 / 3)
    outputs = torch.tensor([[0.5], [-1.0], [1.5], [0.0], [-0.3]])
    target = torch.tensor([3.0, -1.0, 2.5, 0.0, 1.0])
    assert task.loss(outputs, target).item() == pytest.approx(
        F.mse_loss(outputs.squeeze(-1), (target - mean) / std).item()
    )
    preds, tgt = task.metric_inputs(outputs, target)
    assert preds.tolist() == pytest.approx((outputs.squeeze(-1) * std + mean).tolist())
    values = task.metrics()(preds, tgt)
    p, t = preds.numpy().astype(float), target.numpy().astype(float)
    assert values["mae"].item() == pytest.approx(np.abs(p - t).mean(), rel=1e-5)
    assert values["pearson_r"].item() == pytest.approx(np.corrcoef(p, t)[0, 1], rel=1e-4)
    assert values["sign_acc"].item() == pytest.approx(np.mean((p >= 0) == (t >= 0)))
    smooth = build_task(task_cfg("regression", loss="smooth_l1", standardize=False), labels)
    assert smooth.loss(outputs, target).item() == pytest.approx(F.smooth_l1_loss(outputs.squeeze(-1), target).item())
    assert smooth.scores(outputs).tolist() == pytest.approx(outputs.squeeze(-1).tolist())


def test_sign_accuracy_by_hand_counts_zero_as_non_negative():
    metric = SignAccuracy()
    metric.update(torch.tensor([0.5, -0.1, 0.0, -2.0]), torch.tensor([1.0, 0.0, -1.0, -0.5]))
    metric.update(torch.tensor([0.0]), torch.tensor([0.0]))
    assert metric.compute().item() == pytest.approx(3 / 5)  # right: 1st, 4th, 5th


def test_task_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="use one of val/loss, val/mae"):
        build_task(task_cfg("regression", monitor="val/acc"), Scalar.fit([1.0]))
    with pytest.raises(ValueError, match="task.mode"):
        build_task(task_cfg("multilabel", mode="up"), MultiLabel.fit([["a"]]))
    with pytest.raises(ValueError, match="smooth_l1"):
        build_task(task_cfg("regression", loss="huber"), Scalar.fit([1.0]))
    with pytest.raises(ValueError, match="task=multiclass, the config says task=regression"):
        build_task(task_cfg("regression"), SingleLabel.fit(["a"]))


def test_datamodule_refuses_data_of_another_task(processed_dir):
    with pytest.raises(ValueError, match="preprocessed for task=multiclass, not task=regression"):
        MultimodalDataModule(processed_dir, ["text"], batch_size=4, task="regression")


# --------------------------------------------------------------------------- real tiny runs


def _run_of(tracking_uri: str):
    """The store's one training run (the `compare` and `report` stages add runs of their own, tagged kind)."""
    client = MlflowClient(tracking_uri=absolute_tracking_uri(tracking_uri))
    runs = client.search_runs([client.get_experiment_by_name("fusion").experiment_id])
    (run,) = [r for r in runs if "kind" not in r.data.tags]
    return client, run


@pytest.mark.slow
def test_multilabel_trains_evaluates_and_tracks(multilabel_processed_dir, tmp_path):
    from fusion.stages.evaluate import evaluate
    from fusion.stages.train import train

    cfg = tiny_config(tmp_path, multilabel_processed_dir, ["task=multilabel"])
    assert cfg.callbacks.checkpoint.monitor == "val/f1_macro"
    metrics = train(cfg)
    names = ("f1_micro", "f1_macro", "subset_acc", "hamming")
    for key in [f"{s}/{n}" for s in ("val", "test") for n in names] + ["val/f1_macro_best", "train/loss"]:
        assert 0.0 <= metrics[key] <= 1.0 or key == "train/loss", (key, metrics)
    assert set(k for k in metrics if "_without_" in k) == {f"test/f1_macro_without_{m}" for m in MODALITIES}
    evaluation = evaluate(cfg)
    heads = {f"{n}_head_{m}" for n in names for m in MODALITIES}  # each modality's own head (model.modality_heads)
    assert set(evaluation["test"]) == {*names, "loss", "samples"} | heads
    assert evaluation["test"]["f1_macro"] == pytest.approx(metrics["test/f1_macro"], abs=1e-6)
    out = Path(cfg.paths.evaluate_dir)
    rows = (out / "plots" / "per_class.csv").read_text().splitlines()
    genres = ["action", "comedy", "drama", "horror", "romance"]
    assert rows[0] == "class,f1" and [r.split(",")[0] for r in rows[1:]] == genres
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["per_class.csv"]
    assert (out / "per_class_f1.png").stat().st_size > 0 and not (out / "confusion_matrix.png").exists()
    client, run = _run_of(cfg.logger.tracking_uri)
    assert run.data.tags["task"] == "multilabel" and run.data.params["task/threshold"] == "0.5"
    logged = run.data.metrics
    assert {f"test/f1_{g}" for g in genres} | {"val/f1_macro_best", "test/f1_macro_without_audio"} <= set(logged)
    assert "val/acc_best" not in logged and "test/acc" not in logged
    assert logged["test/f1_macro"] == pytest.approx(metrics["test/f1_macro"])  # not overwritten by the ablation
    assert "per_class_f1.png" in {a.path for a in client.list_artifacts(run.info.run_id)}


@pytest.mark.slow
def test_multiclass_run_is_tested_without_each_modality(processed_dir, tmp_path):
    from fusion.stages.train import train

    cfg = tiny_config(tmp_path, processed_dir, ["trainer.max_epochs=1", "modality=text+audio"])
    metrics = train(cfg)
    expected = {"test/acc_without_text", "test/acc_without_audio"}
    assert {k for k in metrics if "_without_" in k} == expected
    assert all(0.0 <= metrics[k] <= 1.0 for k in expected)
    _, run = _run_of(cfg.logger.tracking_uri)
    assert expected <= set(run.data.metrics) and run.data.tags["task"] == "multiclass"
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert {"val/acc_best", "test/f1_macro"} <= set(run.data.metrics)

    single = tiny_config(tmp_path / "single", processed_dir, ["trainer.max_epochs=1", "modality=audio"])
    assert not [k for k in train(single) if "_without_" in k]  # nothing to remove from one modality


@pytest.mark.slow
def test_regression_dvc_pipeline_end_to_end(tmp_path):
    """`dvc repro` of the whole DAG with task=regression: its own figure and plot data as DVC outputs."""
    project = tmp_path / "project"
    env = copy_dvc_project(
        project, [*TINY_TRAINING, "sample.num_records=80", "sample.progress=false", "task=regression"]
    )

    def dvc(*args):
        result = subprocess.run(
            [sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    dvc("init", "--no-scm", "-q")
    dvc("repro")
    out = project / "outputs" / "evaluate"
    metrics = json.loads((out / "metrics.json").read_text())
    heads = {f"{n}_head_{m}" for n in ("mae", "pearson_r", "sign_acc") for m in MODALITIES}
    assert set(metrics["test"]) == {"loss", "mae", "pearson_r", "sign_acc", "samples"} | heads
    assert metrics["test"]["mae"] >= 0 and -1 <= metrics["test"]["pearson_r"] <= 1
    rows = (out / "plots" / "scatter.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) - 1 == metrics["test"]["samples"]
    assert (out / "pred_vs_true.png").stat().st_size > 0
    meta = json.loads((project / "data" / "processed" / "audio" / "meta.json").read_text())
    assert meta["task"] == "regression" and meta["classes"] == [] and meta["target_stats"]["count"] > 0
    records = [json.loads(line) for line in (project / "data/processed/audio/records.jsonl").read_text().splitlines()]
    assert all(isinstance(r["label"], float) for r in records)
    assert "up to date" in dvc("status")
    client, run = _run_of(f"sqlite:///{project / 'mlflow.db'}")
    assert run.data.tags["task"] == "regression"
    logged = run.data.metrics
    assert {"val/mae", "val/mae_best", "val/pearson_r", "val/sign_acc", "test/mae", "test/sign_acc"} <= set(logged)
    assert {f"test/mae_without_{m}" for m in MODALITIES} <= set(logged)  # the evaluate stage's ablation
    history = [m.value for m in client.get_metric_history(run.info.run_id, "val/mae")]
    assert logged["val/mae_best"] == pytest.approx(min(history))  # mode: min
    assert "pred_vs_true.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
