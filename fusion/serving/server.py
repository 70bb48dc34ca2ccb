"""`mlflow models serve` of a model as a child process on 127.0.0.1: started in its own process group, waited for
until /ping answers, stopped with its uvicorn workers. Used by the serving tests and the load benchmark."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

HOST = "127.0.0.1"
POLL_SECONDS = 0.5
LOG_TAIL_CHARS = 5000
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost, whatever *_proxy says


class ServerError(RuntimeError):
    """The server did not start (or stopped); the message holds the end of its log."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def server_env(
    base: Mapping[str, str] | None = None, model_config: Mapping[str, Any] | None = None, **variables: str
) -> dict[str, str]:
    """An environment for the server: this interpreter's bin first on PATH (the CLI starts `uvicorn`), the
    serving settings to override as SERVING_MODEL_CONFIG (fusion/serving/settings.py), and ``variables``."""
    env = dict(base if base is not None else os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    if model_config:
        env["SERVING_MODEL_CONFIG"] = json.dumps(dict(model_config))
    env.update(variables)
    return env


@dataclass
class ModelServer:
    """A running `mlflow models serve`: its process (the group leader), base URL and log file."""

    process: subprocess.Popen
    url: str
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-LOG_TAIL_CHARS:] if self.log.is_file() else ""

    def stop(self, timeout_seconds: float = 30) -> None:
        """SIGTERM to the process group (the CLI and uvicorn's workers), SIGKILL after ``timeout_seconds``."""
        stop_process_group(self.process, timeout_seconds)


def stop_process_group(process: subprocess.Popen, timeout_seconds: float = 30) -> None:
    """End a child started with ``start_new_session=True`` and everything it started."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def answers(url: str, timeout_seconds: float = 5) -> bool:
    """Whether GET ``url`` answers 200."""
    try:
        with NO_PROXY.open(url, timeout=timeout_seconds) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def start_model_server(
    model_uri: str,
    log: Path,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
    cwd: Path | None = None,
    start_timeout_seconds: float = 180,
    extra_args: Sequence[str] = (),
) -> ModelServer:
    """`mlflow models serve -m <model_uri> --env-manager local --workers <workers>` on a free local port, once
    /ping answers; raises ServerError (after stopping it) when it does not within ``start_timeout_seconds``."""
    port = free_port()
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                model_uri,
                "--env-manager",
                "local",
                "--host",
                HOST,
                "-p",
                str(port),
                "--workers",
                str(workers),
                *extra_args,
            ],
            cwd=cwd,
            env=dict(env) if env is not None else server_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ModelServer(process, f"http://{HOST}:{port}", log)
    started = time.monotonic()
    while not answers(f"{server.url}/ping"):
        if process.poll() is not None or time.monotonic() - started > start_timeout_seconds:
            server.stop()
            raise ServerError(
                f"`mlflow models serve` did not answer on {server.url} within "
                f"{start_timeout_seconds:.0f} s:\n{server.log_tail()}"
            )
        time.sleep(POLL_SECONDS)
    return server
