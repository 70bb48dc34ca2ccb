"""The check that each modality tells the label (fusion/training/informative.py): chance level, the test, the
warning, and the real training run that logs it."""

import pytest
import torch
from mlflow.tracking import MlflowClient
from pytorch_lightning.plugins.precision import MixedPrecision

from fusion.stages.train import train
from fusion.tracking.stats import binomial_upper_tail
from fusion.tracking.store import absolute_tracking_uri
from fusion.training.informative import TAG, chance_agreement, check_head, head_answers, warning
from fusion.training.setup import build_datamodule, build_module
from tests.helpers.config import tiny_config

CLASSES = 10


def _labels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, CLASSES, (n,), generator=torch.Generator().manual_seed(seed))


def test_chance_is_the_agreement_of_answers_independent_of_the_labels():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])  # shares 1/2, 1/3, 1/6
    always_zero = torch.zeros(6, dtype=torch.long)
    assert chance_agreement(always_zero, labels, 3) == pytest.approx(0.5)  # the majority class's share
    spread = torch.tensor([0, 1, 2, 0, 1, 2])  # each answered a third of the time
    assert chance_agreement(spread, labels, 3) == pytest.approx((1 / 2 + 1 / 3 + 1 / 6) / 3)
    assert chance_agreement(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 3) == 0.0


def test_a_head_that_learnt_nothing_fails_and_one_that_learnt_passes():
    labels = _labels(300)
    majority = torch.full_like(labels, int(labels.bincount().argmax()))
    unrelated = _labels(300, seed=1)  # answers drawn without looking at the label
    for answers in (majority, unrelated):
        check = check_head("audio", answers, labels, CLASSES)
        assert not check.informative(0.01)
        assert check.p_value == pytest.approx(binomial_upper_tail(check.correct, 300, check.chance))
    learnt = torch.where(torch.arange(300) % 3 == 0, unrelated, labels)  # right on about 70%
    check = check_head("text", learnt, labels, CLASSES)
    assert check.informative(0.01) and check.accuracy > 0.6 and check.p_value < 1e-50
    assert check_head("image", labels[:0], labels[:0], CLASSES).informative(0.01)  # nothing to judge


def test_the_warning_names_the_modality_its_figures_and_the_run_to_compare():
    labels = _labels(200)
    failed = check_head("audio", _labels(200, seed=3), labels, CLASSES)
    text = warning([failed], ["text", "image", "audio"], 0.01)
    assert f"right on {failed.correct} of 200" in text and "audio" in text
    assert "modality=text+image" in text
    every = warning([failed, check_head("text", _labels(200, seed=4), labels, CLASSES)], ["text", "audio"], 0.01)
    assert "no sign of the label in audio and text" in every and "labels and the files" in every


def test_head_answers_cover_the_validation_records_holding_each_modality(processed_dir, tmp_path):
    cfg = tiny_config(tmp_path, processed_dir)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    module.net.train()
    answers = head_answers(module.net, datamodule.loader("val"), torch.device("cpu"))
    assert module.net.training  # the mode it came in with is put back
    for m in ("text", "image", "audio"):
        holding = sum(datamodule.shards[m].get(i) is not None for i, _ in datamodule.dataset("val").records)
        predicted, labels = answers[m]
        assert len(predicted) == len(labels) == holding > 0
        assert predicted.dtype == torch.long and int(predicted.max()) < len(datamodule.classes)
    # under bf16-mixed the trainer's precision plugin runs the pass in autocast, as testing does
    mixed = head_answers(module.net, datamodule.loader("val"), torch.device("cpu"), MixedPrecision("bf16-mixed", "cpu"))
    assert {m: len(mixed[m][0]) for m in mixed} == {m: len(answers[m][0]) for m in answers}


@pytest.mark.slow
def test_training_logs_the_check_and_tags_the_modalities_that_fail_it(processed_dir, tmp_path, capsys):
    """The tiny run's heads are what they are; whatever they score, the logged p-values, the tag and the warning
    agree with each other."""
    cfg = tiny_config(tmp_path, processed_dir, ["balance.modality_check.alpha=0.5"])
    metrics = train(cfg)
    failed = []
    for m in ("text", "image", "audio"):
        p_value, chance = metrics[f"val/head_pvalue_{m}"], metrics[f"val/head_chance_{m}"]
        assert 0.0 <= p_value <= 1.0 and 0.0 <= chance <= 1.0
        if p_value >= 0.5:
            failed.append(m)
    client = MlflowClient(tracking_uri=absolute_tracking_uri(cfg.logger.tracking_uri))
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    assert run.data.metrics["val/head_pvalue_audio"] == pytest.approx(metrics["val/head_pvalue_audio"])
    out = capsys.readouterr().out
    assert run.data.tags.get(TAG) == ("+".join(failed) or None)
    assert ("[modality check]" in out) == bool(failed)
    off = train(tiny_config(tmp_path / "off", processed_dir, ["balance.modality_check.enabled=false"]))
    assert not any("head_pvalue" in k for k in off)
