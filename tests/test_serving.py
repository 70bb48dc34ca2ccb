"""Serving: request decoding and its errors, the pyfunc model saved and loaded, and a tiny trained run logged to
MLflow and served by `mlflow models serve`, answering real HTTP requests (all modalities, one missing, paths,
a corrupt image, a wrong type) with the scores of the model bundle itself."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking._tracking_service.utils import _use_tracking_uri  # sets, then restores unset too

from fusion.data.manifest import parse_line
from fusion.serving.bundle import ModelBundle
from fusion.serving.predictions import PREDICTION, score_columns
from fusion.serving.pyfunc import model_signature, save_bundle_model
from fusion.serving.requests import BadRequest, RequestDecoder, decode_base64
from fusion.serving.settings import ServingSettings
from tests.helpers.serving import (  # noqa: F401 - fixtures, used by name
    b64,
    full_records,
    http,
    model_server,
    trained_run,
    untrained_bundle,
)

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = ("text", "image", "audio")
TOLERANCE = 1e-5


# ------------------------------------------------------------------ shared set-up
def bundle_scores(bundle: ModelBundle, root: Path, lines: list[dict], without: tuple[str, ...] = ()) -> torch.Tensor:
    """The bundle's own scores of manifest lines (their files read in place), ``without`` modalities None."""
    samples = []
    for number, line in enumerate(lines, start=1):
        record = parse_line(json.dumps(line), number, bundle.task.name)
        samples.append(
            {
                "id": record.id,
                **{
                    m: None if m in without or not record.has(m) else bundle.processor(m, root, ".").process(record)
                    for m in bundle.modalities
                },
            }
        )
    return bundle.scores(bundle.batch(samples))


# ------------------------------------------------------------------ request decoding (no server)
@pytest.fixture(scope="module")
def fresh_bundle(processed_dir, tmp_path_factory) -> ModelBundle:
    return ModelBundle(untrained_bundle(tmp_path_factory, processed_dir))


def test_base64_plain_data_url_urlsafe_and_unpadded_decode_to_the_same_bytes():
    data = bytes(range(256)) * 3 + b"\xfb\xff"
    plain = base64.b64encode(data).decode()
    for value in (
        plain,
        f"data:image/png;base64,{plain}",
        base64.urlsafe_b64encode(data).decode().rstrip("="),
        "\n".join(plain[i : i + 76] for i in range(0, len(plain), 76)),
    ):
        assert decode_base64(value) == data
    with pytest.raises(ValueError, match="invalid base64"):
        decode_base64("not base64 at all!")
    with pytest.raises(ValueError, match="not base64"):
        decode_base64("data:image/png,rawbytes")


def allowing(bundle: ModelBundle, *roots: Path) -> RequestDecoder:
    """A decoder of ``bundle`` that may read files under ``roots``."""
    return RequestDecoder(bundle, ServingSettings.from_config(bundle.cfg, {"allowed_roots": [str(r) for r in roots]}))


def test_decoded_samples_equal_the_preprocessing_of_the_files(fresh_bundle, sample_root):
    decoder = allowing(fresh_bundle, sample_root)
    lines = full_records(sample_root, 2)
    rows = [
        {
            "id": lines[0]["id"],
            "text": lines[0]["text"],
            "image": b64(sample_root, lines[0]["image"]),
            "audio": str(sample_root / lines[0]["audio"]),
        },
        {"text": lines[1]["text"], "image": str(sample_root / lines[1]["image"]), "audio": None},
    ]
    samples = decoder.samples(rows)
    assert [s["id"] for s in samples] == [lines[0]["id"], "1"]  # no id: the row index
    assert samples[1]["audio"] is None
    for sample, line in zip(samples, lines, strict=True):
        record = parse_line(json.dumps(line), 1)
        for modality in ("text", "image"):
            expected = fresh_bundle.processor(modality, sample_root, ".").process(record)
            assert all(torch.equal(sample[modality][k], v) for k, v in expected.items())
    expected = fresh_bundle.processor("audio", sample_root, ".").process(parse_line(json.dumps(lines[0]), 1))
    assert torch.equal(samples[0]["audio"]["mel"], expected["mel"])


