"""The robustness stage: each perturbation (identity at level 0, severity, seeding), MultiBench's scores by hand,
the late-fusion reference lookup in a real MLflow store, and tiny models trained and evaluated for real."""

import csv
import json
import math
import string
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from fusion.config import compose
from fusion.robustness.curves import ALL, check_levels, curve_names, plan_curves
from fusion.robustness.perturbations import (
    GaussianBlur,
    GaussianNoise,
    Occlusion,
    Typos,
    WhiteNoise,
    WordDropout,
    build_perturbation,
    noise_rng,
)
from fusion.robustness.report import write_curves_csv
from fusion.robustness.results import Curves
from fusion.robustness.scores import effective_robustness, relative_robustness
from fusion.robustness.tracking import SETTINGS_TAG, curve_key, find_reference, read_curves, settings_hash
from fusion.tracking.store import absolute_tracking_uri
from tests.helpers.config import tiny_config

ROOT = Path(__file__).resolve().parents[1]
LETTERS = string.ascii_lowercase
DEFAULT = compose([]).robustness


def _rng(level: float = 0.5, record: str = "r1", name: str = "p") -> np.random.Generator:
    return noise_rng(0, record, name, level)


def _image(size: int = 64, value: int | None = None) -> torch.Tensor:
    if value is not None:
        return torch.full((3, size, size), value, dtype=torch.uint8)
    return torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, size, size), dtype=np.uint8))


def _text(words: int) -> str:
    rng = np.random.default_rng(2)
    return " ".join("".join(rng.choice(list(LETTERS), size=int(rng.integers(3, 9)))) for _ in range(words))


# --- perturbations -------------------------------------------------------------------------------------------

