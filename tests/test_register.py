"""MLflow as users expect it: a training run's dataset is logged as inputs (one per split, digest = data_version),
and `python -m fusion.register` puts a run's model in the registry under an alias that predict loads."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from mlflow.tracking import MlflowClient

from fusion.predict import main as predict_main
from fusion.register import main as register_main
from fusion.serving.predictions import PREDICTION
from fusion.serving.server import ServerError, server_env, start_model_server
from tests.helpers.serving import b64, full_records, http, trained_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory, processed_dir, sample_root):
    return trained_run(tmp_path_factory, processed_dir, sample_root)


def test_a_training_run_logs_its_dataset_per_split(run, sample_root):
    logged = MlflowClient(run["cfg"].logger.tracking_uri).get_run(run["run_id"])
    inputs = {i.dataset.name: i for i in logged.inputs.dataset_inputs}
    assert set(inputs) == {"sample-train", "sample-val", "sample-test"}
    for split in ("train", "val", "test"):
        given = inputs[f"sample-{split}"]
        tags = {t.key: t.value for t in given.tags}
        assert tags["mlflow.data.context"] == split and int(tags["records"]) > 0
        assert tags["modalities"] == "text+image+audio"
        assert given.dataset.digest == logged.data.tags["data_version"]
        assert str(sample_root.resolve()) in given.dataset.source


def test_register_sets_the_alias_and_predict_loads_it(run, sample_root, tmp_path, capsys):
    store = run["cfg"].logger.tracking_uri
    first = register_main([f"run_id={run['run_id']}", "name=fusion-test", "alias=champion", f"tracking_uri={store}"])
    second = register_main(
        [
            f"run_id={run['run_id']}",
            "name=fusion-test",
            "alias=champion",
            f"tracking_uri={store}",
            "description=same run again",
        ]
    )
    assert (str(first["version"]), str(second["version"])) == ("1", "2") and second[
        "uri"
    ] == "models:/fusion-test@champion"
    client = MlflowClient(store, registry_uri=store)
    champion = client.get_model_version_by_alias("fusion-test", "champion")
    assert str(champion.version) == "2" and champion.run_id == run["run_id"]  # the alias moved to the new version
    assert champion.tags["fusion"] == run["cfg"].fusion.name
    output = tmp_path / "predictions.csv"
    predict_main(
        [
            "model=models:/fusion-test@champion",
            f"manifest={sample_root / 'manifest.jsonl'}",
            "split=test",
            f"tracking_uri={store}",
            f"output={output}",
        ]
    )
    with output.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert rows and all(row["prediction"] for row in rows)
    assert "registered fusion-test version 2 with alias champion" in capsys.readouterr().out


def test_predict_reads_the_registry_of_its_store_whatever_mlflow_points_at(run, sample_root, tmp_path, monkeypatch):
    """MLflow resolves a models:/ name with its process-wide URIs; predict's tracking_uri= must win over a store set
    before, in the process (a notebook's mlflow.set_tracking_uri) or in the environment (an exported
    MLFLOW_TRACKING_URI), and leave both as they were."""
    import os

    import mlflow
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri  # restores "unset" afterwards

    store = run["cfg"].logger.tracking_uri
    register_main([f"run_id={run['run_id']}", "name=fusion-elsewhere", "alias=champion", f"tracking_uri={store}"])
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    for case, in_process, in_environment in (("in the process", elsewhere, None), ("the environment", None, elsewhere)):
        output = tmp_path / f"predictions {case}.csv"
        with _use_tracking_uri(in_process):  # None: unset, which also clears the environment variable
            if in_environment:
                monkeypatch.setenv("MLFLOW_TRACKING_URI", in_environment)
            predict_main(
                [
                    "model=models:/fusion-elsewhere@champion",
                    f"manifest={sample_root / 'manifest.jsonl'}",
                    "split=test",
                    f"tracking_uri={store}",
                    f"output={output}",
                ]
            )
            assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == elsewhere, case
            assert os.environ.get("MLFLOW_TRACKING_URI") == elsewhere, case
        with output.open(newline="", encoding="utf-8") as stream:
            assert len(list(csv.DictReader(stream))) > 0, case


def test_a_registered_champion_serves_over_http_as_predict_scores_it(run, sample_root, tmp_path):
    """`make serve MODEL=models:/<name>@champion`: the alias resolves in the tracking store and the server answers
    real HTTP requests (base64 image and audio) with predict's classes for the same records."""
    store = run["cfg"].logger.tracking_uri
    register_main([f"run_id={run['run_id']}", "name=fusion-served", "alias=champion", f"tracking_uri={store}"])
    uri = "models:/fusion-served@champion"
    lines = full_records(sample_root, 3)
    rows = [
        {
            "id": line["id"],
            "text": line["text"],
            "image": b64(sample_root, line["image"]),
            "audio": b64(sample_root, line["audio"]),
        }
        for line in lines
    ]
    try:
        server = start_model_server(uri, tmp_path / "server.log", server_env(MLFLOW_TRACKING_URI=store), cwd=tmp_path)
    except ServerError as exc:
        pytest.fail(str(exc))
    try:
        status, answer = http(f"{server.url}/invocations", {"dataframe_records": rows})
    finally:
        server.stop()
    assert status == 200, answer
    served = {p["id"]: p[PREDICTION] for p in answer["predictions"]}
    assert list(served) == [line["id"] for line in lines]
    manifest = tmp_path / "three.jsonl"
    for line in lines:  # paths in a manifest are relative to its folder: the three records' files go beside it
        for key in ("image", "audio"):
            (tmp_path / line[key]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sample_root / line[key], tmp_path / line[key])
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    output = tmp_path / "predictions.csv"
    predict_main([f"model={uri}", f"manifest={manifest}", f"tracking_uri={store}", f"output={output}"])
    with output.open(newline="", encoding="utf-8") as stream:
        predicted = {row["id"]: row["prediction"] for row in csv.DictReader(stream)}
    assert served == predicted


def test_register_names_what_is_wrong(run):
    store = run["cfg"].logger.tracking_uri
    with pytest.raises(SystemExit, match="has no logged model 'nothing/'"):
        register_main([f"run_id={run['run_id']}", "name=x", "artifact_path=nothing", f"tracking_uri={store}"])
    with pytest.raises(SystemExit, match="cannot register run 0123"):
        register_main(["run_id=0123456789abcdef0123456789abcdef", "name=x", f"tracking_uri={store}"])


def test_the_evaluate_stage_option_registers_the_logged_model(run):
    """serving.register.name (the evaluate stage and train.py call publish_run, which registers after logging)."""
    from omegaconf import OmegaConf

    from fusion.stages.publish import register_logged_model

    cfg = OmegaConf.merge(run["cfg"], {"serving": {"register": {"name": None}}})
    assert register_logged_model(cfg, run["run_id"]) is None  # off by default: nothing registered
    cfg = OmegaConf.merge(run["cfg"], {"serving": {"register": {"name": "fusion-evaluated", "alias": "champion"}}})
    registered = register_logged_model(cfg, run["run_id"])
    store = run["cfg"].logger.tracking_uri
    champion = MlflowClient(store, registry_uri=store).get_model_version_by_alias("fusion-evaluated", "champion")
    assert (str(champion.version), champion.run_id) == (str(registered["version"]), run["run_id"])
