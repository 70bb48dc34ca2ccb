"""The compare step: synthetic runs in a real SQLite MLflow store, every cell checked by hand; a real sweep."""

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from fusion.tracking.compare import CompareError, compare_runs, main, run_compare, table_cells, to_csv, to_markdown
from tests.helpers.config import TINY_TRAINING

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TRI = "text+image+audio"
REGRESSION = ("regression", "test/mae", "min")


def _log(
    client,
    experiment_id,
    modality,
    fusion,
    start,
    metrics,
    *,
    task=None,
    dotted=False,
    data="v1",
    status="FINISHED",
    dirty=False,
    extra_tags=None,
) -> str:
    """One synthetic training run as train.py logs it: lineage tags, flattened params, metrics."""
    tags = {
        "modality": modality,
        "modality_slug": modality.replace("+", "_"),
        "fusion": fusion,
        "git_commit": COMMIT,
        "git_dirty": str(dirty).lower(),
        "data_version": data,
        **(extra_tags or {}),
    }
    params = {"fusion/name": fusion, "modality/name": modality}
    if task:
        sep = "." if dotted else "/"
        params.update({f"task{sep}name": task[0], f"task{sep}metric": task[1], f"task{sep}mode": task[2]})
        if not dotted:
            tags["task"] = task[0]
    run_id = client.create_run(
        experiment_id, start_time=start, tags=tags, run_name=f"{tags['modality_slug']}-{fusion}"
    ).info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, start, 0) for k, v in metrics.items()],
        params=[Param(k, v) for k, v in params.items()],
    )
    if status != "RUNNING":
        client.set_terminated(run_id, status, end_time=start + 1000)
    return run_id


