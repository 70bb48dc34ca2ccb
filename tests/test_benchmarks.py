"""The benchmarks package: pure helpers (tables, ratios, peak FLOPs, settings, MLflow reading) and a --quick smoke
run of the whole script. Nothing here asserts on speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.attention import key_mask, measure_case
from benchmarks.common import short_error
from benchmarks.ddp import _last_error, last_epoch_metric, run_id_of, scaling_efficiency
from benchmarks.machine import device_slug, peak_tflops
from benchmarks.run import SECTIONS, duration, selected_sections
from benchmarks.settings import load_settings
from benchmarks.tables import Table, cell_text, format_markdown, format_text, percent, ratio, times, verdict

ROOT = Path(__file__).resolve().parents[1]
# The ddp section starts train.py three times (one plain, two ranks); its reading of MLflow is unit-tested below.
SMOKE_SECTIONS = ("preprocess", "loader", "training", "attention")
SMOKE_TIMEOUT_SECONDS = 600


def _table() -> Table:
    table = Table("Speed", ["name", "items/s", "ratio"], notes=["a note"])
    table.add("fast", 1234.5, times(2.0))
    table.add("slow", 0.012345, None)
    return table


def test_cells_are_formatted_for_reading():
    assert cell_text(0.012345) == "0.0123"
    assert cell_text(1234.5) == "1,234"  # thousands kept whole
    assert cell_text(None) == cell_text(float("nan")) == "n/a"
    assert cell_text(True) == "yes" and cell_text(7) == "7"
    assert times(2.0) == "2x" and times(None) == "n/a"
    assert percent(0.875) == "88%" and verdict(True) == "PASS" and verdict(False) == "FAIL" and verdict(None) == "n/a"


def test_text_table_aligns_columns_and_keeps_notes():
    lines = format_text(_table()).splitlines()
    assert lines[0] == "Speed"
    header, rule, fast, slow = lines[1:5]
    assert len(header) == len(rule) == len(fast) == len(slow)  # fixed width
    assert fast.startswith("fast") and fast.endswith("2x") and "1,234" in fast
    assert lines[-1] == "  note: a note"


def test_markdown_table_is_a_pipe_table_with_numbers_right_aligned():
    text = format_markdown(_table())
    lines = text.splitlines()
    assert lines[0] == "### Speed"
    assert lines[2] == "| name | items/s | ratio |"
    assert lines[3] == "| :--- | ---: | ---: |"
    assert lines[4] == "| fast | 1,234 | 2x |"
    assert "- a note" in lines


def test_a_row_must_fill_every_column():
    with pytest.raises(ValueError, match="expected 3"):
        _table().add("only one cell")


def test_ratio_and_scaling_efficiency():
    assert ratio(6.0, 3.0) == 2.0
    assert ratio(None, 3.0) is None and ratio(1.0, 0.0) is None
    assert scaling_efficiency(300.0, 200.0, 2) == pytest.approx(0.75)  # 300 / (2 × 200)
    assert scaling_efficiency(400.0, 200.0, 2) == pytest.approx(1.0)
    assert scaling_efficiency(None, 200.0, 2) is None and scaling_efficiency(300.0, None, 2) is None


def test_peak_tflops_lookup_by_device_name():
    table = load_settings().peak_tflops.devices
    assert peak_tflops("NVIDIA H100 80GB HBM3", table) == {"bf16": 989.0, "fp32": 67.0}
    assert peak_tflops("NVIDIA H200", table)["bf16"] == 989.0
    assert peak_tflops("NVIDIA A100-SXM4-40GB", table) == {"bf16": 312.0, "fp32": 19.5}
    assert peak_tflops("NVIDIA GeForce RTX 3060", table) is None  # unknown GPU: MFU n/a
    assert peak_tflops(None, table) is None  # CPU
    assert peak_tflops("NVIDIA H100 PCIe", table, {"bf16": 756, "fp32": 51}) == {"bf16": 756.0, "fp32": 51.0}


def test_device_slug_names_the_results_file():
    assert device_slug(torch.device("cpu")) == "cpu"


def test_quick_block_replaces_sizes_and_overrides_win():
    full, quick = load_settings(), load_settings(quick=True)
    assert "quick" not in full
    assert quick.dataset.num_records < full.dataset.num_records
    assert len(quick.training.setups) == 1 < len(full.training.setups)  # lists are replaced, not merged
    assert quick.training.precisions == full.training.precisions  # what the quick block leaves alone stays
    tuned = load_settings(quick=True, overrides=["attention.lengths=[32,64]", "training.epochs=3"])
    assert list(tuned.attention.lengths) == [32, 64] and tuned.training.epochs == 3
    with pytest.raises(SystemExit, match="key=value"):
        load_settings(overrides=["training.epochs"])


def test_every_section_has_an_expected_duration():
    for quick in (False, True):
        settings = load_settings(quick=quick)
        assert all(settings[name].expected_seconds > 0 for name in SECTIONS)


def test_only_selects_sections_in_run_order():
    assert selected_sections(None) == list(SECTIONS)
    assert selected_sections("attention,preprocess") == ["preprocess", "attention"]
    with pytest.raises(SystemExit, match="unknown section"):
        selected_sections("loader,gpu")


def test_durations_read_in_seconds_then_minutes():
    assert duration(45) == "45 s" and duration(119) == "119 s" and duration(900) == "15 min"


def test_short_error_is_one_bounded_line():
    text = short_error(ValueError("first line\nsecond line"), 100)
    assert text == "ValueError: first line"
    assert len(short_error(RuntimeError("x" * 500), 40)) == 40


def test_key_mask_pads_up_to_the_fraction_and_keeps_one_sample_whole():
    mask = key_mask(4, 100, 0.25, torch.device("cpu"))
    assert mask.shape == (4, 100) and mask.dtype == torch.bool
    assert mask.sum(dim=1).tolist() == [100, 92, 83, 75]
    assert mask[:, 0].all()  # every sample keeps its first keys


@pytest.mark.parametrize("impl", ["plain", "sdpa"])
def test_one_attention_case_reports_time_and_memory(impl):
    case = {
        "impl": impl,
        "masked": True,
        "length": 32,
        "device": "cpu",
        "batch": 2,
        "heads": 2,
        "head_dim": 8,
        "repeats": 2,
        "warmup": 0,
        "warmup_length": 8,
        "masked_fraction": 0.25,
        "seed": 0,
    }
    result = measure_case(case)
    assert len(result["seconds"]) == 2 and result["median_ms"] > 0
    assert result["peak_mib"] >= 0 and result["slack_mib"] >= 0


def test_ddp_figures_come_from_the_last_epoch_of_the_mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("fusion", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment)
    key = "time/train_samples_per_second"
    for step, value in ((9, 90.0), (29, 130.0), (19, 120.0)):  # logged per epoch at the epoch's last step
        client.log_metric(run.info.run_id, key, value, step=step)
    client.set_terminated(run.info.run_id)
    run_dir = tmp_path / "run-ddp_cpu"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"run_id": run.info.run_id, "status": "finished"}))

    assert run_id_of(run_dir) == run.info.run_id
    assert last_epoch_metric(uri, run_id_of(run_dir), key) == 130.0
    with pytest.raises(LookupError, match="no metric"):
        last_epoch_metric(uri, run.info.run_id, "time/missing")


def test_a_failed_train_run_is_reported_by_its_exception_line():
    output = (
        "Epoch 0:   0%|  | 0/2 [00:00<?, ?it/s]\rError executing job with overrides: ['trainer=ddp_cpu']\n"
        'Traceback (most recent call last):\n  File "train.py"\nValueError: shards hold 1349 items\n'
        "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n"
    )
    assert _last_error(output) == "ValueError: shards hold 1349 items"
    assert (
        _last_error(
            "Could not override 'x'.\nKey 'x' is not in struct\n"
            "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."
        )
        == "Key 'x' is not in struct"
    )


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@pytest.mark.slow
def test_quick_run_writes_every_section_to_json_and_markdown(tmp_path, subprocess_env):
    output, markdown = tmp_path / "x.json", tmp_path / "x.md"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--only",
            ",".join(SMOKE_SECTIONS),
            "--output",
            str(output),
            "--markdown",
            str(markdown),
            f"workdir={tmp_path}",
        ],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
    )
    log = output.with_suffix(".log")
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-3000:]}\n{log.read_text()[-3000:]}"
    report = json.loads(output.read_text())

    assert report["quick"] is True
    assert {"cpu", "cores", "torch", "cuda_device"} <= set(report["machine"])
    assert list(report["sections"]) == list(SMOKE_SECTIONS)
    sections = {name: s["figures"] for name, s in report["sections"].items()}
    for name, section in report["sections"].items():
        assert "error" not in section and _positive(section["seconds"]) and section["tables"], name

    for row in sections["preprocess"]["runs"].values():
        assert row["items"] > 0 and _positive(row["items_per_second"]) and _positive(row["speedup_vs_first"])
    per_item = sections["loader"]["per_item"]
    assert set(per_item) == {"text", "image", "audio", "all"}
    for row in per_item.values():
        assert _positive(row["shards_us"]) and _positive(row["raw_us"]) and _positive(row["speedup"])
        assert row["passed"] in (True, False)
    assert {"0w", "2w"} <= set(sections["loader"]["dataloader"])
    for row in sections["loader"]["dataloader"].values():
        assert _positive(row["samples_per_second"]) and _positive(row["first_batch_seconds"])
    runs = sections["training"]["runs"]
    assert len(runs) == 2  # quick: one setup × fp32 / bf16, eager
    for row in runs.values():
        assert "error" not in row, row
        assert _positive(row["samples_per_second"]) and 0 <= row["data_wait_fraction"] < 1
        assert _positive(row["gflop_per_sample"]) and row["data_wait_ok"] in (True, False)
        assert row["mfu"] is None  # CPU: no peak to compare with
    cases = sections["attention"]["cases"]
    assert len(cases) == 2 * 2 * 2  # plain / sdpa × unmasked / masked × 2 lengths
    for case in cases.values():
        assert _positive(case["median_ms"]) and case["peak_mib"] >= 0

    text = markdown.read_text()
    assert text.startswith("## Benchmark results")
    for name in SMOKE_SECTIONS:
        assert f"### {name}" in text
    assert text.count("| :--- |") == 6  # the rule under the header of each table
    for title in ("#### Preprocessing", "#### Loader: one item", "#### Training throughput", "#### Attention"):
        assert title in text
    assert "== training" in result.stdout and "samples/s" in result.stdout
