"""The report step: real tiny training runs (curves, per-class F1, robustness) in a real SQLite MLflow store, then the
HTML (self-contained), the Markdown (links to existing PNGs) and the report run; synthetic runs for the edge cases."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from fusion.report.collect import per_class_f1
from fusion.report.main import ReportError, main, run_report
from fusion.tracking.compare import CompareError, compare_runs
from tests.helpers.browser import CHROMIUM, browser_env, require_chromium
from tests.helpers.config import tiny_config

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
LEVELS = [0.0, 0.5, 1.0]
HEADINGS = ["Summary", "Runs", "Training curves", "Per-class F1", "Robustness", "Attention figures of the best run"]


class _Links(HTMLParser):
    """Every src/href of a page, and the text of its headings."""

    def __init__(self):
        super().__init__()
        self.links, self.headings, self._in_heading = [], [], False

    def handle_starttag(self, tag, attrs):
        self.links += [(tag, name, value) for name, value in attrs if name in ("src", "href")]
        self._in_heading = tag in ("h1", "h2", "h3", "h4")
        if self._in_heading:
            self.headings.append("")

    def handle_endtag(self, tag):
        self._in_heading = False if tag in ("h1", "h2", "h3", "h4") else self._in_heading

    def handle_data(self, data):
        if self._in_heading:
            self.headings[-1] += data


def _parse(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def _config(tmp: Path, uri: str, **report) -> OmegaConf:
    return OmegaConf.create(
        {
            "logger": {"tracking_uri": uri, "experiment_name": "fusion"},
            "report": {
                "html": str(tmp / "results" / "report.html"),
                "markdown": str(tmp / "results" / "report.md"),
                "files_dir": str(tmp / "results" / "report_files"),
                "tasks": [],
                "latest_only": True,
                "curves": ["train/loss", "val/loss"],
                "max_curve_runs": 12,
                "log_to_mlflow": True,
                "run_name": "report",
                **report,
            },
        }
    )


def _markdown_images(markdown: Path) -> list[Path]:
    return [markdown.parent / link for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown.read_text())]


def _explain_figure(folder: Path) -> Path:
    """A real matplotlib PNG standing in for an attention map."""
    from fusion.tracking.figures import plt, save_figure

    fig, ax = plt.subplots(figsize=(3, 2.5))
    ax.imshow([[0.1, 0.9], [0.6, 0.3]], cmap="magma")
    ax.set_title("text → image attention")
    return save_figure(fig, folder / "cross_attention.png")


# --- real tiny training runs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(processed_dir, sample_root, tmp_path_factory):
    """text · late and text+image · late trained and tested for real (with their explain/ attention figures), the
    robustness curves of both; the store."""
    from fusion.robustness.evaluate import evaluate_robustness
    from fusion.stages.train import train

    base = tmp_path_factory.mktemp("report")
    for modality in ("text", "text+image"):
        slug = modality.replace("+", "_")
        cfg = tiny_config(
            base,
            processed_dir,
            [
                f"modality={modality}",
                "fusion=late",
                f"data.root={sample_root}",
                f"paths.output_dir={base / slug}",
                f"paths.robustness_dir={base / slug / 'robustness'}",
                f"robustness.levels={LEVELS}",
            ],
        )
        train(cfg)
        evaluate_robustness(cfg)
    return base, f"sqlite:///{base / 'mlflow.db'}"


@pytest.fixture(scope="module")
def reported(trained):
    base, uri = trained
    data, files = run_report(_config(base, uri))
    return base, uri, data, files


@pytest.mark.slow
def test_html_is_self_contained_and_holds_every_section_run_and_metric(reported):
    _, _, data, files = reported
    html = files.html.read_text(encoding="utf-8")
    page = _parse(html)
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", html) and "url(" not in html
    for tag, name, value in page.links:
        assert (
            (tag, name) == ("img", "src")
            and value.startswith("data:image/png;base64,")
            or (tag, name) == ("a", "href")
            and value.startswith("#")
        ), (tag, name, value[:60])
    images = [base64.b64decode(value.split(",", 1)[1]) for tag, _, value in page.links if tag == "img"]
    assert images and all(image.startswith(PNG) for image in images)
    assert all(heading in page.headings for heading in HEADINGS)
    (task,) = data.tasks
    table_rows = re.findall(r"<tr[^>]*>.*?</tr>", html, flags=re.S)
    for row in task.table.rows:  # each run is a row of the task's table: its id, modality, fusion and value
        (cells,) = [r for r in table_rows if row.run_id[:8] in r and f">{row.modality}<" in r]
        assert f">{row.fusion}<" in cells and f"{row.value:.3f}" in cells
    # curves, per-class F1, the `all` robustness curve of both runs, the best run's curves, then explain/'s PNGs
    explained = task.explanation
    assert explained.contribution is not None and explained.samples and not explained.note
    assert len(images) == 4 + 1 + sum(len(sample.images) for sample in explained.samples)
    summary = json.loads((files.files_dir / task.table.task / "explain" / "summary.json").read_text())
    for sample in summary["samples"]:  # grouped per sample, as the training run's summary.json lists them
        assert f"sample <code>{sample['id']}</code>, label {sample['label']}, prediction {sample['prediction']}" in html


def test_per_class_f1_leaves_out_the_averages_their_views_the_heads_and_the_ablations():
    """test/f1_<class> keys only: the macro and micro averages are no classes, nor are their per-view twins of a
    heads' vote (test/f1_macro_vote), the modality heads' and the ablations'; a class named like a view stays."""
    averages = {"test/f1_macro": 0.6, "test/f1_micro": 0.6, "test/f1_macro_fused": 0.5, "test/f1_micro_vote": 0.6}
    others = {"test/f1_macro_head_text": 0.3, "test/f1_macro_without_text": 0.4}
    classes = {"test/f1_alpha": 0.5, "test/f1_bravo": 0.7, "test/f1_vote": 0.9}
    assert per_class_f1({**averages, **others, **classes}) == {"alpha": 0.5, "bravo": 0.7, "vote": 0.9}


