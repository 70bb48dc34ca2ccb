"""Concurrent HTTP clients against a served model, and what is measured around them: the latency of every
request, the server's memory (its process tree's RSS) and the CPU the rest of the machine used meanwhile."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import psutil

from benchmarks.load_mix import SINGLE_KINDS, rows_of

PERCENTILES = (50, 95, 99)
SAMPLE_SECONDS = 0.25  # how often the server's memory is read
MEGABYTE = 2**20


@dataclass(frozen=True)
class Outcome:
    """One request: its kind, when it started (seconds since the load began), how long it took, the HTTP status
    (None when no answer came) and the error (None for a 200)."""

    kind: str
    started: float
    seconds: float
    status: int | None
    error: str | None


def _client(
    url: str,
    payloads: Mapping[str, Sequence[bytes]],
    kinds: Sequence[str],
    weights: np.ndarray,
    seed: int,
    begin: float,
    stop: float,
    think: float,
    timeout: float,
    idle: float,
    out: list[Outcome],
) -> None:
    """One client: requests back to back (then ``think`` seconds of pause) on a keep-alive connection, opened
    again after ``idle`` seconds unused (the server closes idle ones; a browser or requests' pool does the same)."""
    rng = np.random.default_rng(seed)
    target = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    last_used = time.perf_counter()
    while time.perf_counter() < stop:
        kind = kinds[int(rng.choice(len(kinds), p=weights))]
        body = payloads[kind][int(rng.integers(len(payloads[kind])))]
        if time.perf_counter() - last_used > idle:
            connection.close()
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
        started = time.perf_counter()
        status, error = None, None
        try:
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            status = response.status
            error = None if status == 200 else answer[:200].decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
            connection.close()
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
        last_used = time.perf_counter()
        out.append(Outcome(kind, started - begin, last_used - started, status, error))
        if think:
            time.sleep(rng.exponential(think))
    connection.close()


def run_clients(
    url: str,
    payloads: Mapping[str, Sequence[bytes]],
    mix: Mapping[str, float],
    clients: int,
    seconds: float,
    warmup: float,
    think: float,
    timeout: float,
    idle: float,
    seed: int,
) -> list[Outcome]:
    """``clients`` threads sending the mix for ``warmup`` + ``seconds``; the outcomes of the requests that started
    after the warm-up."""
    kinds = [kind for kind, weight in mix.items() if weight > 0]
    weights = np.array([float(mix[k]) for k in kinds])
    weights /= weights.sum()
    results: list[list[Outcome]] = [[] for _ in range(clients)]
    begin = time.perf_counter()
    stop = begin + warmup + seconds
    threads = [
        threading.Thread(
            target=_client,
            args=(url, payloads, kinds, weights, seed + i, begin, stop, think, timeout, idle, results[i]),
            daemon=True,
        )
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=warmup + seconds + timeout + 10)
    return [o for outcomes in results for o in outcomes if o.started >= warmup]


class Watch:
    """Samples, while the block runs, the RSS of a server's process tree (children of ``root``: uvicorn and its
    workers) and the CPU time of this machine, of this process and of the server."""

    def __init__(self, root: int):
        self.root = psutil.Process(root)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _tree(self) -> list[psutil.Process]:
        try:
            return self.root.children(recursive=True)
        except psutil.Error:
            return []

    def rss(self) -> int:
        total = 0
        for process in self._tree():
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _cpu(self) -> tuple[float, float]:
        """(seconds the machine's cores were busy, seconds this process and the server used)."""
        times = psutil.cpu_times()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        ours = sum(psutil.Process().cpu_times()[:2])
        for process in [self.root, *self._tree()]:
            try:
                ours += sum(process.cpu_times()[:2])
            except psutil.Error:
                continue
        return busy, ours

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak_rss = max(self.peak_rss, self.rss())

    def __enter__(self) -> "Watch":
        self.start_rss = self.peak_rss = self.rss()
        self._begin, (self._busy, self._ours) = time.perf_counter(), self._cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self.rss())
        busy, ours = self._cpu()
        wall = time.perf_counter() - self._begin
        self.others_cores = max(0.0, (busy - self._busy) - (ours - self._ours)) / wall
        self.ours_cores = (ours - self._ours) / wall


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {f"p{p}": None for p in PERCENTILES}
    return {f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(np.asarray(values), PERCENTILES), strict=True)}


def summarise(outcomes: Sequence[Outcome], seconds: float, batch_rows: int) -> dict[str, Any]:
    """Throughput, latency percentiles (single-row requests, batches, all), errors by status or exception."""
    done = [o for o in outcomes if o.error is None]
    errors: dict[str, int] = {}
    for o in outcomes:
        if o.error is not None:
            key = str(o.status) if o.status is not None else o.error.split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    return {
        "requests": len(outcomes),
        "requests_per_second": len(done) / seconds,
        "rows_per_second": sum(rows_of(o.kind, batch_rows) for o in done) / seconds,
        "single": {
            "count": sum(o.kind in SINGLE_KINDS for o in done),
            **percentiles([o.seconds for o in done if o.kind in SINGLE_KINDS]),
        },
        "batch": {
            "count": sum(o.kind not in SINGLE_KINDS for o in done),
            **percentiles([o.seconds for o in done if o.kind not in SINGLE_KINDS]),
        },
        "all": percentiles([o.seconds for o in done]),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
    }
