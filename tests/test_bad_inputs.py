"""Bad input through the preprocessing stages: every case of tests/bad_corpus.py is normalised and kept or
quarantined with its id, file and reason; --strict; atomic outputs (stale work folders, kills)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from fusion.config import compose
from fusion.data.manifest import MODALITIES, Record, RecordError, load_manifest
from fusion.data.sample import generate_sample
from fusion.data.shards import ModalityShards, read_jsonl
from fusion.preprocess.atomic import atomic_output, remove_stale, work_path
from fusion.preprocess.audio import AudioProcessor
from fusion.preprocess.common import format_summary, run_preprocess
from fusion.preprocess.image import ImageProcessor
from fusion.preprocess.text import read_utf8_prefix
from tests.helpers.bad_corpus import KEPT, MANIFEST, MISSING, Case, cases, mix_into, png_header_claiming
from tests.helpers.config import TINY_RECORDS, TINY_TRAINING
from tests.helpers.project import copy_dvc_project

ROOT = Path(__file__).resolve().parents[1]
CASES = cases()
SUMMARY_LINE = re.compile(
    r"^(\w+): (\d+) valid manifest records; kept train (\d+), val (\d+), test (\d+); "
    r"modality missing in (\d+); rejected (\d+)$",
    re.M,
)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_outcomes(out: Path, modality: str, placed: dict[str, tuple[Case, int]]) -> None:
    """Every case of the corpus has its expected outcome in the stage's output folder."""
    rejected = {r["line"]: r for r in read_jsonl(out / "rejected.jsonl")}
    kept = set(json.loads((out / "ids.json").read_text()))
    for case, line in placed.values():
        expected = case.outcome(modality)
        if expected in (KEPT, MISSING):
            assert line not in rejected, (case.name, rejected.get(line))
            assert (case.id in kept) == (expected is KEPT), case.name
            continue
        rejection = rejected.get(line)
        assert rejection is not None, f"{case.name} was not rejected by preprocess_{modality}"
        assert expected in rejection["reason"], (case.name, rejection)
        assert (rejection["id"], rejection["file"], rejection["stage"]) == (
            case.rejected_id,
            case.file,
            f"preprocess_{modality}",
        ), case.name


def expected_counts(
    placed: dict[str, tuple[Case, int]], modality: str, good: int = 0, good_with: int = 0
) -> dict[str, int]:
    """What the stage's summary should count, for `good` good records of which `good_with` have the modality."""
    outcomes = [(c, c.outcome(modality)) for c, _ in placed.values()]
    records = good + sum(c.modality is not None for c, _ in outcomes)
    with_modality = good_with + sum(c.modality == modality for c, _ in outcomes)
    return {
        "records": records,
        "missing": records - with_modality,
        "kept": good_with + sum(o is KEPT for _, o in outcomes),
        "rejected": sum(o not in (KEPT, MISSING) for _, o in outcomes),
    }


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    """The whole corpus (DVC-unsafe cases too) preprocessed by the three stages, in process."""
    base = tmp_path_factory.mktemp("corpus")
    placed = mix_into(base / "ds", label="alpha")
    cfg = compose([f"data.root={base / 'ds'}", f"data.processed_dir={base / 'out'}", "preprocess.num_workers=1"])
    summaries = {m: run_preprocess(m, cfg) for m in MODALITIES}
    return base / "out", placed, summaries, cfg


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_each_bad_case_is_kept_or_quarantined_with_its_reason(corpus_run, name):
    out, placed, _, _ = corpus_run
    for modality in MODALITIES:
        check_outcomes(out / modality, modality, {name: placed[name]})


