"""Every shell command in README.md, CONTRIBUTING.md and docs/*.md is exercised (`make docs-check`): the cheap
ones (`--help`, `make help`) are run here; every other one must be mapped to the tests that run it, and those
tests must exist, so a new command without a test, or a renamed test, fails here."""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = (ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md")))
SHELL_BLOCKS = ("bash", "sh", "console")
HELP_TIMEOUT_S = 300

# A command is cheap when it only prints help: it is run, and must exit 0 with some output.
CHEAP = re.compile(r"(\s--help$|^make help$)")

# command pattern (re.search) -> the tests that run it, or run what it runs on this machine's scale.
E2E = "tests/test_end_to_end.py::"
COVERED_BY: dict[str, tuple[str, ...]] = {
    # set-up, the suite, the docs check
    r"^make setup$": ("tests/test_docs.py::test_make_targets_of_the_docs_run_what_they_say",),
    r"^make test$": ("tests/test_docs.py::test_make_targets_of_the_docs_run_what_they_say",),
    r"^make lint$": ("tests/test_docs.py::test_make_targets_of_the_docs_run_what_they_say",),
    r"^make docs-check$": ("tests/test_docs.py::test_make_targets_of_the_docs_run_what_they_say",),
    r'^uv run pytest -m "not slow"$': ("tests/test_docs.py::test_not_slow_selects_the_quick_tests",),
    # the DVC pipeline
    r"^make demo$": (
        E2E + "test_repro_runs_every_stage_and_tracks_the_run",
        E2E + "test_second_repro_is_up_to_date_and_dag_has_the_designed_edges",
    ),
    r"dvc exp run -S data\.root=": (
        "tests/test_layout.py::test_dvc_hydra_composition_finds_the_resolver",
        "tests/test_layout.py::test_dvc_repro_runs_on_inline_text_and_one_media_folder",
    ),
    r"pipelines/preprocess\.py audio data\.root=": ("tests/test_preprocess.py::test_preprocess_cli_help_and_override",),
    r"^uv run python -m fusion\.config && uv run dvc repro$": (E2E + "test_repro_runs_every_stage_and_tracks_the_run",),
    r"fusion\.config fusion=late && uv run dvc repro robustness evaluate": (
        E2E + "test_repro_runs_the_robustness_stage_and_dvc_plots_show_its_curves",
        "tests/test_robustness.py::test_effective_robustness_is_measured_against_the_real_late_run",
    ),
    r"^uv run dvc (repro robustness|metrics show|plots show)$": (
        E2E + "test_repro_runs_the_robustness_stage_and_dvc_plots_show_its_curves",
    ),
    r"pipelines/robustness\.py": (
        "tests/test_robustness.py::test_the_stage_writes_curves_scores_and_figure",
        "tests/test_robustness.py::test_reruns_give_identical_curves",
    ),
    # training
    r"^uv run python train\.py( modality=text\+image fusion=late)?$": (
        E2E + "test_train_cli_creates_an_mlflow_run",
        "tests/test_training.py::test_other_fusions_and_subsets_train",
    ),
    r"train\.py -m (modality|task)=": (
        "tests/test_compare.py::test_multirun_puts_every_run_into_one_experiment_with_its_fusion_tag",
        "tests/test_tasks.py::test_multilabel_trains_evaluates_and_tracks",
    ),
    r"train\.py (fusion=late )?model\.modality_dropout=0\.3": (
        "tests/test_faults.py::test_training_with_modality_dropout_learns",
    ),
    r"ckpt_path=": (
        "tests/test_faults.py::test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run",
        "tests/test_faults.py::test_resolve_checkpoint_and_run_folder",
    ),
    r"train\.py trainer=gpu$": ("tests/test_config.py::test_trainer_options_compose",),
    # GPUs and nodes: composed and built here; the distributed path itself runs as trainer=ddp_cpu
    r"train\.py trainer=ddp( trainer\.devices=4 data\.batch_size=32)?$": (
        "tests/test_config.py::test_trainer_options_compose",
        "tests/test_distributed.py::test_ddp_cpu_matches_a_single_process_with_the_same_global_batch",
    ),
    r"train\.py trainer=ddp_cpu$": (
        "tests/test_distributed.py::test_ddp_cpu_matches_a_single_process_with_the_same_global_batch",
    ),
    r"train\.py trainer=fsdp": (
        "tests/test_distributed.py::test_fsdp_option_builds_lightnings_strategy_with_the_wrap_policy",
    ),
    r"^(torchrun|srun) ": (
        "tests/test_distributed.py::test_relaunches_script",
        "tests/test_distributed.py::test_ddp_cpu_matches_a_single_process_with_the_same_global_batch",
    ),
    r"data\.shards_url=": ("tests/test_data_loading.py::test_shards_streamed_from_a_remote_url_load_the_same_batches",),
    # encoders
    r"model\.(image|audio)\.kind=timm": (
        "tests/test_encoders.py::test_image_encoder_two_timm_families",
        "tests/test_bare_training.py::test_logger_none_trains_without_dvc_and_writes_nothing_to_mlflow",
    ),
    r"-S model/text=pretrained$": (
        "tests/test_pretrained_text.py::test_one_override_switches_preprocessing_and_model",
        "tests/test_pretrained_text.py::test_text_stage_stores_the_pretrained_tokenizer_ids",
    ),
    r"model/text=pretrained model\.text\.freeze=true": (
        "tests/test_pretrained_text.py::test_freeze_leaves_only_the_projection_trainable",
    ),
    r"model/text=pretrained 'model\.text\.lora=": (
        "tests/test_pretrained_text.py::test_lora_training_step_moves_adapters_not_base_weights",
    ),
    # other tasks
    r"pipelines/sample\.py sample\.task=multilabel": ("tests/test_tasks.py::test_sample_is_deterministic_per_task",),
    r"pipelines/preprocess\.py \$m task\.name=multilabel": (
        "tests/test_tasks.py::test_multilabel_trains_evaluates_and_tracks",
    ),
    # tracking, compare, report, explain
    r"^make sweep": (
        "tests/test_compare.py::test_params_dvc_stage_and_make_targets",
        "tests/test_compare.py::test_multirun_puts_every_run_into_one_experiment_with_its_fusion_tag",
    ),
    r"^make compare$": ("tests/test_compare.py::test_compare_stage_lists_every_run_of_the_sweep",),
    r"^make report$": ("tests/test_report.py::test_stage_command_prints_where_the_files_are",),
    r"fusion\.report --task multiclass --all-runs --no-mlflow": (
        "tests/test_report.py::test_html_is_self_contained_and_holds_every_section_run_and_metric",
    ),
    r"-m fusion\.explain run_id=": ("tests/test_explain.py::test_explain_cli_regenerates_the_figures_of_any_sample",),
    # serving and prediction
    r"mlflow models serve -m runs:/": (
        "tests/test_serving.py::test_served_model_answers_all_modalities_as_base64_with_the_bundle_scores",
    ),
    r"^curl -s http://127\.0\.0\.1:5001/invocations": (
        "tests/test_serving.py::test_served_model_answers_all_modalities_as_base64_with_the_bundle_scores",
        "tests/test_serving.py::test_served_model_answers_with_a_modality_missing",
    ),
    r"-m fusion\.predict model=": (
        "tests/test_predict.py::test_predictions_of_the_test_split_equal_the_evaluate_stage",
    ),
    # tuning: the search (tiny: 6 trials, killed and resumed, pruned, 2 workers), promotion, seeds and statistics
    r"(train\.py -m hparams_search=|^make search)": (
        "tests/test_search.py::test_a_killed_search_resumes_without_repeating_a_trial",
        "tests/test_search.py::test_pruned_trials_are_marked_in_optuna_and_mlflow",
        "tests/test_search.py::test_two_workers_share_one_study",
    ),
    r"(fusion\.search promote|\+experiment=)": (
        "tests/test_search.py::test_the_promoted_config_reproduces_the_best_trial",
    ),
    r"fusion\.search confirm": (
        "tests/test_search.py::test_confirm_retrains_the_leaders_over_seeds_and_promotes_the_best_mean",
    ),
    r"train\.py -m (fusion=\S+ )?seed=": (
        "tests/test_compare.py::test_multirun_puts_every_run_into_one_experiment_with_its_fusion_tag",
        "tests/test_stats.py::test_summary_of_three_seeds_by_hand",
    ),
    r"^python -m fusion\.tracking\.compare$": (
        "tests/test_compare.py::test_compare_stage_lists_every_run_of_the_sweep",
        "tests/test_compare.py::test_command_line_options_and_overrides",
    ),
    r"^python -m fusion\.report$": ("tests/test_report.py::test_stage_command_prints_where_the_files_are",),
    # benchmarks (never run by the suite at full size: the quick run covers every section)
    r"^(make bench|python -m benchmarks\.run)": (
        "tests/test_benchmarks.py::test_quick_run_writes_every_section_to_json_and_markdown",
        "tests/test_benchmarks.py::test_quick_block_replaces_sizes_and_overrides_win",
        "tests/test_benchmarks.py::test_only_selects_sections_in_run_order",
    ),
}


def split_commands(lines: list[str], lang: str) -> list[str]:
    """The commands of one fenced block: comments dropped, `\\` continuations joined, a heredoc kept whole;
    in a ``console`` block only the lines after a `$ ` prompt."""
    commands, current, heredoc = [], "", None
    for raw in lines:
        line = raw.strip()
        if heredoc:
            current += "\n" + raw
            if line == heredoc:
                commands.append(current)
                current, heredoc = "", None
            continue
        if lang == "console":
            if not (line.startswith("$ ") or current):
                continue
            line = line.removeprefix("$ ")
        if not current and (not line or line.startswith("#")):
            continue
        line = re.sub(r"\s+#\s.*$", "", line)
        current = f"{current} {line}".strip() if current else line
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        if match := re.search(r"<<'?(\w+)'?", current):
            heredoc = match.group(1)
            continue
        commands.append(current)
        current = ""
    return commands


def doc_commands(path: Path) -> list[str]:
    """Every command of the ```bash / ```sh / ```console blocks of one Markdown file."""
    commands, block, lang = [], None, ""
    for line in path.read_text(encoding="utf-8").splitlines():
        fence = re.match(r"^\s*```(\w*)\s*$", line)
        if fence and block is None:
            block, lang = [], fence.group(1)
        elif fence and block is not None:
            if lang in SHELL_BLOCKS:
                commands += split_commands(block, lang)
            block = None
        elif block is not None:
            block.append(line)
    return commands


ALL = [(path.relative_to(ROOT).as_posix(), command) for path in DOC_FILES for command in doc_commands(path)]


@cache
def _test_names(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return frozenset(node.name for node in tree.body if isinstance(node, ast.FunctionDef))


def test_the_docs_have_commands_and_the_splitter_joins_continuations_and_heredocs():
    assert len(ALL) > 40 and any(path.startswith("docs/") for path, _ in ALL)
    block = ["# a comment", "uv run x \\", "    --flag   # why", "curl -d @- <<EOF", '{"a": 1}', "EOF", ""]
    assert split_commands(block, "bash") == ["uv run x --flag", 'curl -d @- <<EOF\n{"a": 1}\nEOF']
    assert split_commands(["$ make help", "  make demo ...", "output"], "console") == ["make help"]


@pytest.mark.parametrize(("doc", "command"), [c for c in ALL if not CHEAP.search(c[1])], ids=lambda v: v[:60])
def test_every_command_is_mapped_to_tests_that_exist(doc, command):
    nodes = [node for pattern, nodes in COVERED_BY.items() if re.search(pattern, command) for node in nodes]
    assert nodes, f"{doc}: no test runs `{command}`; add one and map it in tests/test_docs.py COVERED_BY"
    for node in nodes:
        path, _, name = node.partition("::")
        assert (ROOT / path).is_file() and name in _test_names(path), (
            f"{doc}: `{command}` maps to {node}, which does not exist"
        )


def test_every_mapping_is_used():
    unused = [p for p in COVERED_BY if not any(re.search(p, command) for _, command in ALL)]
    assert not unused, f"patterns of COVERED_BY that match no documented command: {unused}"


def _argv(command: str) -> list[str]:
    """A documented help command as run here: `uv run` dropped, `python` as this interpreter."""
    argv = shlex.split(command)
    if argv[:2] == ["uv", "run"]:
        argv = argv[2:]
    if argv[0] == "python":
        argv[0] = sys.executable
    return argv


@pytest.mark.parametrize(("doc", "command"), [c for c in ALL if CHEAP.search(c[1])], ids=lambda v: v[:60])
def test_help_commands_run(doc, command):
    argv = _argv(command)
    if argv[0] == "make" and shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
    assert result.returncode == 0 and result.stdout.strip(), (
        f"{doc}: `{command}` -> {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    )


def test_make_targets_of_the_docs_run_what_they_say():
    """`make setup`, `make lint`, `make test` and `make docs-check` run uv sync, ruff, ruff then pytest (on every
    core, or in one process with TEST_WORKERS=0), and this file (dry run)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = {
        t: subprocess.run(["make", "-n", t], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout
        for t in ("setup", "lint", "test", "docs-check")
    }
    assert "sync --frozen" in dry["setup"]
    assert re.search(r"run --frozen ruff check \.\s*$", dry["lint"], re.M)
    assert re.search(r"run --frozen ruff format --check \.\s*$", dry["lint"], re.M)
    assert re.search(r"run --frozen pytest -n auto --dist loadscope\s*$", dry["test"], re.M)  # every test, every core
    one_process = subprocess.run(
        ["make", "-n", "test", "TEST_WORKERS=0"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert re.search(r"run --frozen pytest -n 0 --dist loadscope\s*$", one_process, re.M)  # CONTRIBUTING's switch
    assert dry["test"].index("ruff format --check .") < dry["test"].index("pytest")  # CI (.ci/run) fails on a finding
    assert "pytest tests/test_docs.py" in dry["docs-check"]


def test_not_slow_selects_the_quick_tests():
    """`pytest -m "not slow"` (CONTRIBUTING) keeps the quick tests and leaves out every slow one."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "not slow",
            "--collect-only",
            "-q",
            "tests/test_docs.py",
            "tests/test_compare.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HELP_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    selected = result.stdout
    assert "test_docs.py::test_not_slow_selects_the_quick_tests" in selected
    assert "test_multirun_puts_every_run_into_one_experiment_with_its_fusion_tag" not in selected
    assert re.search(r"\d+ deselected", selected)
