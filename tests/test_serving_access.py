"""Serving under attack: a request reads files only inside serving.allowed_roots and learns nothing about files
elsewhere (one answer for outside, a symlink leaving, a FIFO, a folder and a missing file), and each request limit
is refused with a 4xx naming the limit and its setting; in process and from the live `mlflow models serve`."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from mlflow.exceptions import MlflowException
from PIL import Image

from fusion.serving.access import MAX_PATH_CHARS, AllowedRoots
from fusion.serving.bundle import ModelBundle
from fusion.serving.pyfunc import save_bundle_model
from fusion.serving.requests import BadRequest, RequestDecoder
from fusion.serving.settings import LIMITS, ServingSettings, SettingsError
from tests.helpers.serving import SERVER_LIMITS, http, http_raw, model_server, untrained_bundle

SMALL = {
    "max_rows": 3,
    "max_request_bytes": 200_000,
    "max_value_bytes": 100_000,
    "max_image_pixels": 10_000,
    "max_audio_seconds": 2.0,
}


@pytest.fixture(scope="module")
def bundle(processed_dir, tmp_path_factory) -> ModelBundle:
    return ModelBundle(untrained_bundle(tmp_path_factory, processed_dir))


def decoder(bundle: ModelBundle, roots: list[Path] = (), **limits) -> RequestDecoder:
    return RequestDecoder(
        bundle, ServingSettings.from_config(bundle.cfg, {"allowed_roots": [str(r) for r in roots], **limits})
    )


def wav_bytes(seconds: float, rate: int = 8000, fmt: str = "WAV") -> bytes:
    sink = io.BytesIO()
    sf.write(sink, np.zeros(int(seconds * rate), dtype=np.float32), rate, format=fmt)
    return sink.getvalue()


def png_bytes(width: int, height: int) -> bytes:
    sink = io.BytesIO()
    Image.new("RGB", (width, height), (20, 40, 60)).save(sink, format="PNG")
    return sink.getvalue()


def refusal(decoder: RequestDecoder, value: str, column: str = "audio") -> str:
    """The reason the decoder gives for a request whose only value is ``value`` in ``column``."""
    with pytest.raises(BadRequest) as caught:
        decoder.samples([{"id": "r", column: value}])
    (error,) = caught.value.errors
    return str(error)


# ------------------------------------------------------------------ which files a request may read
def _make(kind: str, path: Path, outside_file: Path) -> None:
    """Put a ``kind`` of thing at ``path``: a regular file, a symlink to a file outside, a FIFO or a folder."""
    if kind == "file":
        path.write_bytes(wav_bytes(0.5))
    elif kind == "symlink":
        path.symlink_to(outside_file)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


@pytest.mark.parametrize(
    "where, kind",
    [
        ("outside", "file"),
        ("outside", "symlink"),
        ("allowed", "symlink"),
        ("allowed", "fifo"),
        ("allowed", "folder"),
        ("outside", "folder"),
    ],
)
def test_a_refused_path_gets_the_answer_of_a_missing_file(bundle, tmp_path, where, kind):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    secret = outside / "secret.wav"
    secret.write_bytes(wav_bytes(0.5))
    path = (allowed if where == "allowed" else outside) / "probe.wav"
    guarded = decoder(bundle, [allowed])
    _make(kind, path, secret)
    present = refusal(guarded, str(path))
    _remove(path)
    assert refusal(guarded, str(path)) == present  # nothing about the file system shows in the answer
    assert "neither base64 nor a file the server may read" in present and "allowed_roots" in present


def test_a_file_inside_an_allowed_folder_is_read_by_absolute_relative_and_symlinked_path(bundle, tmp_path, monkeypatch):
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "sub" / "clip.wav").write_bytes(wav_bytes(0.5))
    (allowed / "link.wav").symlink_to(allowed / "sub" / "clip.wav")
    monkeypatch.chdir(tmp_path)
    guarded = decoder(bundle, [Path("allowed")])  # a relative root: against the server's working folder
    reference = guarded.samples([{"audio": str(allowed / "sub" / "clip.wav")}])[0]["audio"]["mel"]
    for value in ("allowed/sub/clip.wav", str(allowed / "link.wav"), str(allowed / "sub" / ".." / "sub" / "clip.wav")):
        assert (guarded.samples([{"audio": value}])[0]["audio"]["mel"] == reference).all()


def test_without_allowed_roots_every_path_is_refused_and_base64_still_works(bundle, sample_root):
    line = next(
        json.loads(raw) for raw in (sample_root / "manifest.jsonl").read_text().splitlines() if '"audio": "' in raw
    )
    default = RequestDecoder(bundle)  # conf/serving/default.yaml: allowed_roots []
    assert default.settings.allowed_roots == ()
    reason = refusal(default, str(sample_root / line["audio"]))
    assert "paths are refused: the server's serving.allowed_roots is empty" in reason
    encoded = base64.b64encode((sample_root / line["audio"]).read_bytes()).decode()
    assert default.samples([{"audio": encoded}])[0]["audio"] is not None


def test_allowed_roots_answer_none_for_values_that_cannot_be_paths(tmp_path):
    roots = AllowedRoots([str(tmp_path)])
    (tmp_path / "ok.wav").write_bytes(b"x")
    assert roots.file(str(tmp_path / "ok.wav")).size == 1
    for value in (
        "",
        "\0",
        str(tmp_path / "ok.wav\0"),
        "x" * (MAX_PATH_CHARS + 1),
        "/" * 5000,
        str(tmp_path),
        str(tmp_path / "nope"),
        "data:audio/wav;base64,AAAA",
    ):
        assert roots.file(value) is None
    assert not AllowedRoots([])


@pytest.mark.parametrize(
    "override, message",
    [
        ({"allowed_roots": "/tmp"}, "serving.allowed_roots='/tmp': give a list of folder paths"),
        ({"allowed_roots": ["/no/such/folder"]}, "serving.allowed_roots: '/no/such/folder' is not a folder"),
        ({"max_rows": 0}, "serving.limits.max_rows=0: give a positive integer"),
        ({"max_value_bytes": 1.5}, "serving.limits.max_value_bytes=1.5: give a positive integer"),
        ({"max_audio_seconds": True}, "serving.limits.max_audio_seconds=True: give a positive number"),
        ({"torch_threads": 0}, "serving.torch_threads=0: give a positive integer"),
    ],
)
def test_bad_serving_settings_name_the_setting_and_the_fix(bundle, override, message):
    with pytest.raises(SettingsError) as caught:
        RequestDecoder(bundle, ServingSettings.from_config(bundle.cfg, override))
    assert message in str(caught.value) and (
        "SERVING_MODEL_CONFIG" in str(caught.value) or "[] to refuse" in str(caught.value)
    )


def test_a_config_without_the_serving_settings_says_to_log_the_model_again(bundle):
    cfg = bundle.cfg.copy()
    del cfg.serving.limits
    with pytest.raises(SettingsError, match="serving.limits.max_rows.*log the model again"):
        ServingSettings.from_config(cfg)


# ------------------------------------------------------------------ the request limits
@pytest.mark.parametrize(
    "rows, setting",
    [
        ([{"text": "fine"}] * 4, "serving.limits.max_rows"),
        ([{"text": "x" * 90_000}, {"text": "y" * 90_000}, {"text": "z" * 30_000}], "serving.limits.max_request_bytes"),
        ([{"text": "é" * 60_000}], "serving.limits.max_value_bytes"),  # 120,000 UTF-8 bytes
        ([{"image": base64.b64encode(b"\0" * 100_001).decode()}], "serving.limits.max_value_bytes"),
        ([{"image": base64.b64encode(png_bytes(200, 51)).decode()}], "serving.limits.max_image_pixels"),
        ([{"audio": base64.b64encode(wav_bytes(3.0, fmt="FLAC")).decode()}], "serving.limits.max_audio_seconds"),
    ],
)
def test_each_limit_is_refused_naming_it_and_its_setting(bundle, rows, setting):
    limited = decoder(bundle, **SMALL)
    with pytest.raises(BadRequest) as caught:
        limited.check_size(rows)
        limited.samples(rows)
    message = str(caught.value)
    limit = SMALL[setting.rsplit(".", 1)[1]]
    assert setting in message and f"{limit:,}" in message, message


def test_a_file_named_by_path_counts_against_max_value_bytes(bundle, tmp_path):
    (tmp_path / "big.wav").write_bytes(wav_bytes(10.0))  # 160 KB
    message = refusal(decoder(bundle, [tmp_path], **SMALL), str(tmp_path / "big.wav"))
    assert "the file (160,044 bytes) is over the server's limit of 100,000 bytes per value" in message
    assert "serving.limits.max_value_bytes" in message


def test_values_just_under_the_limits_are_scored(bundle):
    limited = decoder(bundle, **SMALL)
    rows = [
        {
            "text": "fine " * 100,
            "image": base64.b64encode(png_bytes(100, 100)).decode(),
            "audio": base64.b64encode(wav_bytes(2.0, fmt="FLAC")).decode(),
        }
    ] * 3
    limited.check_size(rows)
    assert len(limited.samples(rows)) == 3


def test_the_model_config_carries_the_settings_and_is_overridden_when_loading(bundle, tmp_path):
    path = save_bundle_model(bundle.folder, tmp_path / "model")
    saved = mlflow.models.Model.load(str(path)).flavors["python_function"]["config"]
    assert set(saved) == {"allowed_roots", "torch_threads", *LIMITS}
    assert saved["allowed_roots"] == [] and saved["max_rows"] == bundle.cfg.serving.limits.max_rows
    model = mlflow.pyfunc.load_model(str(path), model_config={"max_rows": 1})
    with pytest.raises(MlflowException, match=r"2 rows is over the server's limit of 1 rows \(serving.limits.max_rows"):
        model.predict(pd.DataFrame([{"text": "a"}, {"text": "b"}]))
    with pytest.raises(MlflowException, match="serving.allowed_roots: '/no/such' is not a folder"):
        mlflow.pyfunc.load_model(str(path), model_config={"allowed_roots": ["/no/such"]})


# ------------------------------------------------------------------ the live server
@pytest.fixture(scope="module")
def served(request, tmp_path_factory, processed_dir, sample_root):
    return model_server(request, tmp_path_factory, processed_dir, sample_root)


def _invocation(served, value: str) -> tuple[int, bytes]:
    body = json.dumps({"dataframe_records": [{"id": "probe", "text": "a probe", "audio": value}]}).encode()
    return http_raw(f"{served['url']}/invocations", body)


@pytest.mark.slow
def test_served_answers_to_a_file_outside_and_a_missing_file_are_byte_identical(served):
    probe = served["outside"] / "probe.wav"
    probe.write_bytes(wav_bytes(0.5))
    present = _invocation(served, str(probe))
    probe.unlink()
    absent = _invocation(served, str(probe))
    assert present[0] == 400 and present == absent
    for inside in ("link-out.wav", "fifo.wav", "folder.wav"):  # a symlink leaving the folder, a FIFO, a folder
        status, body = _invocation(served, str(served["allowed"] / inside))
        assert status == 400 and json.loads(body)["message"].split("Error: ", 1)[1] == json.loads(absent[1])[
            "message"
        ].split("Error: ", 1)[1].replace(str(probe), str(served["allowed"] / inside))


@pytest.mark.slow
def test_served_limits_answer_400_naming_the_setting_and_the_server_goes_on(served, sample_root):
    status, answer = http(f"{served['url']}/invocations", {"dataframe_records": [{"text": "t"}] * 10_000})
    assert (
        status == 400
        and "10,000 rows is over the server's limit of 64 rows (serving.limits.max_rows)" in answer["message"]
    )
    big = "x" * (SERVER_LIMITS["max_request_bytes"] // 2)
    status, answer = http(f"{served['url']}/invocations", {"dataframe_records": [{"text": big}, {"text": big + "!"}]})
    assert status == 400 and "serving.limits.max_request_bytes" in answer["message"], answer
    status, answer = http(f"{served['url']}/invocations", {"dataframe_records": [{"id": "ok", "text": "fine"}]})
    assert status == 200 and answer["predictions"][0]["id"] == "ok"