@pytest.mark.parametrize("modality", MODALITIES)
def test_summary_counts_match_the_files(corpus_run, modality):
    out, placed, summaries, _ = corpus_run
    summary, expected = summaries[modality], expected_counts(placed, modality)
    assert summary == json.loads((out / modality / "meta.json").read_text())["summary"]
    assert summary["records"] == expected["records"]
    ids = json.loads((out / modality / "ids.json").read_text())
    assert sum(summary["kept"].values()) == expected["kept"] == len(ids)
    assert summary["missing"] == expected["missing"]
    assert summary["rejected"] == expected["rejected"] == len(read_jsonl(out / modality / "rejected.jsonl"))
    assert sum(summary["rejected_by_reason"].values()) == summary["rejected"]
    printed = format_summary(summary)
    assert f"rejected {summary['rejected']}" in printed
    assert all(f"× {kind}" in printed for kind in summary["rejected_by_reason"])


def test_normalised_cases_have_the_configured_shapes_and_finite_values(corpus_run):
    out, placed, _, cfg = corpus_run
    shards = {m: ModalityShards(out / m) for m in MODALITIES}
    size, n_mels = cfg.preprocess.image.size, cfg.preprocess.audio.n_mels
    max_frames = shards["audio"].meta["max_frames"]
    for case, _ in placed.values():
        if case.expected is not KEPT or case.modality is None:
            continue
        item = shards[case.modality].get(case.id)
        if case.modality == "image":
            assert item["image"].shape == (3, size, size) and str(item["image"].dtype) == "torch.uint8", case.name
        elif case.modality == "audio":
            mel = item["mel"].float().numpy()
            assert mel.shape[0] == n_mels and 1 <= mel.shape[1] <= max_frames and np.isfinite(mel).all(), case.name
        else:
            max_len = shards["text"].meta["max_len"]  # the tokenizer's own limit (n-grams: preprocess.text.ngrams)
            assert 1 <= len(item["tokens"]) <= max_len == cfg.preprocess.text.ngrams.max_len, case.name
    assert shards["audio"].get("bad_very_long")["mel"].shape[1] == max_frames  # cropped to max_seconds
    deep = shards["image"].get("bad_png_16bit")["image"]  # a 16-bit ramp, scaled to the whole 8-bit range
    assert int(deep.max()) >= 250 and int(deep.min()) <= 5  # (the resize to 32 px softens the extreme corners)


# ---------------------------------------------------------------- unit cases


class _CountingReader:
    """A binary file that records how many bytes each read asks for."""

    def __init__(self, stream, asked: list[int]):
        self.stream, self.asked = stream, asked

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stream.close()

    def read(self, size: int = -1) -> bytes:
        self.asked.append(size)
        return self.stream.read(size)


def test_text_prefix_reading_bounds_the_bytes_and_keeps_utf8_detection(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeff".encode() + "€uro".encode() * 10 + b"\xff" * 10_000)  # bad bytes past the limit
    assert read_utf8_prefix(path, 7) == "€uro€ur"  # the BOM dropped, the cut '€' is no error
    path.write_bytes("€".encode() * 3 + "é".encode("latin-1") + b"t")  # latin-1 inside the limit
    with pytest.raises(RecordError, match="not valid UTF-8"):
        read_utf8_prefix(path, 7)
    path.write_bytes("ab€".encode()[:-1])  # a character cut by the end of the file
    with pytest.raises(RecordError, match="not valid UTF-8"):
        read_utf8_prefix(path, 7)
    path.write_bytes(b"word " * 200_000)
    asked: list[int] = []
    opener = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: _CountingReader(opener(self, *a, **k), asked))
    assert read_utf8_prefix(path, 10) == "word word "
    assert asked and all(0 < size <= 4 * 11 for size in asked)  # 4 bytes a character (and the BOM's)


