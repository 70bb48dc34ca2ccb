"""Hypothesis strategies for requests to the served model: JSON bodies in every shape MLflow's scoring server
accepts or refuses (records, split, instances, inputs, anything else), rows with wrong types, huge and unicode
ids and texts, lone surrogates, NaN/Inf, nested values, unknown columns, valid, truncated and corrupt base64 (plain
and as data URLs with the right or a wrong MIME type), paths inside, outside and around the allowed folder, empty
frames and 10,000 rows; and raw bodies (random bytes, truncated or deeply nested JSON) under various content types.

Paths are written with the placeholders {allowed} and {outside}, filled in by `fill` with the test's folders."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import soundfile as sf
from hypothesis import strategies as st
from PIL import Image

_RNG = np.random.default_rng(0)


def _png() -> bytes:
    sink = io.BytesIO()
    Image.fromarray(_RNG.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(sink, format="PNG")
    return sink.getvalue()


def _jpeg() -> bytes:
    sink = io.BytesIO()
    Image.fromarray(_RNG.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(sink, format="JPEG")
    return sink.getvalue()


def _audio(fmt: str) -> bytes:
    sink = io.BytesIO()
    sf.write(sink, (_RNG.standard_normal(8000) * 0.1).astype(np.float32), 16000, format=fmt)
    return sink.getvalue()


FILES = {"png": _png(), "jpeg": _jpeg(), "wav": _audio("WAV"), "flac": _audio("FLAC")}
MIMES = ["image/png", "image/jpeg", "audio/wav", "audio/flac", "text/plain", "application/json", "", "x/y"]
EDGE_VALUES = [
    "",
    " ",
    "=",
    "====",
    "data:",
    "data:image/png;base64,",
    "data:image/png,raw",
    "data:;base64,AAAA",
    "AAAA",
    "A",
    "AB==",
    "////",
    "-_-_",
    "\n",
    "\0",
    "null",
    "[]",
    "{}",
]
PATHS = [
    "{allowed}/clip.wav",
    "{allowed}/image.png",
    "{allowed}/link-out.wav",
    "{allowed}/fifo.wav",
    "{allowed}/folder.wav",
    "{allowed}/missing.wav",
    "{allowed}/../outside/secret.wav",
    "{outside}/secret.wav",
    "{outside}/missing.wav",
    "/etc/passwd",
    "/etc/shadow",
    "/dev/zero",
    "/dev/urandom",
    "/proc/self/environ",
    "/",
    ".",
    "..",
    "~",
    "~root/.bashrc",
    "../../../../etc/passwd",
    "file:///etc/passwd",
    "C:\\Windows\\win.ini",
    "/" * 5000,
    "a" * 5000,
    "{allowed}/clip.wav\0.png",
]
SURROGATES = ["\ud800", "a\udfffb", "\udc00" * 3, "\ud83d"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _corrupt(args: tuple[str, int, str]) -> str:
    text, position, char = args
    position %= max(len(text), 1)
    return text[:position] + char + text[position + 1 :]


files = st.sampled_from(sorted(FILES)).map(FILES.__getitem__)
base64_values = st.one_of(
    files.map(b64),
    st.tuples(files, st.sampled_from(MIMES)).map(lambda t: f"data:{t[1]};base64,{b64(t[0])}"),
    st.tuples(files, st.integers(0, 3000)).map(lambda t: b64(t[0][: t[1]])),  # a truncated file
    st.tuples(files, st.integers(1, 400)).map(lambda t: b64(t[0])[: -t[1]]),  # truncated base64
    st.tuples(files.map(b64), st.integers(0, 10**6), st.characters()).map(_corrupt),  # one character changed
    st.binary(max_size=300).map(b64),
    st.sampled_from(EDGE_VALUES),
)
texts = st.one_of(st.text(max_size=40), st.sampled_from(SURROGATES), st.integers(1, 200_000).map(lambda n: "word " * n))
wrong_types = st.recursive(
    st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
cells = st.one_of(st.none(), texts, base64_values, st.sampled_from(PATHS), wrong_types)
ids = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.sampled_from(SURROGATES + ["", "   "]),
    st.integers(1, 100_000).map(lambda n: "i" * n),
    wrong_types,
)
columns = st.sampled_from(["id", "text", "image", "audio"]) | st.text(max_size=8)
rows = st.builds(
    lambda known, unknown: {**unknown, **known},
    st.fixed_dictionaries({}, optional={"id": ids, "text": cells, "image": cells, "audio": cells}),
    st.dictionaries(st.text(min_size=1, max_size=8), cells, max_size=1),
)
params = st.dictionaries(
    st.sampled_from(["batch_size", "colour"]), st.none() | wrong_types | st.text(max_size=5), max_size=2
)
TEN_THOUSAND_ROWS = {"dataframe_records": [{"id": f"r{i}", "text": "t"} for i in range(10_000)]}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
payloads = st.one_of(
    st.builds(
        lambda r, p: {"dataframe_records": r, **({"params": p} if p else {})}, st.lists(rows, max_size=5), params
    ),
    st.builds(
        lambda c, d: {"dataframe_split": {"columns": c, "data": d}},
        st.lists(columns, max_size=5),
        st.lists(st.lists(cells, max_size=5), max_size=4),
    ),
    st.builds(
        lambda key, value: {key: value},
        st.sampled_from(["instances", "inputs", "dataframe_records", "dataframe_split"]),
        json_values | st.lists(rows),
    ),
    json_values,
    st.just(TEN_THOUSAND_ROWS),
)
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/json; format=pandas-split",
    "text/csv",
    "application/vnd.apache.parquet",
    "text/plain",
    "",
    "application/x-www-form-urlencoded",
]
raw_bodies = st.one_of(
    st.binary(max_size=400),
    payloads.map(lambda p: json.dumps(p).encode()).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),
    st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),  # nested past any limit
    st.integers(1, 50_000).map(lambda n: b'{"dataframe_records": ' + b"[" * n + b"]" * n + b"}"),
)
# (body, content type): mostly JSON payloads, some raw bodies, some other content types.
requests = st.one_of(
    payloads.map(lambda p: (json.dumps(p).encode("utf-8"), "application/json")),
    st.tuples(raw_bodies, st.just("application/json")),
    st.tuples(raw_bodies | payloads.map(lambda p: json.dumps(p).encode()), st.sampled_from(CONTENT_TYPES)),
)


def fill(body: bytes, folders: dict) -> bytes:
    """The body with the {allowed} and {outside} placeholders of PATHS replaced by the test's folders."""
    for name, folder in folders.items():
        body = body.replace(f"{{{name}}}".encode(), json.dumps(str(folder))[1:-1].encode())
    return body