CASES = {
    "gaussian_noise": (GaussianNoise(max_std=0.5), _image()),
    "gaussian_blur": (GaussianBlur(max_sigma=3.0, truncate=3.0), _image()),
    "occlusion": (Occlusion(max_area=0.8, fill=128), _image()),
    "white_noise": (WhiteNoise(max_snr_db=30.0, min_snr_db=-10.0), torch.sin(torch.linspace(0, 400, 16000))),
    "typos": (Typos(max_rate=0.3, kinds=Typos.KINDS), _text(40)),
    "word_dropout": (WordDropout(max_rate=0.9), _text(40)),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_level_zero_is_the_clean_input_and_higher_levels_change_it(kind):
    perturbation, clean = CASES[kind]
    assert perturbation(clean, 0.0, _rng(0.0)) is clean
    noisy = perturbation(clean, 1.0, _rng(1.0))
    assert type(noisy) is type(clean)
    if isinstance(clean, torch.Tensor):
        assert noisy.shape == clean.shape and noisy.dtype == clean.dtype and not torch.equal(noisy, clean)
    else:
        assert noisy != clean
    with pytest.raises(ValueError, match="outside"):
        perturbation(clean, 1.5, _rng())


@pytest.mark.parametrize("kind", sorted(CASES))
def test_noise_is_seeded_per_record_perturbation_and_level(kind):
    perturbation, clean = CASES[kind]

    def run(record="r1", name="p", level=0.7):
        out = perturbation(clean, level, noise_rng(0, record, name, level))
        return out.tolist() if isinstance(out, torch.Tensor) else out

    assert run() == run()
    if kind != "gaussian_blur":  # blur draws no random numbers
        assert run() != run(record="r2") and run() != run(name="q") and run() != run(level=0.8)
    assert noise_rng(0, "r", "p", 0.5).random() != noise_rng(1, "r", "p", 0.5).random()


def test_gaussian_noise_std_is_the_level_times_max_std():
    noise = GaussianNoise(max_std=0.1)
    clean = _image(value=128)
    stds = [float((noise(clean, level, _rng(level)).float() - 128).std()) for level in (0.25, 0.5, 1.0)]
    for level, std in zip((0.25, 0.5, 1.0), stds, strict=True):
        assert std == pytest.approx(level * 0.1 * 255, rel=0.05)


def test_blur_smooths_more_at_higher_levels():
    blur, clean = CASES["gaussian_blur"]

    def roughness(image):
        return float((image[..., 1:].float() - image[..., :-1].float()).abs().mean())

    values = [roughness(blur(clean, level, _rng(level))) for level in (0.0, 0.1, 0.5, 1.0)]
    assert values == sorted(values, reverse=True) and values[-1] < values[0] / 4


@pytest.mark.parametrize("level", [0.1, 0.5, 1.0])
def test_occlusion_covers_the_level_times_max_area(level):
    occlusion = Occlusion(max_area=0.8, fill=200)
    out = occlusion(_image(value=0), level, _rng(level))
    covered = float((out == 200).all(dim=0).float().mean())
    side = math.sqrt(level * 0.8)
    assert covered == pytest.approx(level * 0.8, abs=2 * side / 64 + 1 / 64)
    assert set(out.unique().tolist()) == {0, 200}


@pytest.mark.parametrize("level", [0.0001, 0.25, 0.5, 1.0])
def test_white_noise_has_the_requested_snr(level):
    noise, clean = CASES["white_noise"]
    added = noise(clean, level, _rng(level)) - clean
    snr = 10 * math.log10(float(clean.double().pow(2).mean()) / float(added.double().pow(2).mean()))
    assert noise.snr_db(level) == pytest.approx(30.0 - level * 40.0)
    assert snr == pytest.approx(noise.snr_db(level), abs=0.3)


def test_white_noise_leaves_silence_silent():
    silence = torch.zeros(400)
    assert torch.equal(WhiteNoise(30.0, -10.0)(silence, 1.0, _rng()), silence)


@pytest.mark.parametrize("level", [0.2, 0.6, 1.0])
def test_typo_rate_is_the_level_times_max_rate(level):
    text = _text(3000)
    letters = sum(c.isalpha() for c in text)
    deleted = Typos(max_rate=0.5, kinds=["delete"])(text, level, _rng(level))
    assert (len(text) - len(deleted)) / letters == pytest.approx(level * 0.5, abs=0.015)
    assert deleted.count(" ") == text.count(" ")  # only letters are touched
    replaced = Typos(max_rate=0.5, kinds=["replace"])(text, level, _rng(level))
    assert len(replaced) == len(text)
    assert sum(a != b for a, b in zip(text, replaced, strict=True)) / letters == pytest.approx(level * 0.5, abs=0.015)
    doubled = Typos(max_rate=0.5, kinds=["double"])(text, level, _rng(level))
    assert (len(doubled) - len(text)) / letters == pytest.approx(level * 0.5, abs=0.015)
    swapped = Typos(max_rate=0.5, kinds=["swap"])(text, level, _rng(level))
    assert sorted(swapped) == sorted(text)


def test_typos_keep_the_case_and_reject_unknown_kinds():
    out = Typos(max_rate=1.0, kinds=["replace"])("ABC", 1.0, _rng())
    assert out.isupper() and all(a != b for a, b in zip("ABC", out, strict=True))
    with pytest.raises(ValueError, match="kinds"):
        Typos(max_rate=0.1, kinds=["shout"])


@pytest.mark.parametrize("level", [0.2, 0.5, 1.0])
def test_word_dropout_rate_is_the_level_times_max_rate(level):
    text = _text(5000)
    kept = WordDropout(max_rate=0.8)(text, level, _rng(level)).split()
    assert 1 - len(kept) / 5000 == pytest.approx(level * 0.8, abs=0.02)
    assert set(kept) <= set(text.split())


def test_word_dropout_keeps_at_least_one_word():
    for record in ("a", "b", "c", "d"):
        assert len(WordDropout(max_rate=1.0)("one two three", 1.0, _rng(record=record)).split()) == 1


def test_every_configured_perturbation_builds_and_bad_settings_name_the_key():
    built = {name: build_perturbation(name, settings) for name, settings in DEFAULT.perturbations.items()}
    assert {p.modality for p in built.values()} == {"text", "image", "audio"}
    with pytest.raises(ValueError, match="robustness.perturbations.x.kind"):
        build_perturbation("x", {"kind": "nope"})
    with pytest.raises(ValueError, match="robustness.perturbations.x"):
        build_perturbation("x", {"kind": "occlusion", "max_area": 0.5})


def test_curves_are_planned_for_the_run_modalities_only():
    plan = plan_curves(DEFAULT, ["text", "image"])
    assert list(plan) == ["image_noise", "image_blur", "image_occlusion", "text_typos", "text_word_dropout", ALL]
    assert [name for name, _ in plan[ALL]] == ["image_noise", "text_typos"]
    assert list(plan_curves(DEFAULT, ["audio"])) == ["audio_noise", ALL]


def test_curves_csv_keeps_a_column_per_configured_curve_as_dvc_yaml_plots_them(tmp_path):
    curves = Curves(0.5, [0.0, 1.0], {"text_typos": [0.5, 0.25], ALL: [0.5, 0.125]}, {}, 4)
    path = write_curves_csv(tmp_path / "curves.csv", curves, curve_names(DEFAULT))
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["level", *DEFAULT.perturbations, ALL]
    assert rows[2] == ["1.0", "", "", "", "", "0.25", "", "0.125"]
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (plot,) = [p for entry in dvc["plots"] for key, p in entry.items() if key.endswith("/curves.csv")]
    assert plot["x"] == "level" and plot["y"] == curve_names(DEFAULT)


@pytest.mark.parametrize("levels", [[0.5, 1.0], [0.0], [0.0, 0.5, 0.5], [0.0, 1.5]])
def test_levels_must_rise_from_zero_to_at_most_one(levels):
    with pytest.raises(ValueError, match="robustness.levels"):
        check_levels(levels)


# --- scores --------------------------------------------------------------------------------------------------


def test_relative_robustness_is_the_trapezoid_area():
    assert relative_robustness([0.0, 0.5, 1.0], [1.0, 0.5, 0.0]) == pytest.approx(0.5)
    assert relative_robustness([0.0, 0.5, 1.0], [0.8, 0.6, 0.2]) == pytest.approx(0.25 * 1.4 + 0.25 * 0.8)
    levels = DEFAULT.levels
    assert relative_robustness(levels, [0.7] * len(levels)) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        relative_robustness([0.0, 1.0], [1.0])


def test_effective_robustness_is_the_gap_to_the_shifted_late_curve():
    f, late = [0.9, 0.8, 0.6], [0.8, 0.6, 0.3]  # late shifted to 0.9: [0.9, 0.7, 0.4]
    assert effective_robustness(f, late) == pytest.approx(0.0 + 0.1 + 0.2)
    assert effective_robustness(late, late) == 0.0
    mae, late_mae = [1.0, 1.2, 1.5], [0.9, 1.3, 1.8]  # late shifted to 1.0: [1.0, 1.4, 1.9]; errors grow less
    assert effective_robustness(mae, late_mae, mode="min") == pytest.approx(0.6)
    assert math.copysign(1.0, effective_robustness(mae, mae, mode="min")) == 1.0  # 0.0, not -0.0
    with pytest.raises(ValueError):
        effective_robustness([1.0, 0.5], [1.0])


# --- the late-fusion reference in MLflow ---------------------------------------------------------------------


def _run(client, experiment_id, fusion, start, settings=None, data="v1", status="FINISHED", values=None) -> str:
    tags = {"fusion": fusion, "task": "multiclass", "modality": "text+image", "data_version": data}
    if settings:
        tags[SETTINGS_TAG] = settings
    run_id = client.create_run(experiment_id, start_time=start, tags=tags).info.run_id
    for step, (level, value) in enumerate(values or []):
        client.log_metric(run_id, "robustness/level", level, step=step)
        client.log_metric(run_id, curve_key("test/acc", "image_noise"), value, step=step)
    client.set_terminated(run_id, status)
    return run_id


def test_the_reference_is_the_newest_finished_late_run_on_the_same_data_and_settings(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("fusion", artifact_location=(tmp_path / "art").as_uri())
    settings = settings_hash(DEFAULT)
    own = _run(client, exp, "cross_attention", 10, settings)
    missing = find_reference(client, own, "late", settings)
    assert missing.run_id is None and "no finished late run" in missing.note
    assert "python train.py fusion=late modality=text+image task=multiclass" in missing.hint
    _run(client, exp, "late", 20, settings="other")
    assert "has robustness curves with these settings" in find_reference(client, own, "late", settings).note
    curve = [(0.0, 0.8), (0.5, 0.6), (1.0, 0.3)]
    old = _run(client, exp, "late", 30, settings, values=curve)
    _run(client, exp, "late", 40, settings, data="v2", values=curve)  # other data
    _run(client, exp, "late", 50, settings, status="FAILED", values=curve)
    reference = find_reference(client, own, "late", settings)
    assert reference.run_id == old
    read = read_curves(client, reference, "test/acc", [0.0, 0.5, 1.0], ["image_noise"])
    assert read.curves == {"image_noise": [0.8, 0.6, 0.3]}
    assert read_curves(client, reference, "test/acc", [0.0, 1.0], ["image_noise"]).run_id is None
    assert read_curves(client, reference, "test/acc", [0.0, 0.5, 1.0], ["all"]).run_id is None
    client.log_metric(old, curve_key("test/acc", "image_noise"), 0.5, step=1)  # a rerun: the latest value counts
    assert read_curves(client, reference, "test/acc", [0.0, 0.5, 1.0], ["image_noise"]).curves["image_noise"][1] == 0.5
    late = find_reference(client, old, "late", settings)
    assert late.run_id == old and "own curves" in late.note


# --- tiny models, trained and evaluated for real -------------------------------------------------------------

LEVELS = [0.0, 0.5, 1.0]


@pytest.fixture(scope="module")
def evaluated(processed_dir, sample_root, tmp_path_factory):
    """cross_attention trained and evaluated (no late run yet), then late, then cross_attention again, all in
    one MLflow store: (base folder, {name: (cfg, result)})."""
    from fusion.robustness.evaluate import evaluate_robustness
    from fusion.stages.train import train

    base = tmp_path_factory.mktemp("robust")

    def config(fusion: str):
        return tiny_config(
            base,
            processed_dir,
            [
                "test_after_fit=false",
                f"fusion={fusion}",
                f"data.root={sample_root}",
                f"paths.output_dir={base / fusion}",
                f"paths.robustness_dir={base / fusion / 'robustness'}",
                f"robustness.levels={LEVELS}",
            ],
        )

    results = {}
    cross, late = config("cross_attention"), config("late")
    train(cross)
    first = evaluate_robustness(cross)
    results["cross_first"] = (cross, first, (base / "cross_attention" / "robustness" / "curves.csv").read_bytes())
    train(late)
    results["late"] = (late, evaluate_robustness(late))
    results["cross"] = (cross, evaluate_robustness(cross))
    return base, results


def _curves_csv(cfg) -> list[dict]:
    with open(Path(cfg.paths.robustness_dir) / "curves.csv", newline="") as source:
        return list(csv.DictReader(source))


@pytest.mark.slow
def test_the_stage_writes_curves_scores_and_figure(evaluated):
    _, results = evaluated
    cfg, result = results["cross"]
    out = Path(cfg.paths.robustness_dir)
    assert json.loads((out / "robustness.json").read_text()) == result
    rows = _curves_csv(cfg)
    names = ["image_noise", "image_blur", "image_occlusion", "audio_noise", "text_typos", "text_word_dropout", ALL]
    assert list(rows[0]) == ["level", *names]
    assert [float(row["level"]) for row in rows] == LEVELS
    assert [float(rows[0][name]) for name in names] == [pytest.approx(result["clean"], abs=1e-6)] * len(names)
    values = [float(row[name]) for row in rows for name in names]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert result["metric"] == "test/acc" and result["higher_is_better"]["metric"] is True
    assert set(result["relative"]) == set(names) and set(result["without"]) == {"text", "image", "audio"}
    for name in names:
        curve = [float(row[name]) for row in rows]
        assert result["relative"][name] == pytest.approx(relative_robustness(LEVELS, curve), abs=1e-5)
    assert all(0.0 <= v <= 1.0 for v in result["without"].values())
    assert (out / "robustness.png").stat().st_size > 0


@pytest.mark.slow
def test_without_a_late_run_effective_robustness_is_absent_and_the_output_says_why(evaluated):
    _, results = evaluated
    _, first, _ = results["cross_first"]
    assert "effective" not in first
    assert first["reference"]["run_id"] is None and "no finished late run" in first["reference"]["note"]


@pytest.mark.slow
def test_effective_robustness_is_measured_against_the_real_late_run(evaluated):
    _, results = evaluated
    late_cfg, late = results["late"]
    cross_cfg, cross = results["cross"]
    assert late["reference"]["run_id"] == late["mlflow_run_id"]
    assert all(value == pytest.approx(0.0, abs=1e-9) for value in late["effective"].values())
    assert cross["reference"]["run_id"] == late["mlflow_run_id"] != cross["mlflow_run_id"]
    late_rows, cross_rows = _curves_csv(late_cfg), _curves_csv(cross_cfg)
    for name, value in cross["effective"].items():
        expected = effective_robustness([float(r[name]) for r in cross_rows], [float(r[name]) for r in late_rows])
        assert value == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
def test_reruns_give_identical_curves(evaluated):
    _, results = evaluated
    cfg, _ = results["cross"]
    _, _, first_csv = results["cross_first"]
    assert (Path(cfg.paths.robustness_dir) / "curves.csv").read_bytes() == first_csv


@pytest.mark.slow
def test_curves_scores_and_files_are_logged_to_the_training_run(evaluated):
    _, results = evaluated
    cfg, result = results["cross"]
    client = MlflowClient(tracking_uri=absolute_tracking_uri(cfg.logger.tracking_uri))
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags[SETTINGS_TAG] == settings_hash(cfg.robustness)
    history = client.get_metric_history(run.info.run_id, "robustness/acc_image_noise")
    latest = {point.step: point.value for point in sorted(history, key=lambda p: p.timestamp)}
    assert sorted(latest) == [0, 1, 2]
    assert latest[0] == pytest.approx(result["clean"])
    for name in result["relative"]:
        assert run.data.metrics[f"robustness/relative_{name}"] == pytest.approx(result["relative"][name])
        assert run.data.metrics[f"robustness/effective_{name}"] == pytest.approx(result["effective"][name])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "robustness")}
    assert artifacts == {"robustness/curves.csv", "robustness/robustness.json", "robustness/robustness.png"}
