"""Tests of the synthetic multimodal sample generator (fusion/data/sample/, pipelines/sample.py)."""

import json
import subprocess
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf
from PIL import Image

from fusion.data.sample import (
    CLASS_NAMES,
    MODALITIES,
    bayes_optimal_accuracy,
    format_summary,
    generate_sample,
    plan_dataset,
    plan_record,
    render_audio,
    render_image,
    render_text,
    validate_config,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "conf" / "sample" / "default.yaml"
N = 80


def small_cfg(**overrides):
    """Default config with few records, no progress bar, and dotlist-style overrides."""
    cfg = OmegaConf.load(DEFAULT)
    cfg.num_records = N
    cfg.progress = False
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{k}={v}" for k, v in overrides.items()]))


def read_manifest(root: Path) -> list[dict]:
    """Manifest records of a generated dataset."""
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """One generated dataset shared by the contract tests: (root, summary, manifest, plans)."""
    cfg = small_cfg()
    root = tmp_path_factory.mktemp("ds") / "sample"
    summary = generate_sample(cfg, root)
    return root, summary, read_manifest(root), {p["id"]: p for p in plan_dataset(cfg)}


def test_deterministic_bytes(tmp_path):
    cfg = small_cfg()
    a, b = tmp_path / "a", tmp_path / "b"
    generate_sample(cfg, a)
    generate_sample(cfg, b)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_seed_changes_output(tmp_path):
    generate_sample(small_cfg(), tmp_path / "a")
    generate_sample(small_cfg(seed=1), tmp_path / "b")
    assert (tmp_path / "a/manifest.jsonl").read_bytes() != (tmp_path / "b/manifest.jsonl").read_bytes()


def test_records_independent_of_dataset_size():
    """Per-record generators depend on (seed, index) only: the first records of a 20-record and of a 500-record
    dataset, given the same class, have the same plan and render to the same image, audio and text."""
    small, big = validate_config(small_cfg(num_records=20)), validate_config(small_cfg(num_records=500))
    for index in range(20):
        plan_s, plan_b = plan_record(small, index, index % 10), plan_record(big, index, index % 10)
        assert plan_s == plan_b, index
        for modality in ("image", "text"):
            if plan_s[modality]["state"] != "missing":
                assert _rendered(modality, small, plan_s) == _rendered(modality, big, plan_b), (index, modality)
        if plan_s["audio"]["state"] != "missing":
            (wave_s, rate_s), (wave_b, rate_b) = render_audio(small, plan_s), render_audio(big, plan_b)
            assert rate_s == rate_b and np.array_equal(wave_s, wave_b), index


def _rendered(modality: str, cfg, plan) -> bytes | str:
    return render_image(cfg, plan).tobytes() if modality == "image" else render_text(cfg, plan)


def test_manifest_contract(dataset):
    root, _, records, _ = dataset
    names = set(OmegaConf.load(DEFAULT).class_names)
    assert len(records) == N
    assert len({r["id"] for r in records}) == N
    assert [r["id"] for r in records] == [f"s{i:05d}" for i in range(1, N + 1)]
    assert sorted(p.name for p in root.iterdir()) == ["audio", "image", "manifest.jsonl", "text"]
    for r in records:
        assert r["label"] in names
        assert "split" not in r
        assert ("text" in r) != ("text_path" in r)
        for key, sub in (("image", "image"), ("audio", "audio"), ("text_path", "text")):
            rel = r.get(key)
            if rel is not None:
                path = (root / rel).resolve()
                assert path.is_file() and path.parent == (root / sub).resolve()
        if r.get("text") is not None:
            assert isinstance(r["text"], str) and r["text"]
    for key in ("image", "audio", "text"):
        assert any(r.get(key, "") is None for r in records), f"{key} never missing"
    assert any("text_path" in r for r in records) and any(isinstance(r.get("text"), str) for r in records)
    lines = (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    assert all(list(json.loads(line)) == sorted(json.loads(line)) for line in lines)


def test_never_all_modalities_null(dataset):
    _, _, records, _ = dataset
    for r in records:
        assert r["image"] is not None or r["audio"] is not None or r.get("text", "") is not None
    cfg = small_cfg(num_records=400, **{f"{m}.missing_fraction": 0.6 for m in MODALITIES})
    for p in plan_dataset(cfg):
        assert any(p[m]["state"] != "missing" for m in MODALITIES)


def test_class_balance(dataset):
    _, summary, records, _ = dataset
    counts = Counter(r["label"] for r in records)
    assert len(counts) == 10 and max(counts.values()) - min(counts.values()) <= 1
    assert summary["classes"] == {k: counts[k] for k in summary["classes"]}


def test_audio_mixed_rates_pcm16(dataset):
    root, summary, records, _ = dataset
    rates = Counter()
    for r in records:
        if r["audio"]:
            info = sf.info(root / r["audio"])
            assert info.subtype == "PCM_16" and info.channels == 1
            assert 0.5 - 1e-3 <= info.duration <= 1.0 + 1e-3
            rates[info.samplerate] += 1
    assert len(rates) >= 3 and set(rates) <= {8000, 16000, 22050, 44100}
    assert summary["sample_rates"] == dict(sorted(rates.items()))


def test_images_formats_modes_sizes(dataset):
    root, summary, records, _ = dataset
    formats, modes = Counter(), Counter()
    for r in records:
        if r["image"]:
            with Image.open(root / r["image"]) as im:
                formats[im.format] += 1
                modes[im.mode] += 1
                assert all(40 <= s <= 96 for s in im.size)
                assert r["image"].endswith(".png" if im.format == "PNG" else ".jpg")
    assert formats["PNG"] > 0 and formats["JPEG"] > 0
    assert modes["L"] > 0 and modes["RGB"] > 0
    assert summary["image_formats"] == {"jpeg": formats["JPEG"], "png": formats["PNG"]}


def test_latents_follow_pairing_tables(dataset):
    _, _, records, plans = dataset
    cfg = OmegaConf.load(DEFAULT)
    for r in records:
        p = plans[r["id"]]
        c = cfg.class_names.index(r["label"])
        assert p["class_index"] == c
        for mod in MODALITIES:
            assert (r.get(mod, r.get("text_path")) is None) == (p[mod]["state"] == "missing")
        if p["image"]["state"] == "clean":
            assert p["image"]["group"] == c % 5
        if p["audio"]["state"] == "clean":
            assert p["audio"]["group"] == c // 2
        if p["text"]["state"] == "clean":
            assert p["text"]["groups"] == [cfg.text.groups[c]]
        if p["text"].get("mode") == "two_keywords":
            assert len(set(p["text"]["groups"])) == 2


def test_pairings_identify_class_only_jointly():
    cfg = OmegaConf.load(DEFAULT)
    assert list(cfg.class_names) == list(CLASS_NAMES)
    tables = {m: list(cfg[m].groups) for m in MODALITIES}
    for m in MODALITIES:  # each single modality: exactly pairs
        assert sorted(Counter(tables[m]).values()) == [2] * 5
    for m1, m2 in combinations(MODALITIES, 2):  # any two: injective
        assert len(set(zip(tables[m1], tables[m2], strict=True))) == 10


def test_bayes_accuracy_in_design_range():
    acc = bayes_optimal_accuracy(OmegaConf.load(DEFAULT))
    for m in MODALITIES:
        assert 0.33 <= acc[m] <= 0.40
    assert 0.75 <= acc["image+audio+text"] <= 0.85
    assert acc["image+audio+text"] > max(v for k, v in acc.items() if k.count("+") == 1)


def test_clean_audio_peak_in_band(dataset):
    root, _, records, plans = dataset
    bands = OmegaConf.load(DEFAULT).audio.bands
    checked = 0
    for r in records:
        p = plans[r["id"]]["audio"]
        if p["state"] == "clean":
            x, sr = sf.read(root / r["audio"])
            spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
            peak = np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()]
            lo, hi = bands[p["group"]]
            assert 0.97 * lo <= peak <= 1.03 * hi
            checked += 1
    assert checked > N // 3


def test_clean_text_contains_group_keyword():
    cfg = small_cfg(**{"text.typo_rate": 0.0})
    syn = [set(s) for s in cfg.text.synonyms]
    for p in plan_dataset(cfg):
        if p["text"]["state"] == "missing":
            continue
        words = set(render_text(cfg, p).lower().replace(",", " ").replace(":", " ").split())
        found = [g for g, s in enumerate(syn) if words & s]
        assert found == sorted(p["text"]["groups"]), (p["text"], words)


def test_clean_image_shape_visible():
    """Noise-free renders: a clean shape is one solid colour region of sensible size."""
    cfg = small_cfg(**{"image.noise_std": 0, "image.texture_strength": 0, "image.grayscale_fraction": 0})
    for p in plan_dataset(cfg):
        if p["image"]["state"] == "missing":
            continue
        px = np.asarray(render_image(cfg, p)).reshape(-1, 3)
        colours = Counter(map(tuple, px))
        if p["image"]["mode"] == "shape":
            assert len(colours) == 2
            assert min(colours.values()) >= 0.01 * len(px)


def test_write_splits_stratified(tmp_path):
    cfg = small_cfg(num_records=200, write_splits=True)
    generate_sample(cfg, tmp_path / "s")
    records = read_manifest(tmp_path / "s")
    per_class = Counter((r["label"], r["split"]) for r in records)
    for name in cfg.class_names:
        assert (per_class[(name, "train")], per_class[(name, "val")], per_class[(name, "test")]) == (14, 3, 3)


def test_atomic_replace_and_cleanup(tmp_path):
    out = tmp_path / "sample"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    summary = generate_sample(small_cfg(num_records=12), out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample"]
    assert "sample: 12 records" in format_summary(summary)


def test_failure_leaves_no_partial_dataset(tmp_path, monkeypatch):
    import fusion.data.sample.write as mod

    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(mod, "render_audio", boom)
    with pytest.raises(RuntimeError):
        generate_sample(small_cfg(num_records=12), tmp_path / "sample")
    assert list(tmp_path.iterdir()) == []


def test_invalid_config_rejected(tmp_path):
    with pytest.raises(ValueError):
        generate_sample(small_cfg(**{"image.missing_fraction": 0.9}), tmp_path / "x")
    with pytest.raises(ValueError):
        generate_sample(small_cfg(**{"audio.groups": "[0,0,1]"}), tmp_path / "x")


def test_pipeline_cli(tmp_path):
    params = OmegaConf.create({"sample": OmegaConf.load(DEFAULT), "other": {"x": 1}})
    OmegaConf.save(params, tmp_path / "params.yaml")
    out = tmp_path / "custom"
    cmd = [
        sys.executable,
        str(ROOT / "pipelines" / "sample.py"),
        "sample.num_records=30",
        f"sample.output_dir={out}",
        "sample.progress=false",
    ]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "30 records" in res.stdout
    assert len(read_manifest(out)) == 30

    res = subprocess.run(cmd + ["--params", "missing.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "missing.yaml" in res.stderr

    res = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "sample.py"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "--params" in res.stdout and "examples" in res.stdout