@pytest.mark.parametrize(
    "claimed, outcome",
    [
        ((100, 100), "passes"),  # exactly max_pixels: allowed
        ((101, 100), "too large"),  # PIL's warning range (max_pixels .. 2×), turned into a rejection
        ((201, 100), "too large"),  # PIL's error range (over 2×)
        ((100_000, 100_000), "too large"),
    ],
)
def test_decompression_bomb_guard_rejects_from_the_header(tmp_path, claimed, outcome):
    (tmp_path / "image").mkdir()
    (tmp_path / "image" / "x.png").write_bytes(png_header_claiming(*claimed))
    processor = ImageProcessor(compose(["preprocess.image.max_pixels=10000"]).preprocess.image, tmp_path, "image")
    record = Record(id="x", label="a", split="train", line=1, image="image/x.png")
    if outcome == "passes":  # the header passes the guard; the tiny IDAT then fails to fill the image
        with pytest.raises(RecordError, match="cannot decode image"):
            processor.process(record)
        return
    started = time.perf_counter()
    with pytest.raises(RecordError, match="image too large.*max_pixels=10000"):
        processor.process(record)
    assert time.perf_counter() - started < 5  # rejected from the header, nothing decoded


def test_the_guard_is_set_for_one_decode_only(tmp_path):
    """PIL's limit is a process-wide global: a small max_pixels must not stay behind for other image reads."""
    from PIL import Image

    default = Image.MAX_IMAGE_PIXELS
    (tmp_path / "image").mkdir()
    (tmp_path / "image" / "x.png").write_bytes(png_header_claiming(101, 100))
    processor = ImageProcessor(compose(["preprocess.image.max_pixels=10000"]).preprocess.image, tmp_path, "image")
    with pytest.raises(RecordError, match="image too large"):
        processor.process(Record(id="x", label="a", split="train", line=1, image="image/x.png"))
    assert Image.MAX_IMAGE_PIXELS == default


def _audio_processor(tmp_path: Path) -> AudioProcessor:
    return AudioProcessor(compose(["preprocess.audio.max_seconds=1.0"]).preprocess.audio, tmp_path, "audio")


