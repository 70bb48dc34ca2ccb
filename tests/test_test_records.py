"""test_records.csv's rows and the test figure of each group of records that hold the same modalities."""

import pytest
import torch

from fusion.config import compose
from fusion.tasks.labels import label_spec
from fusion.tasks.objectives import build_task
from fusion.training import test_records as records  # a module: pytest would collect test_record_rows itself
from fusion.training.test_records import NO_MODALITY, held_modalities, log_outcome_by_modalities, outcome_by_modalities


def _task(name: str):
    """The task the config builds (conf/task/<name>.yaml), for two classes or one target."""
    spec = {"task": name, "classes": [] if name == "regression" else ["a", "b"], "target_stats": {"mean": 0, "std": 1}}
    return build_task(compose([f"task={name}"]).task, label_spec(name)(spec))


class _Logger:
    def __init__(self):
        self.logged: dict[str, float] = {}

    def log_metrics(self, metrics):
        self.logged.update(metrics)


def _batch(present: dict[str, list[bool]]) -> dict:
    return {m: {"present": torch.tensor(flags)} for m, flags in present.items()}


def test_held_modalities_follow_the_run_order_and_name_a_record_with_none():
    batch = _batch({"audio": [True, False, True, False], "text": [True, True, False, False]})
    assert held_modalities(batch, ["text", "audio"]) == ["text+audio", "text", "audio", NO_MODALITY]
    # a modality of the batch that the run does not use is not counted
    assert held_modalities(batch, ["audio"]) == ["audio", NO_MODALITY, "audio", NO_MODALITY]


def test_rows_carry_the_held_modalities_next_to_the_outcome():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    rows = records.test_record_rows(
        ["a", "b", "c"], torch.tensor([0, 0, 1]), scores, _task("multiclass"), ["x+y", "x", "y"]
    )
    assert [(r["id"], r["correct"], r["modalities"]) for r in rows] == [("a", 1, "x+y"), ("b", 0, "x"), ("c", 0, "y")]
    # without the modalities (a caller that has none) the column is empty, not missing
    assert all(
        r["modalities"] == ""
        for r in records.test_record_rows(["a"], torch.tensor([0]), scores[:1], _task("multiclass"))
    )


def test_outcome_groups_average_to_the_overall_figure_and_list_fuller_groups_first():
    held = ["t+i+a"] * 5 + ["i+a"] * 3 + ["a"] * 2 + ["t+a"] * 4
    correct = [1, 1, 1, 1, 0] + [1, 0, 1] + [0, 0] + [1, 1, 1, 0]
    rows = [{"modalities": h, "correct": c} for h, c in zip(held, correct, strict=True)]
    outcome = outcome_by_modalities(rows, "multiclass")
    assert list(outcome) == ["t+i+a", "t+a", "i+a", "a"]  # 3 modalities, then 2 (more records first), then 1
    assert outcome["t+i+a"] == (0.8, 5) and outcome["i+a"] == (pytest.approx(2 / 3), 3) and outcome["a"] == (0.0, 2)
    overall = sum(figure * n for figure, n in outcome.values()) / sum(n for _, n in outcome.values())
    assert overall == pytest.approx(sum(correct) / len(correct))


def test_regression_groups_report_the_mean_absolute_error():
    rows = records.test_record_rows(
        ["a", "b", "c"],
        torch.tensor([1.0, 2.0, 0.0]),
        torch.tensor([[1.5], [1.0], [0.25]]),
        _task("regression"),
        ["x", "x", "y"],
    )
    outcome = outcome_by_modalities(rows, "regression")
    assert outcome == {"x": (pytest.approx(0.75), 2), "y": (pytest.approx(0.25), 1)}


def test_multilabel_groups_report_the_exact_match(capsys):
    rows = records.test_record_rows(
        ["a", "b"],
        torch.tensor([[1, 0], [1, 1]]),
        torch.tensor([[0.9, 0.2], [0.9, 0.3]]),
        _task("multilabel"),
        ["text+image", "text+image"],
    )
    logger = _Logger()
    metrics = log_outcome_by_modalities(outcome_by_modalities(rows, "multilabel"), "multilabel", logger)
    assert (
        logger.logged
        == metrics
        == {
            "test/subset_acc_holding_text_image": 0.5,
            "test/records_holding_text_image": 2.0,
        }
    )
    printed = capsys.readouterr().out
    assert "Test subset_acc by the modalities each record holds (test_records.csv):" in printed
    assert "text+image  0.500  (2 records)" in printed
