"""The manifest parser under generated input (hypothesis, seeded and bounded): random text and bytes, deep JSON,
huge numbers, lone surrogates, byte-order marks, CRLF and Unicode line separators, 1 MB lines. Every line is a
record or a quarantine with its reason (written as UTF-8 like rejected.jsonl), every file a manifest or one
ManifestError; nothing else is raised, and valid records survive whatever line ending or character they hold."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fusion.data.manifest import ManifestError, Record, RecordError, load_manifest, parse_line

SPLIT = {"seed": 0, "train": 0.7, "val": 0.15, "test": 0.15}
TASKS = ("multiclass", "multilabel", "regression")
FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
MEGABYTE = 1_000_000
DEEP = 100_000  # nesting levels: far past Python's recursion limit

# JSON leaves and nested values of any type, including the numbers JSON allows but floats do not hold.
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20)
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
# Any character, lone surrogates and line/paragraph separators included.
any_text = st.text(max_size=30) | st.sampled_from(
    ["\ud800", "a\udfffb", "\u2028", "\u2029", "\x85", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c", "\r", "\ufeff"]
)
record_keys = st.sampled_from(["id", "label", "split", "text", "text_path", "image", "audio", "extra"])
objects = st.dictionaries(record_keys, values | any_text, max_size=8)
SPECIAL_LINES = [
    "[" * DEEP + "]" * DEEP,
    '{"id": "deep", "label": ' + "[" * DEEP + "]" * DEEP + ', "text": "x"}',
    '{"id": "big", "label": 1' + "0" * 5000 + ', "text": "x"}',  # an integer over Python's 4,300 digits
    '{"id": "huge", "label": 1' + "0" * 400 + ', "text": "x"}',  # an integer no float holds
    '{"id": "inf", "label": 1e999, "text": "x"}',
    '{"id": "\\ud800", "label": "a", "text": "lone surrogate in the id"}',
    '{"id": "s", "label": "a\\udfff", "text": "lone surrogate in the label"}',
    '{"id": "t", "label": "a", "text": "\\ud83d"}',
    '\ufeff{"id": "bom", "label": "a", "text": "x"}',
    '{"id": "nan", "label": NaN, "text": "x"}',
    '{"id": "long", "label": "a", "text": "' + "x" * MEGABYTE + '"}',
    "x" * MEGABYTE,
]
lines = st.one_of(
    objects.map(json.dumps),
    objects.map(lambda o: json.dumps(o, ensure_ascii=False)),
    any_text,
    st.sampled_from(SPECIAL_LINES),
)


def _outcome(text: str, task: str) -> Record | RecordError:
    try:
        return parse_line(text, 1, task)
    except RecordError as exc:
        return exc


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=400)
@given(line=lines, task=st.sampled_from(TASKS))
def test_every_line_is_a_record_or_a_reason(line, task):
    outcome = _outcome(line, task)
    if isinstance(outcome, RecordError):
        assert str(outcome).strip()
        str(outcome).encode("utf-8")  # a reason can be written to rejected.jsonl
    else:
        assert isinstance(outcome, Record) and outcome.id.strip()
        json.dumps(outcome.id, ensure_ascii=False).encode("utf-8")  # ids.json and rejections are UTF-8


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=150)
@given(data=st.data())
@example(data=None)
def test_every_file_is_a_manifest_or_one_error_and_every_rejection_has_a_line_and_a_reason(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    if data is None:  # bytes that are not UTF-8, a UTF-16 byte-order mark, and a UTF-8 one
        contents = [b"\xff\xfe{\x00}\x00", b"\x80\x81\x82", b"\xef\xbb\xbf" + b'{"id": "a", "label": "a", "text": "x"}']
    else:
        newline = data.draw(st.sampled_from(["\n", "\r\n"]))
        rows = data.draw(st.lists(lines, min_size=1, max_size=6))
        contents = [data.draw(st.binary(max_size=200)), newline.join(rows).encode("utf-8", "surrogatepass")]
    for content in contents:
        (folder / "manifest.jsonl").write_bytes(content)
        try:
            manifest = load_manifest(folder, "manifest.jsonl", SPLIT, stage="fuzz")
        except ManifestError as exc:
            assert str(exc).strip()
            continue
        count = content.count(b"\n") + 1
        for rejection in manifest.rejections:
            assert rejection.reason.strip() and 1 <= rejection.line <= count
            rejection.to_json().encode("utf-8")


good_strings = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20).filter(str.strip)


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=150)
@given(
    records=st.lists(
        st.fixed_dictionaries({"id": good_strings, "text": good_strings}),
        min_size=1,
        max_size=6,
        unique_by=lambda r: r["id"],
    ),
    ascii_only=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)
@example(
    records=[{"id": "r1", "text": "a\u2028b"}, {"id": "r2", "text": "c\x85d\x1ce"}],
    ascii_only=False,
    newline="\n",
    bom=False,
)
def test_valid_records_survive_any_character_and_line_ending(tmp_path_factory, records, ascii_only, newline, bom):
    folder = tmp_path_factory.mktemp("roundtrip")
    rows = [json.dumps({**r, "label": "a", "split": "train"}, ensure_ascii=ascii_only) for r in records]
    (folder / "manifest.jsonl").write_text(
        ("\ufeff" if bom else "") + newline.join(rows) + newline, encoding="utf-8", newline=""
    )
    manifest = load_manifest(folder, "manifest.jsonl", SPLIT, stage="fuzz")
    assert manifest.rejections == []
    assert [(r.id, r.text, r.line) for r in manifest.records] == [
        (r["id"], r["text"], n) for n, r in enumerate(records, start=1)
    ]


# ------------------------------------------------------------------ the bugs the fuzzing found, one test each
@pytest.mark.parametrize(
    "line, task, reason",
    [
        ("[" * DEEP + "]" * DEEP, "multiclass", "JSON nested too deeply"),  # was RecursionError
        ('{"id": "d", "label": ' + "[" * DEEP + "]" * DEEP + "}", "multilabel", "JSON nested too deeply"),
        ('{"id": "big", "label": 1' + "0" * 5000 + "}", "regression", "unreadable JSON number"),  # was ValueError
        (
            '{"id": "huge", "label": 1' + "0" * 400 + ', "text": "x"}',
            "regression",
            "integer of 401 digits",
        ),  # OverflowError
        ('{"id": "\\ud800", "label": "a", "text": "x"}', "multiclass", "field(s) 'id' hold a lone UTF-16 surrogate"),
        ('{"id": "s", "label": ["a\\udfff"], "text": "x"}', "multilabel", "field(s) 'label' hold a lone UTF-16"),
    ],
)
def test_lines_that_crashed_the_parser_are_quarantined_with_a_reason(line, task, reason):
    with pytest.raises(RecordError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_line(line, 7, task)


def test_a_rejected_line_with_a_lone_surrogate_id_is_written_without_its_id(tmp_path):
    (tmp_path / "manifest.jsonl").write_text(
        '{"id": "ok", "label": "a", "text": "x"}\n{"id": "\\udc00", "label": "a", "text": "x"}\n', encoding="utf-8"
    )
    manifest = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="fuzz")
    (rejection,) = manifest.rejections
    assert rejection.id is None and rejection.line == 2 and rejection.to_json().encode("utf-8")


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c", "\r"])
def test_a_text_holding_a_unicode_line_break_stays_one_record(tmp_path, separator):
    rows = [{"id": "r1", "label": "a", "text": f"before{separator}after"}, {"id": "r2", "label": "a", "text": "x"}]
    (tmp_path / "manifest.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8"
    )
    manifest = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="fuzz")
    assert [(r.id, r.text, r.line) for r in manifest.records] == [("r1", f"before{separator}after", 1), ("r2", "x", 2)]
