"""Shared by the serving tests: one tiny trained run per session (logged to MLflow as a pyfunc model) and one
`mlflow models serve` of it on 127.0.0.1, started on first use and stopped when pytest ends (or at once when it
fails to start). The server reads files only under the folders of ALLOWED_ROOTS and runs with SERVER_LIMITS."""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from mlflow.tracking import MlflowClient
from PIL import Image

from fusion.serving.server import NO_PROXY, ServerError, server_env, start_model_server
from tests.helpers.config import tiny_config

HTTP_TIMEOUT_SECONDS = 60
# Limits small enough that a test reaches each one with a request of a few MB (conf/serving/default.yaml has the
# real defaults); given to the server as SERVING_MODEL_CONFIG, the way an operator overrides them.
SERVER_LIMITS = {
    "max_rows": 64,
    "max_request_bytes": 3_000_000,
    "max_value_bytes": 1_000_000,
    "max_image_pixels": 1_000_000,
    "max_audio_seconds": 30,
}
_SESSION: dict[str, Any] = {}  # the one trained run and the one server of a session


def untrained_bundle(tmp_path_factory, processed_dir: Path) -> Path:
    """The bundle of a freshly initialised tri-modal network (enough for the request plumbing), once per session."""
    if "fresh" not in _SESSION:
        from fusion.serving.bundle import save_bundle
        from fusion.training.setup import build_datamodule, build_module

        base = tmp_path_factory.mktemp("fresh")
        cfg = tiny_config(base, processed_dir)
        module = build_module(cfg, build_datamodule(cfg))
        _SESSION["fresh"] = save_bundle(base / "bundle", cfg, module.net, processed_dir)
    return _SESSION["fresh"]


def trained_run(tmp_path_factory, processed_dir: Path, sample_root: Path) -> dict[str, Any]:
    """One tiny tri-modal run, trained once per session: its config, bundle folder, logged model URI and the
    seconds logging took."""
    if "run" not in _SESSION:
        from fusion.serving.bundle import save_bundle
        from fusion.serving.pyfunc import log_bundle_model
        from fusion.stages.train import RUN_INFO, train
        from fusion.training.checkpoints import load_weights
        from fusion.training.setup import build_datamodule, build_module

        base = tmp_path_factory.mktemp("served")
        cfg = tiny_config(base, processed_dir, [f"data.root={sample_root}", "test_after_fit=false"])
        train(cfg)
        info = json.loads((Path(cfg.paths.output_dir) / RUN_INFO).read_text(encoding="utf-8"))
        datamodule = build_datamodule(cfg)
        module = build_module(cfg, datamodule)
        load_weights(module, Path(info["best_checkpoint"]))
        module.eval()
        bundle = save_bundle(base / "bundle", cfg, module.net, processed_dir)
        client = MlflowClient(cfg.logger.tracking_uri)
        before = client.get_run(info["run_id"]).info
        started = time.perf_counter()
        uri = log_bundle_model(bundle, cfg.logger.tracking_uri, info["run_id"], cfg.serving.artifact_path)
        seconds = time.perf_counter() - started
        after = client.get_run(info["run_id"]).info  # read at once: only the logging may have happened between
        _SESSION["run"] = {
            "cfg": cfg,
            "base": base,
            "bundle": bundle,
            "uri": uri,
            "run_id": info["run_id"],
            "module": module,
            "datamodule": datamodule,
            "log_seconds": seconds,
            "before": before,
            "after": after,
        }
    return _SESSION["run"]


def access_folders(tmp_path_factory) -> dict[str, Path]:
    """An allowed folder holding an audio and an image file and what a request must not read through it (a symlink
    leaving it, a FIFO, a sub-folder), and a folder beside it that is not allowed; made once per session."""
    if "folders" not in _SESSION:
        base = tmp_path_factory.mktemp("access")
        allowed, outside = base / "allowed", base / "outside"
        allowed.mkdir()
        outside.mkdir()
        (outside / "secret.wav").write_bytes(b"RIFF not really a wav")
        sf.write(allowed / "clip.wav", np.zeros(8000, dtype=np.float32), 16000)
        Image.new("RGB", (32, 32), (200, 100, 50)).save(allowed / "image.png")
        (allowed / "link-out.wav").symlink_to(outside / "secret.wav")
        os.mkfifo(allowed / "fifo.wav")
        (allowed / "folder.wav").mkdir()
        _SESSION["folders"] = {"allowed": allowed, "outside": outside}
    return _SESSION["folders"]


def manifest_lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


def full_records(root: Path, count: int) -> list[dict]:
    """The first ``count`` manifest lines with every modality (inline text)."""
    return [line for line in manifest_lines(root) if line.get("text") and line.get("image") and line.get("audio")][
        :count
    ]


def b64(root: Path, relative: str) -> str:
    return base64.b64encode((root / relative).read_bytes()).decode("ascii")


def http_raw(
    url: str, body: bytes | None = None, content_type: str = "application/json", timeout: float = HTTP_TIMEOUT_SECONDS
) -> tuple[int, bytes]:
    """(status, body bytes) of a GET (no body) or a POST."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with NO_PROXY.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http(url: str, payload: dict | None = None) -> tuple[int, Any]:
    """(status, JSON body) of a GET (no payload) or a JSON POST."""
    status, body = http_raw(url, None if payload is None else json.dumps(payload).encode("utf-8"))
    try:
        return status, json.loads(body)
    except json.JSONDecodeError:
        return status, body.decode("utf-8", errors="replace")


def model_server(request, tmp_path_factory, processed_dir: Path, sample_root: Path) -> dict[str, Any]:
    """The session's server of the trained run (started on first use, stopped when pytest ends): the run's
    fields plus ``url``, ``allowed`` (its allowed folders: the sample and an access-test folder) and ``outside``."""
    if "server" not in _SESSION:
        run = trained_run(tmp_path_factory, processed_dir, sample_root)
        folders = access_folders(tmp_path_factory)
        config = {"allowed_roots": [str(sample_root), str(folders["allowed"])], **SERVER_LIMITS}
        env = server_env(model_config=config, MLFLOW_TRACKING_URI=run["cfg"].logger.tracking_uri)
        started = time.perf_counter()
        try:
            server = start_model_server(run["uri"], run["base"] / "server.log", env, cwd=run["base"])
        except ServerError as exc:
            pytest.fail(str(exc))
        request.config.add_cleanup(server.stop)
        print(f"\nserver up in {time.perf_counter() - started:.1f} s; model logged in {run['log_seconds']:.2f} s")
        _SESSION["server"] = {**run, **folders, "url": server.url, "server": server}
    served = _SESSION["server"]
    if served["server"].process.poll() is not None:
        pytest.fail(f"the model server has stopped:\n{served['server'].log_tail()}")
    return served
