"""Any valid folder layout works: data.dirs follows the files the manifest names, and `dvc repro` preprocesses
a dataset whose texts are all inline (no text/ folder) and whose images and audio share one folder."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fusion.config import compose, write_params
from fusion.data.layout import common_folder, files_dir
from fusion.data.sample import generate_sample
from tests.helpers.config import ROOT, TINY_TRAINING
from tests.helpers.project import copy_dvc_project

# Stages whose dependencies the layout decides: text all inline, images in the folder they share with audio
# (preprocess_audio depends on it the same way; training reads only the stages' outputs).
STAGES = ["preprocess_text", "preprocess_image"]


def _manifest(root: Path, rows: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def test_common_folder_is_the_deepest_folder_holding_every_file():
    assert common_folder(["image/a.png", "image/b/c.png"]) == "image"
    assert common_folder(["a.png", "image/b.png"]) == "."
    assert common_folder(["media/x/a.wav", "media/y/b.wav"]) == "media"
    assert common_folder(["./media//a.wav"]) == "media"
    assert common_folder(["../outside.png", "/abs/a.png", "img/a.png"]) == "img"  # rejected by the stage anyway
    assert common_folder([]) is None


def test_files_dir_follows_the_manifest(tmp_path):
    root = _manifest(
        tmp_path / "d",
        [
            {"id": "1", "label": "a", "text": "inline", "image": "media/1.png", "audio": None},
            {"id": "2", "label": "b", "text": "inline too", "image": "media/2.png", "audio": "media/2.wav"},
            "not an object",
            {"id": "3", "label": "a", "image": 5},
        ],
    )
    (root / "manifest.jsonl").write_text((root / "manifest.jsonl").read_text() + "{broken\n")
    assert files_dir(root, "manifest.jsonl", "text") == "manifest.jsonl"  # inline only: no folder needed
    assert files_dir(root, "manifest.jsonl", "image") == "media"
    assert files_dir(root, "manifest.jsonl", "audio") == "media"
    assert files_dir(tmp_path / "absent", "manifest.jsonl", "audio") == "audio"  # not generated yet


def test_composed_config_resolves_the_folders_and_an_override_wins(tmp_path):
    root = _manifest(tmp_path / "d", [{"id": "1", "label": "a", "text_path": "docs/1.txt", "audio": "1.wav"}])
    cfg = compose([f"data.root={root}", "data.dirs.audio=sounds"])
    assert dict(cfg.data.dirs) == {"text": "docs", "image": "manifest.jsonl", "audio": "sounds"}
    assert dict(compose().data.dirs) == {"text": "text", "image": "image", "audio": "audio"}  # the sample


def _regroup(root: Path) -> None:
    """The generated sample rewritten to another valid layout: every text inline (no text/ folder), images and
    audio together in media/."""
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    (root / "media").mkdir()
    for row in rows:
        path = row.pop("text_path", None)
        if path:
            row["text"] = (root / path).read_text(encoding="utf-8")
        for key in ("image", "audio"):
            if row.get(key):
                target = f"media/{Path(row[key]).name}"
                (root / row[key]).rename(root / target)
                row[key] = target
    for folder in ("text", "image", "audio"):
        shutil.rmtree(root / folder)
    _manifest(root, rows)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dvc_repro_runs_on_inline_text_and_one_media_folder(tmp_path):
    dataset = tmp_path / "dataset"
    generate_sample(compose(["sample.num_records=60", "sample.progress=false"]).sample, dataset)
    _regroup(dataset)
    project = tmp_path / "project"
    env = copy_dvc_project(project, [*TINY_TRAINING, "trainer.max_epochs=1", f"data.root={dataset}"])
    dvc = [sys.executable, "-m", "dvc"]
    for args in (["init", "--no-scm", "-q"], ["config", "core.analytics", "false"], ["repro", *STAGES]):
        result = subprocess.run(
            [*dvc, *args], cwd=project, env=env, capture_output=True, text=True, timeout=240, check=False
        )
        assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    deps = {stage: {Path(d["path"]).name for d in lock[stage]["deps"]} for stage in lock}
    assert "text" not in deps["preprocess_text"] and "manifest.jsonl" in deps["preprocess_text"]
    assert "media" in deps["preprocess_image"]
    meta = json.loads((project / "data" / "processed" / "text" / "meta.json").read_text())
    assert meta["summary"]["rejected"] == 0 and sum(meta["summary"]["kept"].values()) > 0
    status = subprocess.run(
        [*dvc, "status", *STAGES], cwd=project, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert "up to date" in status.stdout, status.stdout


def test_make_params_names_a_missing_folder_and_the_fix(tmp_path):
    root = _manifest(tmp_path / "d", [{"id": "1", "label": "a", "text": "hi", "image": "pics/1.png"}])
    (root / "pics").mkdir()
    with pytest.raises(SystemExit, match=r"data.dirs.image='images'.*under 'pics'"):
        write_params(tmp_path / "params.yaml", [f"data.root={root}", "data.dirs.image=images"])
    write_params(tmp_path / "params.yaml", [f"data.root={root}"])
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["data"]["dirs"]["image"] == "pics"


def test_dvc_hydra_composition_finds_the_resolver(tmp_path):
    """`dvc exp run -S ...` composes conf/ with DVC's own code in a process that never imported fusion.config;
    the resolver comes from hydra_plugins/ under the repository root."""
    root = _manifest(tmp_path / "d", [{"id": "1", "label": "a", "text": "hi", "audio": "clips/1.wav"}])
    out = tmp_path / "params.yaml"
    code = (
        "import sys; from dvc.utils.hydra import compose_and_dump; "
        "compose_and_dump(sys.argv[1], sys.argv[2], None, 'config', sys.argv[3], sys.argv[4:])"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(out), str(ROOT / "conf"), str(ROOT), f"data.root={root}"],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    assert yaml.safe_load(out.read_text())["data"]["dirs"] == {
        "text": "manifest.jsonl",
        "image": "manifest.jsonl",
        "audio": "clips",
    }