@pytest.mark.slow
def test_figures_hold_what_the_runs_logged(reported):
    _, _, data, _ = reported
    (task,) = data.tasks
    assert task.curve_keys == ["train/loss", "val/loss", "val/acc"]
    for run in task.details():
        assert {key: [x for x, _ in points] for key, points in run.curves.items()} == {
            "train/loss": [1, 2],
            "val/loss": [1, 2],
            "val/acc": [1, 2],
        }
        assert len(run.per_class) == 10 and all(0.0 <= v <= 1.0 for v in run.per_class.values())
        assert run.levels == LEVELS and list(run.robustness)[-1] == "all"
    assert set(task.best.robustness) >= {"text_typos", "all"}


@pytest.mark.slow
def test_markdown_links_every_figure_as_an_existing_png(reported):
    _, _, _, files = reported
    text = files.markdown.read_text(encoding="utf-8")
    images = _markdown_images(files.markdown)
    assert len(images) == files.html.read_text().count("<img ")
    assert all(path.is_file() and path.read_bytes().startswith(PNG) for path in images)
    assert all(path.resolve().is_relative_to(files.files_dir.resolve()) for path in images)
    assert "](report_files/" in text and "http" not in text
    assert all(f"### {heading}" in text for heading in HEADINGS[1:]) and "## Summary" in text


@pytest.mark.slow
def test_report_run_is_logged_with_its_files_and_left_out_of_compare(reported, tmp_path):
    _, uri, data, files = reported
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(files.run_id)
    assert run.info.run_name == "report" and run.info.status == "FINISHED" and run.data.tags["kind"] == "report"
    top = {a.path for a in client.list_artifacts(files.run_id)}
    assert top == {"report.html", "report.md", "report_files"}
    logged = {a.path for a in client.list_artifacts(files.run_id, "report_files")}
    assert "report_files/multiclass_training_curves.png" in logged
    downloaded = Path(client.download_artifacts(files.run_id, "", str(tmp_path)))
    assert all(path.is_file() for path in _markdown_images(downloaded / "report.md"))
    again = compare_runs(uri, "fusion")
    assert {row.run_id for table in again.tables for row in table.rows} == {
        row.run_id for row in data.tasks[0].table.rows
    } and not again.skipped