@pytest.mark.parametrize(
    "row, column, reason",
    [
        ({"id": "r1", "image": base64.b64encode(b"\x89PNG garbage" * 50).decode()}, "image", "not an image"),
        (
            {"id": "r1", "audio": base64.b64encode(np.random.default_rng(0).bytes(4000)).decode()},
            "audio",
            "cannot decode audio",
        ),
        ({"id": "r1", "image": "no such file.png"}, "image", "neither base64 nor a file the server may read"),
        ({"id": "r1", "image": ""}, "image", "empty file"),
        ({"id": "r1", "text": "   "}, "text", "empty text"),
        ({"id": "r1", "text": 42}, "text", "expected a string, got int"),
        ({"id": "r1", "audio": ["a", "b"]}, "audio", "expected a string, got list"),
        ({"id": 7, "text": "fine"}, "id", "not a non-empty string"),
        ({"id": "r1"}, None, "no modality"),
        ({"id": "r1", "text": None, "image": float("nan")}, None, "no modality"),
    ],
)
def test_bad_values_name_the_row_the_column_the_reason_and_the_fix(fresh_bundle, row, column, reason):
    decoder = RequestDecoder(fresh_bundle)
    good = {"id": "ok", "text": "a fine text"}
    with pytest.raises(BadRequest) as caught:
        decoder.samples([good, row])
    (error,) = caught.value.errors
    assert error.row == 1 and error.column == column and reason in error.reason
    message = str(caught.value)
    assert "row 1" in message and reason in message and "send" in message
    if column:
        assert f"column {column!r}" in message
    if isinstance(row.get("id"), str):
        assert f"id {row['id']!r}" in message


def test_every_bad_value_of_a_request_is_reported_at_once(fresh_bundle):
    decoder = RequestDecoder(fresh_bundle)
    with pytest.raises(BadRequest) as caught:
        decoder.samples([{"text": ""}, {"text": "ok"}, {"image": "x"}, {}])
    assert [e.row for e in caught.value.errors] == [0, 2, 3]
    with pytest.raises(BadRequest, match="unknown column.*'colour'"):
        decoder.check_columns(["id", "text", "colour"])


# ------------------------------------------------------------------ the pyfunc model, loaded in process
@pytest.fixture(scope="module")
def saved_model(fresh_bundle, tmp_path_factory):
    path = save_bundle_model(fresh_bundle.folder, tmp_path_factory.mktemp("pyfunc") / "model")
    return path, mlflow.pyfunc.load_model(str(path))


def test_saved_model_has_the_signature_pinned_requirements_and_its_code(saved_model, fresh_bundle):
    path, model = saved_model
    signature = model.metadata.get_input_schema()
    assert signature.input_names() == ["id", *MODALITIES]
    assert not any(spec.required for spec in signature.inputs)
    assert model.metadata.get_params_schema().params[0].name == "batch_size"
    outputs = model.metadata.get_output_schema().input_names()
    assert outputs == ["id", PREDICTION, *score_columns(fresh_bundle.task)]
    requirements = (path / "requirements.txt").read_text().split()
    assert all("==" in r for r in requirements) and any(r.startswith("torch==") for r in requirements)
    assert (path / "code" / "fusion" / "serving" / "pyfunc.py").is_file()
    assert not list(path.rglob("__pycache__"))
    assert (path / "artifacts" / "bundle" / "weights.pt").is_file()
    assert model_signature(fresh_bundle).inputs.input_names() == signature.input_names()


def test_loaded_model_predicts_a_table_per_row_with_probabilities(saved_model, fresh_bundle, sample_root):
    _, model = saved_model
    lines = full_records(sample_root, 3)
    frame = pd.DataFrame(
        [{"id": record["id"], "text": record["text"], "image": b64(sample_root, record["image"])} for record in lines]
    )
    out = model.predict(frame, params={"batch_size": 2})  # two batches
    assert list(out["id"]) == [record["id"] for record in lines]
    probs = out[score_columns(fresh_bundle.task)].to_numpy()
    expected = bundle_scores(fresh_bundle, sample_root, lines, without=("audio",)).numpy()
    np.testing.assert_allclose(probs, expected, atol=TOLERANCE)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=TOLERANCE)
    assert list(out[PREDICTION]) == [fresh_bundle.classes[i] for i in expected.argmax(axis=1)]


def test_loaded_model_raises_invalid_parameter_value_for_bad_requests(saved_model):
    _, model = saved_model
    with pytest.raises(MlflowException) as caught:
        model.predict(pd.DataFrame([{"id": "a", "text": "fine"}, {"id": "b", "image": "bm90IGFuIGltYWdl"}]))
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE" and caught.value.get_http_status_code() == 400
    assert "row 1 (id 'b'), column 'image': not an image" in caught.value.message
    with pytest.raises(MlflowException, match="batch_size"):
        model.predict(pd.DataFrame([{"text": "fine"}]), params={"batch_size": 0})


# ------------------------------------------------------------------ a trained run, logged and served
@pytest.fixture(scope="module")
def served(request, tmp_path_factory, processed_dir, sample_root):
    """`mlflow models serve -m runs:/<id>/model` of the tiny run on a free local port, reading files under the
    sample's folder (tests/helpers/serving.py: shared by the serving tests, stopped when pytest ends)."""
    return model_server(request, tmp_path_factory, processed_dir, sample_root)


