"""Run lineage: the data_version tag is a content hash of the preprocessed data."""

import json
import shutil

from fusion.tracking.lineage import data_version, git_commit


def test_data_version_follows_content_not_location(processed_dir, tmp_path):
    version = data_version(processed_dir)
    assert len(version) == 12 and version == data_version(processed_dir)
    copy = tmp_path / "copy"
    shutil.copytree(processed_dir, copy)
    assert data_version(copy) == version  # another folder, same content

    meta_path = copy / "audio" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["classes"] = list(reversed(meta["classes"]))
    meta_path.write_text(json.dumps(meta))
    assert data_version(copy) != version

    shutil.rmtree(copy / "image")  # a missing modality folder changes the version too
    assert data_version(copy) not in (version, "untracked")
    assert data_version(tmp_path / "nothing") == "untracked"


def test_git_commit_outside_git(tmp_path):
    assert git_commit(tmp_path) == ("unknown", False)