@pytest.mark.slow
def test_stage_command_prints_where_the_files_are(trained, subprocess_env):
    base, uri = trained
    out = base / "cli"
    result = subprocess.run(
        [
            sys.executable,
            "pipelines/report.py",
            "--no-mlflow",
            "--tracking-uri",
            uri,
            "--html",
            str(out / "r.html"),
            f"report.markdown={out / 'r.md'}",
            f"report.files_dir={out / 'figures'}",
        ],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {out / 'r.html'} (self-contained), {out / 'r.md'} (figures in {out / 'figures'}/)" in result.stdout
    assert "logged to MLflow" not in result.stdout and (out / "figures").is_dir()


@pytest.mark.slow
def test_screenshot_of_the_page_renders(reported, tmp_path):
    """Headless Chromium draws the page offline (where it is installed); the PNG is there to look at."""
    require_chromium(CHROMIUM)
    _, _, _, files = reported
    shot = tmp_path / "report.png"
    with browser_env() as env:
        result = subprocess.run(
            [
                shutil.which("chromium") or str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                f"--screenshot={shot}",
                "--window-size=1400,3000",
                files.html.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    assert result.returncode == 0, f"chromium exited with {result.returncode}:\n{result.stderr[-3000:]}"
    assert shot.is_file() and shot.read_bytes().startswith(PNG)


# --- synthetic runs: the edge cases -----------------------------------------------------------------------------


def _run(
    client,
    experiment_id,
    modality,
    fusion,
    start,
    *,
    task=("multiclass", "test/acc", "max"),
    value=0.5,
    history=(),
    extra=None,
) -> str:
    """A finished training run as train.py logs it (tags, params, per-epoch `history` of {key: value})."""
    tags = {"task": task[0], "modality": modality, "fusion": fusion, "data_version": "v1", "git_commit": "abc1234"}
    run_id = client.create_run(experiment_id, start_time=start, tags=tags).info.run_id
    metrics = [Metric(task[1], value, start, 0), *(Metric(k, v, start, 0) for k, v in (extra or {}).items())]
    for epoch, points in enumerate(history):
        step = 10 * (epoch + 1)
        metrics += [Metric("epoch", epoch, start, step), *(Metric(k, v, start, step) for k, v in points.items())]
    client.log_batch(run_id, metrics=metrics, params=[Param("task/metric", task[1]), Param("task/mode", task[2])])
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    return tmp_path, uri, client, client.create_experiment("fusion", artifact_location=(tmp_path / "art").as_uri())


def test_runs_without_curves_robustness_per_class_or_explain_say_none_logged(store):
    tmp, uri, client, exp = store
    run_id = _run(client, exp, "text", "late", 1000)
    _, files = run_report(_config(tmp, uri, log_to_mlflow=False))
    html = files.html.read_text()
    assert html.count("none logged") == 3 and run_id[:8] in html and "<img" not in html
    assert f"the best run ({run_id[:8]}) has no explain/ artifact folder" in html
    assert files.run_id is None and _markdown_images(files.markdown) == []


def test_regression_has_no_per_class_section_and_many_runs_are_capped_best_first(store):
    tmp, uri, client, exp = store
    regression = ("regression", "test/mae", "min")
    ids = [
        _run(
            client,
            exp,
            f"m{i}",
            "late",
            1000 + i,
            task=regression,
            value=0.1 * (i + 1),
            history=[{"train/loss": 1.0 - 0.1 * e, "val/mae": 0.5 + i - 0.1 * e} for e in range(3)],
        )
        for i in range(4)
    ]
    data, files = run_report(_config(tmp, uri, log_to_mlflow=False, max_curve_runs=2))
    (task,) = data.tasks
    assert task.curve_keys == ["train/loss", "val/loss", "val/mae"]
    assert [run.row.run_id for run in task.details()] == ids  # lowest MAE first
    assert [bool(run.curves) for run in task.details()] == [True, True, False, False]
    assert task.details()[0].curves["val/mae"] == [(1, 0.5), (2, pytest.approx(0.4)), (3, pytest.approx(0.3))]
    html = files.html.read_text()
    assert "Not applicable: a regression task has no classes." in html
    assert "The best 2 of 4 runs are drawn (report.max_curve_runs)." in html


def _robustness(client, run_id, levels, curves):
    """Robustness curves as fusion/robustness/tracking.py logs them: step = level index."""
    client.log_batch(
        run_id,
        metrics=[
            Metric(key, value, 0, step)
            for name, values in curves.items()
            for step, (key, value) in enumerate((f"robustness/acc_{name}", v) for v in values)
        ]
        + [Metric("robustness/level", level, 0, step) for step, level in enumerate(levels)],
    )


def test_robustness_curves_at_other_levels_are_named_not_drawn(store):
    tmp, uri, client, exp = store
    best = _run(client, exp, "text+image", "late", 1000, value=0.7)
    other = _run(client, exp, "text", "late", 2000, value=0.6)
    _robustness(client, best, [0.0, 0.5, 1.0], {"image_noise": [0.7, 0.5, 0.3], "all": [0.7, 0.4, 0.2]})
    _robustness(client, other, [0.0, 1.0], {"all": [0.6, 0.1]})
    data, files = run_report(_config(tmp, uri, log_to_mlflow=False))
    assert list(data.tasks[0].best.robustness) == ["image_noise", "all"]
    assert f"measured at other noise levels: text · late ({other[:8]})" in files.html.read_text()
    assert len(_markdown_images(files.markdown)) == 2  # the `all` curves and the best run's curves


def test_resumed_curve_points_count_once_and_explain_without_summary_is_grouped_by_folder(store):
    tmp, uri, client, exp = store
    run_id = _run(
        client,
        exp,
        "text+image",
        "gated",
        1000,
        history=[{"val/acc": 0.2}, {"val/acc": 0.3}],
        extra={"test/f1_alpha": 0.5, "test/f1_bravo": 0.25, "test/f1_macro": 0.4, "test/acc_without_text": 0.1},
    )
    client.log_batch(run_id, metrics=[Metric("val/acc", 0.35, 2000, 20)])  # a resume logged epoch 2 again
    folder = tmp / "src" / "explain"
    _explain_figure(folder / "s1")
    client.log_artifacts(run_id, str(folder), artifact_path="explain")
    data, files = run_report(_config(tmp, uri, log_to_mlflow=False))
    details = data.tasks[0].best
    assert details.curves == {"val/acc": [(1, 0.2), (2, 0.35)]}
    assert details.per_class == {"alpha": 0.5, "bravo": 0.25}
    (sample,) = data.tasks[0].explanation.samples
    assert sample.caption == "`explain/s1/`" and [p.name for p in sample.images] == ["cross_attention.png"]
    assert len(_markdown_images(files.markdown)) == 3  # curves, per-class, the sample's figure


def test_errors_name_the_fix(store, tmp_path):
    tmp, uri, client, _ = store
    with pytest.raises(CompareError, match=r"no MLflow experiment 'nope'.*Train a model first"):
        run_report(OmegaConf.merge(_config(tmp, uri, log_to_mlflow=False), {"logger": {"experiment_name": "nope"}}))
    with pytest.raises(CompareError, match=r"holds no finished training run"):
        run_report(_config(tmp, uri, log_to_mlflow=False))
    with pytest.raises(ReportError, match="no `report` section; regenerate params.yaml with `make params`"):
        run_report(OmegaConf.create({"logger": {"tracking_uri": uri, "experiment_name": "fusion"}}))
    _run(client, client.get_experiment_by_name("fusion").experiment_id, "text", "late", 1)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ReportError, match=r"report.files_dir=.*mine holds other files .*notes.txt"):
        run_report(_config(tmp, uri, log_to_mlflow=False, files_dir=str(tmp_path / "mine")))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(SystemExit, match=r"^error: no MLflow experiment 'nope'"):
        main(["--params", str(ROOT / "params.yaml"), "--tracking-uri", uri, "--experiment", "nope", "--no-mlflow"])


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "python -m fusion.report --task multiclass --all-runs --no-mlflow" in text and "--files-dir" in text
