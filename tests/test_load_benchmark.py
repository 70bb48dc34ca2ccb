"""The load benchmark's pure parts (benchmarks/load*.py): the request mix, the summary of outcomes, the PNG bomb
and the RESULTS.md section between its markers. The benchmark itself is run by hand (`python -m benchmarks.load`)."""

from __future__ import annotations

import io
import json

from PIL import Image

from benchmarks.load import END, START, write_markdown
from benchmarks.load_clients import Outcome, summarise
from benchmarks.load_mix import BATCH, KINDS, SINGLE_ALL, SINGLE_MISSING, build_payloads
from benchmarks.load_probes import black_png

ROW = {"id": "r1", "text": "a text", "image": "aW1n", "audio": "YXVk"}
MIX = {"payloads_per_kind": 5, "batch_rows": 16, "missing_probability": 0.5}


def test_the_mix_has_every_kind_and_never_a_row_without_modality():
    payloads = build_payloads([ROW, {**ROW, "id": "r2"}], MIX, seed=0)
    assert set(payloads) == set(KINDS) and all(len(bodies) == 5 for bodies in payloads.values())
    rows = {kind: [json.loads(b)["dataframe_records"] for b in bodies] for kind, bodies in payloads.items()}
    assert all(len(r) == 1 and all(r[0].values()) for r in rows[SINGLE_ALL])
    assert all(
        len(r) == 1 and 1 <= sum(r[0][m] is None for m in ("text", "image", "audio")) <= 2 for r in rows[SINGLE_MISSING]
    )
    assert all(len(r) == 16 and all(any(row[m] for m in ("text", "image", "audio")) for row in r) for r in rows[BATCH])
    assert build_payloads([ROW], MIX, seed=0) == build_payloads([ROW], MIX, seed=0)  # seeded


def test_the_summary_counts_rows_errors_and_percentiles_per_kind():
    outcomes = [Outcome(SINGLE_ALL, 1.0, 0.1 * (i + 1), 200, None) for i in range(10)]
    outcomes += [
        Outcome(BATCH, 1.0, 2.0, 200, None),
        Outcome(SINGLE_ALL, 1.0, 0.5, 400, "bad"),
        Outcome(SINGLE_ALL, 1.0, 60.0, None, "TimeoutError: timed out"),
    ]
    summary = summarise(outcomes, seconds=2.0, batch_rows=16)
    assert summary["requests"] == 13 and summary["errors"] == 2
    assert summary["errors_by_kind"] == {"400": 1, "TimeoutError": 1}
    assert summary["requests_per_second"] == 11 / 2 and summary["rows_per_second"] == (10 + 16) / 2
    assert summary["single"]["count"] == 10 and abs(summary["single"]["p50"] - 0.55) < 1e-9
    assert summary["batch"]["p99"] == 2.0


def test_the_png_bomb_is_a_valid_png_whose_size_is_read_from_its_header():
    data = black_png(3000)
    assert len(data) < 100_000
    with Image.open(io.BytesIO(data)) as image:  # lazy: the header only
        assert image.size == (3000, 3000) and image.mode == "RGB"


def test_the_results_section_is_replaced_between_its_markers_and_the_rest_kept(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nabove\n", encoding="utf-8")
    write_markdown(path, f"{START}\nfirst\n{END}\n")
    assert path.read_text() == f"# Results\n\nabove\n\n{START}\nfirst\n{END}\n"
    path.write_text(path.read_text() + "\n## Another section\nbelow\n", encoding="utf-8")
    write_markdown(path, f"{START}\nsecond\n{END}\n")
    text = path.read_text()
    assert "first" not in text and f"{START}\nsecond\n{END}" in text
    assert text.startswith("# Results\n\nabove\n") and text.endswith("## Another section\nbelow\n")