def test_long_audio_decodes_only_the_prefix_it_keeps(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    rate = 8000
    sf.write(path, np.full(rate * 30, 0.1, dtype=np.float32), rate, subtype="PCM_16")
    processor = _audio_processor(tmp_path)
    asked = []
    read = sf.SoundFile.read
    monkeypatch.setattr(
        sf.SoundFile, "read", lambda self, frames=-1, **kw: asked.append(frames) or read(self, frames, **kw)
    )
    wave = processor.load_waveform(path)
    assert asked == [math.ceil(processor.max_seconds * rate)]
    assert wave.numel() == processor.max_samples and bool(wave.isfinite().all())


def test_multichannel_audio_is_mixed_to_mono_and_silence_stays_finite(tmp_path):
    processor = _audio_processor(tmp_path)
    rate = processor.rate
    channels = np.stack([np.full(rate // 2, c / 10, dtype=np.float32) for c in range(6)], axis=1)
    sf.write(tmp_path / "six.wav", channels, rate, subtype="FLOAT")
    wave = processor.load_waveform(tmp_path / "six.wav")
    assert wave.shape == (rate // 2,) and np.allclose(wave.numpy(), 0.25, atol=1e-6)  # the channels' mean
    sf.write(tmp_path / "silent.wav", np.zeros(rate // 2), rate)
    assert bool(processor.features(processor.load_waveform(tmp_path / "silent.wav"))["mel"].float().isfinite().all())


def test_wav_of_unknown_length_is_kept_and_a_short_one_is_not_called_truncated(tmp_path):
    processor = _audio_processor(tmp_path)
    sf.write(tmp_path / "ok.wav", np.zeros(800), 8000, subtype="PCM_16")
    data = bytearray((tmp_path / "ok.wav").read_bytes())
    data[data.index(b"data") + 4 : data.index(b"data") + 8] = b"\xff\xff\xff\xff"  # what a streaming writer leaves
    (tmp_path / "streamed.wav").write_bytes(bytes(data))
    assert processor.load_waveform(tmp_path / "streamed.wav").numel() == processor.rate // 10  # 0.1 s
    assert processor.load_waveform(tmp_path / "ok.wav").numel() == processor.rate // 10


@pytest.mark.parametrize(
    "rate, reason",
    [
        (7999, "min_sample_rate=8000"),
        (192001, "max_sample_rate=192000"),
        (44101, "max_ratio_terms=1000"),
        (11025, None),
        (48000, None),
    ],
)
def test_sample_rate_limits_name_their_knob(tmp_path, rate, reason):
    processor = _audio_processor(tmp_path)
    if reason is None:
        processor.check_rate(rate)
    else:
        with pytest.raises(RecordError, match=f"unsupported sample rate: {rate} Hz.*{reason}"):
            processor.check_rate(rate)


def test_manifest_saved_with_a_byte_order_mark_keeps_its_first_record(tmp_path):
    rows = [{"id": "first", "label": "a", "text": "x"}, {"id": "second", "label": "a", "text": "y"}]
    (tmp_path / MANIFEST).write_bytes("\ufeff".encode() + "\n".join(json.dumps(r) for r in rows).encode())
    manifest = load_manifest(tmp_path, MANIFEST, compose().data.split, stage="test")
    assert [r.id for r in manifest.records] == ["first", "second"] and manifest.rejections == []


# ---------------------------------------------------------------- strict


def _params(tmp_path: Path, overrides: list[str], name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(OmegaConf.to_yaml(compose(["preprocess.num_workers=1", *overrides])), encoding="utf-8")
    return path


def test_strict_fails_with_the_summary_and_keeps_the_previous_output(corpus_run, tmp_path, subprocess_env):
    out, placed, summaries, cfg = corpus_run
    processed = tmp_path / "processed"
    shutil.copytree(out / "image", processed / "image")
    before = _files(processed)
    params = _params(
        tmp_path, [f"data.root={cfg.data.root}", f"data.processed_dir={processed}", "preprocess.rejections_shown=5"]
    )
    result = subprocess.run(
        [sys.executable, "pipelines/preprocess.py", "image", "--strict", "--params", str(params)],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode != 0
    rejected = summaries["image"]["rejected"]
    assert format_summary(summaries["image"]) in result.stderr
    assert "rejected records:" in result.stderr and f"... and {rejected - 5} more" in result.stderr
    assert "line 1, id bad_png_truncated, file image/truncated.png: cannot decode image" in result.stderr
    assert "error:" in result.stderr and "preprocess.strict" in result.stderr
    assert _files(processed) == before  # untouched: no swap-in
    assert sorted(p.name for p in processed.iterdir()) == ["image"]  # the work folder is gone


def test_strict_succeeds_without_rejections(sample_root, tmp_path, subprocess_env):
    params = _params(tmp_path, [f"data.root={sample_root}", f"data.processed_dir={tmp_path / 'out'}"])
    result = subprocess.run(
        [sys.executable, "pipelines/preprocess.py", "image", "--strict", "--params", str(params)],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rejected 0" in result.stdout and ModalityShards(tmp_path / "out" / "image").meta["summary"]["rejected"] == 0


def test_structural_error_still_names_the_fix_under_strict(tmp_path, subprocess_env):
    params = _params(tmp_path, [f"data.root={tmp_path}"])
    result = subprocess.run(
        [sys.executable, "pipelines/preprocess.py", "text", "--strict", "--params", str(params)],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode != 0 and "error: manifest not found" in result.stderr and "data.root" in result.stderr


# ---------------------------------------------------------------- atomic outputs


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    return proc.pid


def test_stale_work_folders_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "image"
    dead, alive = _dead_pid(), os.getppid()
    for path in (
        work_path(out, "tmp", dead),
        work_path(out, "old", dead),
        work_path(out, "tmp", alive),
        out.with_name(".image.tmp"),
    ):  # the pid-less name of earlier versions
        (path / "shards").mkdir(parents=True)
    removed = remove_stale(out)
    assert sorted(p.name for p in removed) == sorted([f".image.tmp-{dead}", f".image.old-{dead}", ".image.tmp"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".image.tmp-{alive}"]


def test_a_failed_run_leaves_the_previous_output_and_no_work_folder(tmp_path):
    out = tmp_path / "image"
    out.mkdir()
    (out / "meta.json").write_text("previous")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(out) as work:
            (work / "meta.json").write_text("half")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image"] and (out / "meta.json").read_text() == "previous"


def test_a_kill_between_the_swap_renames_is_recovered(corpus_run, tmp_path):
    """Killed after out → .old and before work → out: no output at all; the next run completes and cleans up."""
    out, _, _, cfg = corpus_run
    processed = tmp_path / "processed"
    shutil.copytree(out / "text", work_path(processed / "text", "old", _dead_pid()))
    shutil.copytree(out / "text", work_path(processed / "text", "tmp", _dead_pid()))
    run_preprocess("text", OmegaConf.merge(cfg, {"data": {"processed_dir": str(processed)}}))
    assert sorted(p.name for p in processed.iterdir()) == ["text"]
    assert _files(processed / "text") == _files(out / "text")


# ---------------------------------------------------------------- slow: kill a stage, dvc repro


KILL_TIMEOUT = 120  # seconds any one wait may take on a loaded machine


def _wait(condition, proc: subprocess.Popen, what: str, allow_exit: bool = False) -> bool:
    """Poll until `condition()`; False if the process ended first (only allowed with `allow_exit`)."""
    deadline = time.monotonic() + KILL_TIMEOUT
    while not condition():
        if proc.poll() is not None:
            assert allow_exit, f"the stage ended (rc {proc.returncode}) before {what}"
            return False
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return True


def _replicated_sample(sample_root: Path, root: Path, copies: int) -> None:
    """The sample's files with its manifest repeated `copies` times under new ids: a bigger dataset for free."""
    for folder in ("text", "image", "audio"):
        shutil.copytree(sample_root / folder, root / folder)
    rows = read_jsonl(sample_root / MANIFEST)
    lines = [json.dumps({**row, "id": f"{row['id']}_{copy}"}) for copy in range(copies) for row in rows]
    (root / MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.slow
def test_killed_preprocess_stage_leaves_no_partial_output_and_reruns_identically(sample_root, tmp_path, subprocess_env):
    root, processed = tmp_path / "ds", tmp_path / "processed"
    _replicated_sample(sample_root, root, copies=8)
    overrides = [
        f"data.root={root}",
        f"data.processed_dir={processed}",
        "preprocess.num_workers=2",
        "preprocess.chunk_bytes=64KB",
    ]
    params = _params(tmp_path, overrides)
    # the runs whose workers are orphaned use other settings (as after a kill, an edit and a rerun): one item a
    # chunk, so they write many more chunk files than the rerun, and any reaching its folder would show
    orphan_params = _params(tmp_path, [*overrides, "preprocess.chunk_bytes=4KB"], "orphan_params.yaml")
    reference_cfg = compose([*overrides[:1], f"data.processed_dir={tmp_path / 'reference'}", *overrides[2:]])
    run_preprocess("image", reference_cfg)
    reference = _files(tmp_path / "reference" / "image")
    assert sum(name.startswith("shards/chunk-") for name in reference) > 4  # several chunks to kill between
    out = processed / "image"
    groups = []

    def start(params: Path = params) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "pipelines/preprocess.py", "image", "--params", str(params)],
            cwd=ROOT,
            env=subprocess_env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        groups.append(proc.pid)
        return proc

    def work_folder_made(pid: int) -> bool:
        return work_path(out, "tmp", pid).exists()

    def chunk_written(pid: int) -> bool:
        return any(work_path(out, "tmp", pid).glob("shards/chunk-*.bin"))

    def shards_indexed(pid: int) -> bool:
        return (work_path(out, "tmp", pid) / "shards" / "index.json").exists()

    def assert_previous_or_nothing(previous: dict | None) -> None:
        visible = [p.name for p in processed.iterdir() if not p.name.startswith(".")] if processed.exists() else []
        if previous is None or not out.exists():
            assert visible == [], visible
            with pytest.raises(FileNotFoundError):
                ModalityShards(out)
        else:
            assert _files(out) == previous
            assert ModalityShards(out).meta["summary"]["rejected"] == 0

    # (kill when, the whole process group or only the main process, may the run finish first); the first
    # round has no previous output, the second the reference one
    rounds = [
        (
            None,
            [
                (lambda pid: True, True, False),
                (work_folder_made, True, False),
                (chunk_written, True, False),
                (chunk_written, False, False),
            ],
        ),
        (reference, [(chunk_written, True, False), (shards_indexed, True, True), (chunk_written, False, False)]),
    ]
    try:
        for previous, moments in rounds:
            orphaned = []
            for condition, whole_group, allow_exit in moments:
                proc = start(params if whole_group else orphan_params)
                if _wait(
                    lambda condition=condition, proc=proc: condition(proc.pid), proc, "the kill moment", allow_exit
                ):
                    if whole_group:
                        os.killpg(proc.pid, signal.SIGKILL)
                    else:  # its workers live on, orphaned: frozen until the rerun below has its work folder
                        os.kill(proc.pid, signal.SIGKILL)
                        # stopped only once orphaned: a group orphaned with stopped members gets SIGHUP
                        proc.wait(timeout=60)
                        os.killpg(proc.pid, signal.SIGSTOP)
                        orphaned.append(proc.pid)
                proc.wait(timeout=60)
                assert_previous_or_nothing(previous)
            rerun = start()
            _wait(lambda rerun=rerun: chunk_written(rerun.pid), rerun, "the rerun's first chunk", allow_exit=True)
            for group in orphaned:  # the orphans now write on, while the rerun writes its own chunks
                os.killpg(group, signal.SIGCONT)
            assert rerun.wait(timeout=KILL_TIMEOUT * 2) == 0
            assert _files(out) == reference
    finally:
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
    remove_stale(out)
    assert sorted(p.name for p in processed.iterdir()) == ["image"]


def _run(args, cwd, env) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.mark.slow
def test_dvc_repro_keeps_every_good_record_and_lists_every_bad_one(tmp_path):
    project = tmp_path / "project"
    env = copy_dvc_project(
        project, [*TINY_TRAINING, f"sample.num_records={TINY_RECORDS}", "sample.progress=false", "data.root=data/dirty"]
    )
    root = project / "data" / "dirty"
    generate_sample(compose([f"sample.num_records={TINY_RECORDS}", "sample.progress=false"]).sample, root)
    good = read_jsonl(root / MANIFEST)
    placed = mix_into(root, dvc_safe=True)
    dvc = [sys.executable, "-m", "dvc"]
    _run([*dvc, "init", "--no-scm", "-q"], project, env)
    _run([*dvc, "config", "core.analytics", "false"], project, env)
    result = _run([*dvc, "repro", "preprocess_text", "preprocess_image", "preprocess_audio"], project, env)
    assert "Running stage 'sample'" not in result.stdout
    printed = {m.group(1): m.groups()[1:] for m in SUMMARY_LINE.finditer(result.stdout)}
    keys = {"text": ("text", "text_path"), "image": ("image",), "audio": ("audio",)}
    for modality in MODALITIES:
        out = project / "data" / "processed" / modality
        check_outcomes(out, modality, placed)
        ids = json.loads((out / "ids.json").read_text())
        good_with = [r["id"] for r in good if any(r.get(k) is not None for k in keys[modality])]
        assert set(good_with) <= set(ids)  # every good record is kept
        expected = expected_counts(placed, modality, len(good), len(good_with))
        records, train, val, test, missing, rejected = map(int, printed[modality])
        assert (records, train + val + test, missing, rejected) == (
            expected["records"],
            len(ids),
            expected["missing"],
            len(read_jsonl(out / "rejected.jsonl")),
        )
        assert (train + val + test, rejected) == (expected["kept"], expected["rejected"])