def invoke(served, payload: dict) -> tuple[int, Any]:
    return http(f"{served['url']}/invocations", payload)


def _scores(answer: dict, bundle: ModelBundle) -> np.ndarray:
    return pd.DataFrame(answer["predictions"])[score_columns(bundle.task)].to_numpy()


@pytest.mark.slow
def test_logging_the_model_leaves_the_run_as_it_was(tmp_path_factory, processed_dir, sample_root):
    run = trained_run(tmp_path_factory, processed_dir, sample_root)
    before, after = run["before"], run["after"]
    assert (after.status, after.start_time, after.end_time) == (before.status, before.start_time, before.end_time)
    with _use_tracking_uri(run["cfg"].logger.tracking_uri):  # then back to what it was, unset included
        model = mlflow.pyfunc.load_model(run["uri"])
    assert model.metadata.get_input_schema().input_names() == ["id", *MODALITIES]


@pytest.mark.slow
def test_served_model_answers_all_modalities_as_base64_with_the_bundle_scores(served, sample_root):
    bundle = ModelBundle(served["bundle"])
    lines = full_records(sample_root, 3)
    rows = [
        {
            "id": record["id"],
            "text": record["text"],
            "image": b64(sample_root, record["image"]),
            "audio": f"data:audio/wav;base64,{b64(sample_root, record['audio'])}",
        }
        for record in lines
    ]
    status, answer = invoke(served, {"dataframe_records": rows})
    assert status == 200, answer
    assert [p["id"] for p in answer["predictions"]] == [record["id"] for record in lines]
    probs = _scores(answer, bundle)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=TOLERANCE)
    np.testing.assert_allclose(probs, bundle_scores(bundle, sample_root, lines).numpy(), atol=TOLERANCE)
    assert [p[PREDICTION] for p in answer["predictions"]] == [bundle.classes[i] for i in probs.argmax(axis=1)]

    paths = [
        {
            "id": record["id"],
            "text": record["text"],
            "image": str(sample_root / record["image"]),
            "audio": str(sample_root / record["audio"]),
        }
        for record in lines
    ]
    status, by_path = invoke(served, {"dataframe_records": paths})
    assert status == 200, by_path
    np.testing.assert_allclose(_scores(by_path, bundle), probs, atol=TOLERANCE)


@pytest.mark.slow
def test_served_model_answers_with_a_modality_missing(served, sample_root):
    bundle = ModelBundle(served["bundle"])
    lines = full_records(sample_root, 2)
    expected = bundle_scores(bundle, sample_root, lines, without=("audio",)).numpy()
    split = {
        "columns": ["id", "text", "image", "audio"],
        "data": [[record["id"], record["text"], b64(sample_root, record["image"]), None] for record in lines],
    }
    status, answer = invoke(served, {"dataframe_split": split})
    assert status == 200, answer
    np.testing.assert_allclose(_scores(answer, bundle), expected, atol=TOLERANCE)
    absent = {"columns": ["id", "text", "image"], "data": [row[:3] for row in split["data"]]}
    status, answer = invoke(served, {"dataframe_split": absent})
    assert status == 200, answer
    np.testing.assert_allclose(_scores(answer, bundle), expected, atol=TOLERANCE)


@pytest.mark.slow
def test_served_model_answers_400_naming_the_row_column_and_reason_of_a_corrupt_image(served, sample_root):
    (line,) = full_records(sample_root, 1)
    corrupt = base64.b64encode(np.random.default_rng(1).bytes(200_000)).decode()
    rows = [{"id": line["id"], "text": line["text"]}, {"id": "broken", "text": line["text"], "image": corrupt}]
    status, answer = invoke(served, {"dataframe_records": rows})
    assert status == 400, answer
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    message = answer["message"]
    assert "row 1 (id 'broken'), column 'image': not an image" in message and "send a PNG/JPEG" in message
    assert len(message) < 5000  # the server quotes the request DataFrame, whose repr cuts long cells


@pytest.mark.slow
def test_served_model_answers_400_for_a_wrong_type_and_a_row_without_modality(served):
    """docs/serving.md promises HTTP 400 for these; any other 4xx is a bug."""
    status, answer = invoke(served, {"dataframe_records": [{"id": "n", "text": 5}]})
    assert status == 400, (status, answer)
    assert "column 'text'" in answer["message"] and "expected a string" in answer["message"]
    status, answer = invoke(served, {"dataframe_records": [{"id": "empty"}]})
    assert status == 400 and "no modality" in answer["message"]
