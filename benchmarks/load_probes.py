"""Hostile requests sent once to a running server (after the load): a huge JSON body, a decompression-bomb PNG as
base64 and a request with very many rows. For each: the answer, how long it took and how the server's memory grew."""

from __future__ import annotations

import base64
import json
import struct
import time
import urllib.error
import urllib.request
import zlib
from typing import Any, Mapping

from benchmarks.load_clients import MEGABYTE, Watch
from fusion.serving.server import NO_PROXY

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MESSAGE_CHARS = 160  # what the table shows of an answer


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def black_png(side: int) -> bytes:
    """A valid RGB PNG of side × side black pixels, compressed row by row (never held decoded)."""
    row = b"\x00" * (1 + 3 * side)  # filter byte + pixels
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def probe_bodies(settings: Mapping[str, Any]) -> dict[str, bytes]:
    """The hostile bodies, by name."""
    size = int(settings["body_bytes"])
    prefix, suffix = b'{"dataframe_records": [{"id": "huge", "text": "', b'"}]}'
    bomb = base64.b64encode(black_png(int(settings["bomb_side"]))).decode("ascii")
    rows = [{"id": f"r{i}", "text": "a short text"} for i in range(int(settings["rows"]))]
    return {
        f"JSON body of {size / MEGABYTE:,.0f} MiB": prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix,
        f"PNG bomb {settings['bomb_side']}² px, {len(bomb) / 1024:,.0f} KiB base64": json.dumps(
            {"dataframe_records": [{"id": "bomb", "image": bomb}]}
        ).encode(),
        f"{len(rows):,} rows": json.dumps({"dataframe_records": rows}).encode(),
    }


def send(url: str, body: bytes, timeout: float) -> tuple[int | None, bytes]:
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with NO_PROXY.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return None, f"{type(exc).__name__}: {exc}".encode()


def run_probes(url: str, server_pid: int, settings: Mapping[str, Any], timeout: float) -> list[dict[str, Any]]:
    """Send each probe body once; its status, seconds, answer size and start, and the server's RSS growth."""
    results = []
    for name, body in probe_bodies(settings).items():
        with Watch(server_pid) as watch:
            started = time.perf_counter()
            status, answer = send(url, body, timeout)
            seconds = time.perf_counter() - started
        try:
            message = json.loads(answer).get("message", "")
        except (ValueError, AttributeError):
            message = answer.decode("utf-8", errors="replace")
        message = message.split("Error: ", 1)[-1].replace("\n", " ")
        results.append(
            {
                "probe": name,
                "status": status,
                "seconds": seconds,
                "answer_bytes": len(answer),
                "rss_growth_mib": (watch.peak_rss - watch.start_rss) / MEGABYTE,
                "answer": message[:MESSAGE_CHARS],
            }
        )
    return results