def _sizes(total, trainable, seconds):
    return {"params/total": total, "params/trainable": trainable, "time/epoch_seconds": seconds}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real SQLite store with multiclass, multilabel and regression runs, a rerun, a compare run and runs to skip."""
    tmp = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("fusion", artifact_location=(tmp / "artifacts").as_uri())
    ids = {
        # multiclass: no task tag or params (runs from before tasks existed) -> multiclass, test/acc, max
        "text": _log(
            client,
            exp,
            "text",
            "cross_attention",
            1000,
            {"test/acc": 0.30, "test/f1_macro": 0.28, **_sizes(100, 100, 2.0)},
        ),
        "audio": _log(
            client,
            exp,
            "audio",
            "cross_attention",
            2000,
            {"test/acc": 0.35, "test/f1_macro": 0.33, **_sizes(120, 110, 3.0)},
        ),
        "image": _log(
            client,
            exp,
            "image",
            "cross_attention",
            3000,
            {"test/acc": 0.25, "test/f1_macro": 0.24, **_sizes(800, 800, 12.0)},
        ),
        "tri_old": _log(
            client,
            exp,
            TRI,
            "cross_attention",
            4000,
            {"test/acc": 0.60, "test/f1_macro": 0.58, **_sizes(1300, 1200, 25.0)},
        ),
        "late": _log(
            client, exp, TRI, "late", 6000, {"test/acc": 0.70, "test/f1_macro": 0.69, **_sizes(1000, 1000, 14.0)}
        ),
        "v2": _log(client, exp, "text+image", "late", 7000, {"test/acc": 0.55}, data="v2"),
        "no_metric": _log(client, exp, "text+audio", "late", 8000, {"val/acc": 0.5}),
        "running": _log(client, exp, "audio", "late", 9000, {"test/acc": 0.9}, status="RUNNING"),
        "tri_new": _log(
            client,
            exp,
            TRI,
            "cross_attention",
            10000,
            {
                "test/acc": 0.68,
                "test/f1_macro": 0.67,
                **_sizes(1300, 1200, 20.0),
                "test/acc_without_text": 0.50,
                "test/acc_without_image": 0.62,
                "test/acc_without_audio": 0.45,
                "test/f1_macro_without_audio": 0.1,
            },
            dirty=True,
        ),
        "compare": _log(client, exp, TRI, "late", 11000, {"test/acc": 0.99}, extra_tags={"kind": "compare"}),
        # multilabel: its main metric is test/f1_macro, so no second f1 column
        "ml": _log(
            client,
            exp,
            "text+image",
            "late",
            5000,
            {"test/f1_macro": 0.61, **_sizes(50, 40, 1.0)},
            task=("multilabel", "test/f1_macro", "max"),
        ),
        # regression, mode min: lower MAE is better, a positive gain means a lower MAE than the best unimodal
        "reg_audio_old": _log(client, exp, "audio", "late", 500, {"test/mae": 0.35}, task=REGRESSION),
        "reg_text": _log(client, exp, "text", "late", 1500, {"test/mae": 0.50, **_sizes(10, 10, 1.5)}, task=REGRESSION),
        "reg_audio": _log(
            client, exp, "audio", "late", 2500, {"test/mae": 0.40, **_sizes(20, 20, 2.5)}, task=REGRESSION
        ),
        "reg_ta": _log(
            client,
            exp,
            "text+audio",
            "late",
            3500,  # task.name-style params and no task tag
            {"test/mae": 0.30, "test/mae_without_text": 0.45, "test/mae_without_audio": 0.52, **_sizes(30, 25, 4.0)},
            task=REGRESSION,
            dotted=True,
        ),
    }
    return tmp, uri, ids


@pytest.fixture(scope="module")
def comparison(store):
    _, uri, _ = store
    return compare_runs(uri, "fusion")


def _tables(comparison):
    return {table.task: table for table in comparison.tables}


def test_one_table_per_task_with_its_metric_and_mode(comparison):
    assert [(t.task, t.metric, t.mode) for t in comparison.tables] == [
        ("multiclass", "test/acc", "max"),
        ("multilabel", "test/f1_macro", "max"),
        ("regression", "test/mae", "min"),
    ]


def test_multiclass_cells_by_hand(store, comparison):
    _, _, ids = store
    header, cells = table_cells(_tables(comparison)["multiclass"])
    assert header == [
        "#",
        "modality",
        "fusion",
        "params total",
        "params trainable",
        "test/acc",
        "test/f1_macro",
        "fusion gain",
        "worst w/o one modality",
        "s/epoch",
        "run",
        "commit",
    ]
    c, d = COMMIT[:7], COMMIT[:7] + "-dirty"
    # best unimodal on data v1: audio 0.35; gain = acc - 0.35; the v2 run has no unimodal run on its data
    assert cells == [
        ["1", TRI, "late", "1,000", "1,000", "0.700", "0.690", "+0.350", "", "14.0", ids["late"][:8], c],
        [
            "2",
            TRI,
            "cross_attention",
            "1,300",
            "1,200",
            "0.680",
            "0.670",
            "+0.330",
            "0.450 (w/o audio)",
            "20.0",
            ids["tri_new"][:8],
            d,
        ],
        ["3", "text+image", "late", "", "", "0.550", "", "", "", "", ids["v2"][:8], c],
        ["4", "audio", "cross_attention", "120", "110", "0.350", "0.330", "+0.000", "", "3.0", ids["audio"][:8], c],
        ["5", "text", "cross_attention", "100", "100", "0.300", "0.280", "-0.050", "", "2.0", ids["text"][:8], c],
        ["6", "image", "cross_attention", "800", "800", "0.250", "0.240", "-0.100", "", "12.0", ids["image"][:8], c],
    ]


def test_regression_is_min_mode_and_its_gain_is_flipped(store, comparison):
    _, _, ids = store
    table = _tables(comparison)["regression"]
    header, cells = table_cells(table)
    assert "test/f1_macro" not in header and header[5] == "test/mae"
    # best unimodal (shown rows): audio 0.40 (its older rerun, 0.35, is superseded); gain = 0.40 - mae
    assert [row[1:] for row in cells] == [
        [
            "text+audio",
            "late",
            "30",
            "25",
            "0.300",
            "+0.100",
            "0.520 (w/o audio)",
            "4.0",
            ids["reg_ta"][:8],
            COMMIT[:7],
        ],
        ["audio", "late", "20", "20", "0.400", "+0.000", "", "2.5", ids["reg_audio"][:8], COMMIT[:7]],
        ["text", "late", "10", "10", "0.500", "-0.100", "", "1.5", ids["reg_text"][:8], COMMIT[:7]],
    ]
    assert [(old.run_id, new.run_id) for old, new in table.superseded] == [(ids["reg_audio_old"], ids["reg_audio"])]


def test_multilabel_has_no_second_f1_column_and_no_gain_without_unimodal_runs(store, comparison):
    header, cells = table_cells(_tables(comparison)["multilabel"])
    assert header.count("test/f1_macro") == 1
    assert cells == [["1", "text+image", "late", "50", "40", "0.610", "", "", "1.0", store[2]["ml"][:8], COMMIT[:7]]]


def test_reruns_superseded_compare_and_unusable_runs_left_out(store, comparison):
    _, _, ids = store
    table = _tables(comparison)["multiclass"]
    assert [(old.run_id, new.run_id) for old, new in table.superseded] == [(ids["tri_old"], ids["tri_new"])]
    shown = {row.run_id for t in comparison.tables for row in t.rows}
    assert ids["compare"] not in shown and ids["tri_old"] not in shown
    assert comparison.skipped == {"no test/acc": [ids["no_metric"]], "not finished": [ids["running"]]}


def test_all_runs_keeps_reruns(store):
    _, uri, ids = store
    tables = _tables(compare_runs(uri, "fusion", latest_only=False))
    assert [r.run_id for r in tables["multiclass"].rows if r.modality == TRI] == [
        ids["late"],
        ids["tri_new"],
        ids["tri_old"],
    ]
    regression = tables["regression"]
    assert not regression.superseded and len(regression.rows) == 4
    (ta,) = [r for r in regression.rows if r.modality == "text+audio"]
    assert ta.baseline.run_id == ids["reg_audio_old"] and ta.gain == pytest.approx(0.05)


def test_markdown(store, comparison):
    _, _, ids = store
    text = to_markdown(comparison)
    lines = text.splitlines()
    assert lines[0] == "# Runs of experiment `fusion`"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == [
        "## Task `multiclass`: test/acc (higher is better)",
        "## Task `multilabel`: test/f1_macro (higher is better)",
        "## Task `regression`: test/mae (lower is better)",
    ]
    assert (
        "| # | modality | fusion | params total | params trainable | test/acc | test/f1_macro | fusion gain | "
        "worst w/o one modality | s/epoch | run | commit |"
    ) in lines
    assert "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |" in lines
    assert (
        f"| 1 | {TRI} | late | 1,000 | 1,000 | 0.700 | 0.690 | +0.350 |  | 14.0 | {ids['late'][:8]} | {COMMIT[:7]} |"
    ) in lines
    assert (
        f"Fusion gain: test/acc minus the best unimodal run's on the same data (`data_version`). Reference: "
        f"data `v1`: audio · cross_attention 0.350 (`{ids['audio'][:8]}`); none on data `v2` "
        "(gain empty)."
    ) in lines
    assert (
        "Fusion gain: the best unimodal run's test/mae minus this run's (positive = better) on the same data "
        f"(`data_version`). Reference: data `v1`: audio · late 0.400 (`{ids['reg_audio'][:8]}`)."
    ) in lines
    assert (
        f"Superseded by a newer run of the same modality and fusion (`--all-runs` lists them): "
        f"`{ids['tri_old'][:8]}` → `{ids['tri_new'][:8]}` ({TRI} · cross_attention)."
    ) in lines
    assert lines[-1] == (f"Left out: no test/acc: `{ids['no_metric'][:8]}`; not finished: `{ids['running'][:8]}`.")


def test_csv(store, comparison):
    _, _, ids = store
    rows = list(csv.DictReader(io.StringIO(to_csv(comparison))))
    assert [(r["task"], r["rank"], r["run_id"]) for r in rows] == [
        ("multiclass", "1", ids["late"]),
        ("multiclass", "2", ids["tri_new"]),
        ("multiclass", "3", ids["v2"]),
        ("multiclass", "4", ids["audio"]),
        ("multiclass", "5", ids["text"]),
        ("multiclass", "6", ids["image"]),
        ("multilabel", "1", ids["ml"]),
        ("regression", "1", ids["reg_ta"]),
        ("regression", "2", ids["reg_audio"]),
        ("regression", "3", ids["reg_text"]),
    ]
    tri = rows[1]
    assert {
        k: tri[k]
        for k in (
            "metric",
            "mode",
            "modality",
            "fusion",
            "params_total",
            "params_trainable",
            "value",
            "f1_macro",
            "worst_without",
            "worst_without_modality",
            "epoch_seconds",
            "git_commit",
            "git_dirty",
            "data_version",
            "baseline_run_id",
        )
    } == {
        "metric": "test/acc",
        "mode": "max",
        "modality": TRI,
        "fusion": "cross_attention",
        "params_total": "1300",
        "params_trainable": "1200",
        "value": "0.68",
        "f1_macro": "0.67",
        "worst_without": "0.45",
        "worst_without_modality": "audio",
        "epoch_seconds": "20.0",
        "git_commit": COMMIT,
        "git_dirty": "true",
        "data_version": "v1",
        "baseline_run_id": ids["audio"],
    }
    assert float(tri["fusion_gain"]) == pytest.approx(0.33)
    v2 = rows[2]
    assert (v2["fusion_gain"], v2["baseline_run_id"], v2["f1_macro"], v2["params_total"]) == ("", "", "", "")
    reg = rows[7]
    assert (reg["mode"], reg["worst_without"], reg["worst_without_modality"]) == ("min", "0.52", "audio")
    assert float(reg["fusion_gain"]) == pytest.approx(0.10)


def test_task_filter_and_unknown_task(store):
    _, uri, _ = store
    assert [t.task for t in compare_runs(uri, "fusion", tasks=["regression"]).tables] == ["regression"]
    with pytest.raises(
        CompareError,
        match=r"no finished run of task 'ranking'.*tasks present: multiclass, "
        r"multilabel, regression\. Drop --task",
    ):
        compare_runs(uri, "fusion", tasks=["ranking"])


def test_errors_name_the_fix(store):
    tmp, uri, _ = store
    with pytest.raises(CompareError, match=r"no MLflow experiment 'nope' in .*Train a model first .*--experiment"):
        compare_runs(uri, "nope")
    client = MlflowClient(tracking_uri=uri)
    empty = client.create_experiment("empty", artifact_location=(tmp / "empty").as_uri())
    _log(client, empty, "text", "late", 1, {"test/acc": 0.5}, status="RUNNING")
    _log(client, empty, "text", "late", 2, {"val/acc": 0.5})
    with pytest.raises(
        CompareError,
        match=r"'empty' .* holds no finished training run with its test metric .*"
        r"left out: 1 no test/acc; 1 not finished.*`python train.py`",
    ):
        compare_runs(uri, "empty")


def _config(tmp, uri, **compare):
    return OmegaConf.create(
        {
            "logger": {"tracking_uri": uri, "experiment_name": "fusion"},
            "compare": {
                "markdown": str(tmp / "results" / "compare.md"),
                "csv": str(tmp / "results" / "compare.csv"),
                "chart": str(tmp / "results" / "compare.png"),
                "tasks": [],
                "latest_only": True,
                "log_to_mlflow": True,
                "run_name": "compare",
                **compare,
            },
        }
    )


def test_run_compare_writes_files_and_logs_a_compare_run(store, comparison, tmp_path):
    _, uri, _ = store
    result, markdown, run_id = run_compare(_config(tmp_path, uri))
    out = tmp_path / "results"
    assert (out / "compare.md").read_text() == markdown == to_markdown(comparison)
    assert (out / "compare.csv").read_text() == to_csv(comparison)
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.run_name == "compare" and run.info.status == "FINISHED"
    assert run.info.experiment_id != result.experiment_id  # the bookkeeping run stays out of the training table
    assert client.get_experiment(run.info.experiment_id).name == "fusion-reports"
    assert run.data.tags["source_experiment"] == "fusion"
    assert run.data.tags["kind"] == "compare" and run.data.tags["mlflow.note.content"] == markdown
    assert run.data.params["tasks"] == "multiclass,multilabel,regression" and run.data.metrics["runs"] == 10
    assert {a.path for a in client.list_artifacts(run_id)} == {"compare.md", "compare.csv", "compare.png"}
    logged = Path(client.download_artifacts(run_id, "compare.csv", str(tmp_path / "download")))
    assert logged.read_text() == to_csv(comparison)
    # the compare run itself never becomes a row, nor a skipped run
    again = compare_runs(uri, "fusion")
    assert to_markdown(again) == markdown and again.skipped == comparison.skipped


def test_run_compare_without_mlflow_and_without_compare_section(store, tmp_path):
    _, uri, _ = store
    _, _, run_id = run_compare(_config(tmp_path, uri, log_to_mlflow=False, tasks=["multilabel"]))
    assert run_id is None and "multiclass" not in (tmp_path / "results" / "compare.csv").read_text()
    with pytest.raises(CompareError, match="no `compare` section; regenerate params.yaml with `make params`"):
        run_compare(OmegaConf.create({"logger": {"tracking_uri": uri, "experiment_name": "fusion"}}))


def test_command_line_options_and_overrides(store, tmp_path, capsys):
    _, uri, ids = store
    md = tmp_path / "cli.md"
    main(
        [
            "--params",
            str(ROOT / "params.yaml"),
            "--tracking-uri",
            uri,
            "--experiment",
            "fusion",
            "--task",
            "multiclass",
            "--markdown",
            str(md),
            "--csv",
            str(tmp_path / "cli.csv"),
            "--chart",
            str(tmp_path / "c.png"),
            "--no-mlflow",
            "compare.latest_only=false",
        ]
    )
    printed = capsys.readouterr().out
    assert printed == md.read_text() and "logged to MLflow" not in printed
    assert "## Task `multiclass`" in printed and "regression" not in printed
    assert ids["tri_old"][:8] in printed and "Superseded" not in printed  # the override kept the rerun
    with pytest.raises(SystemExit, match=r"^error: no MLflow experiment 'nope'"):
        main(["--params", str(ROOT / "params.yaml"), "--tracking-uri", uri, "--experiment", "nope", "--no-mlflow"])


def test_tracking_uri_helpers():
    from fusion.tracking.store import absolute_tracking_uri, artifact_uri

    assert absolute_tracking_uri("sqlite:///sub/x.db") == f"sqlite:///{Path('sub/x.db').resolve()}"
    for uri in ("sqlite:////abs/x.db", "http://127.0.0.1:5000"):
        assert absolute_tracking_uri(uri) == uri
    assert artifact_uri("mlartifacts") == Path("mlartifacts").resolve().as_uri()
    assert artifact_uri("s3://bucket/x") == "s3://bucket/x"


def test_params_dvc_stage_and_make_targets():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert (
        params["compare"]["markdown"] == "outputs/compare/compare.md"
        and params["compare"]["csv"] == "outputs/compare/compare.csv"
    )
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(stages)[-1] == "compare"
    stage = stages["compare"]
    assert stage["cmd"] == "python pipelines/compare.py"
    assert {"fusion/tracking/compare", "${paths.output_dir}/run.json"} <= set(stage["deps"])
    assert all(next(iter(out.values())) == {"cache": False} for out in stage["outs"])
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    fusions = ",".join(sorted(p.stem for p in (ROOT / "conf" / "fusion").glob("*.yaml")))
    dry = subprocess.run(
        ["make", "-n", "sweep"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert f"python train.py -m fusion={fusions}" in dry and "python -m fusion.tracking.compare" in dry


# --- a real tiny sweep, then the DVC stage's command -------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(processed_dir, tmp_path_factory, subprocess_env_module):
    tmp = tmp_path_factory.mktemp("sweep")
    db = tmp / "mlflow.db"
    args = [
        sys.executable,
        "train.py",
        "-m",
        "fusion=late,cross_attention",
        "trainer.max_epochs=1",
        *TINY_TRAINING[1:],
        f"data.processed_dir={processed_dir}",
        f"logger.tracking_uri=sqlite:///{db}",
        f"logger.artifact_location={tmp / 'artifacts'}",
        f"hydra.sweep.dir={tmp / 'multirun'}",
    ]
    _check(subprocess.run(args, cwd=ROOT, env=subprocess_env_module, capture_output=True, text=True, timeout=900))
    return tmp, db


@pytest.fixture(scope="module")
def subprocess_env_module():
    import os

    return dict(
        os.environ, PYTHONUNBUFFERED="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )


def _check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{' '.join(result.args)}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.mark.slow
def test_multirun_puts_every_run_into_one_experiment_with_its_fusion_tag(sweep):
    tmp, db = sweep
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    assert [e.name for e in experiments] == ["fusion"]
    runs = client.search_runs([experiments[0].experiment_id])
    assert sorted(r.data.tags["fusion"] for r in runs) == ["cross_attention", "late"]
    assert all(r.info.status == "FINISHED" and "test/acc" in r.data.metrics for r in runs)
    assert len([p for p in (tmp / "multirun").iterdir() if p.is_dir()]) == 2  # one folder per job


@pytest.mark.slow
def test_compare_stage_lists_every_run_of_the_sweep(sweep, subprocess_env_module):
    tmp, db = sweep
    out = tmp / "results"
    result = _check(
        subprocess.run(
            [
                sys.executable,
                "pipelines/compare.py",
                f"logger.tracking_uri=sqlite:///{db}",
                f"compare.markdown={out / 'compare.md'}",
                f"compare.csv={out / 'compare.csv'}",
                f"compare.chart={out / 'compare.png'}",
            ],
            cwd=ROOT,
            env=subprocess_env_module,
            capture_output=True,
            text=True,
            timeout=900,
        )
    )
    table = [
        line
        for line in result.stdout.splitlines()
        if line.startswith(f"| 1 | {TRI}") or line.startswith(f"| 2 | {TRI}")
    ]
    assert sorted(line.split(" | ")[2] for line in table) == ["cross_attention", "late"]
    assert (out / "compare.md").read_text() in result.stdout
    rows = list(csv.DictReader((out / "compare.csv").open()))
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("fusion").experiment_id])
    training = {r.info.run_id: r for r in runs if r.data.tags.get("kind") != "compare"}
    assert len(rows) == 2 and {r["run_id"] for r in rows} == set(training)
    for row in rows:  # the worst-without column is filled exactly when the run logged <metric>_without_<m>
        logged = any("_without_" in key for key in training[row["run_id"]].data.metrics)
        assert bool(row["worst_without"]) == logged
    reports = client.search_runs([client.get_experiment_by_name("fusion-reports").experiment_id])
    (compare,) = [r for r in reports if r.data.tags.get("kind") == "compare"]
    assert not [r for r in runs if r.data.tags.get("kind")]  # the training experiment holds training runs only
    assert {a.path for a in client.list_artifacts(compare.info.run_id)} == {"compare.md", "compare.csv", "compare.png"}


def test_robustness_scores_are_shown_where_runs_have_them(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("fusion", artifact_location=(tmp_path / "artifacts").as_uri())
    _log(
        client,
        exp,
        TRI,
        "late",
        1000,
        {"test/acc": 0.70, "robustness/relative_all": 0.45, "robustness/effective_all": 0.0},
    )
    _log(
        client,
        exp,
        TRI,
        "cross_attention",
        2000,
        {"test/acc": 0.68, "robustness/relative_all": 0.42, "robustness/effective_all": -0.2},
    )
    _log(client, exp, "text", "late", 3000, {"test/acc": 0.30})
    comparison = compare_runs(uri, "fusion")
    header, cells = table_cells(comparison.tables[0])
    rel, eff = header.index("relative robustness (all)"), header.index("effective robustness (all)")
    assert [(row[2], row[rel], row[eff]) for row in cells] == [
        ("late", "0.450", "+0.000"),
        ("cross_attention", "0.420", "-0.200"),
        ("late", "", ""),
    ]
    assert "summed gap to the late-fusion curve" in to_markdown(comparison)
    rows = list(csv.DictReader(io.StringIO(to_csv(comparison))))
    assert [(r["fusion"], r["relative_robustness_all"], r["effective_robustness_all"]) for r in rows] == [
        ("late", "0.45", "0.0"),
        ("cross_attention", "0.42", "-0.2"),
        ("late", "", ""),
    ]


def test_fusion_gain_uses_the_unimodal_run_on_the_same_data_even_if_superseded_on_other_data(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("fusion", artifact_location=(tmp_path / "artifacts").as_uri())
    _log(client, exp, "audio", "late", 1000, {"test/acc": 0.30}, data="v1")
    _log(client, exp, TRI, "gated", 2000, {"test/acc": 0.60}, data="v1")
    _log(client, exp, "audio", "late", 3000, {"test/acc": 0.40}, data="v2")  # supersedes the v1 audio run
    _log(client, exp, TRI, "late", 4000, {"test/acc": 0.70}, data="v2")
    table = compare_runs(uri, "fusion").tables[0]
    gains = {row.fusion if not row.unimodal else row.modality: round(row.gain, 6) for row in table.rows}
    assert gains == {"late": 0.3, "gated": 0.3, "audio": 0.0}
    assert [(old.data_version, new.data_version) for old, new in table.superseded] == [("v1", "v2")]
