"""Each preprocessing stage in dvc.yaml lists every module of the package it runs, so `dvc repro` re-runs the stage
when its code changes; the other modalities' processors are left out, so a change to one does not re-run another."""

import ast
from pathlib import Path

import pytest
import yaml

from tests.helpers.config import ROOT

MODALITIES = ("text", "image", "audio")
ENTRY = Path("pipelines/preprocess.py")


def _module_file(name: str) -> Path | None:
    path = Path(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def _imported(path: Path) -> set[Path]:
    """Files of the package that ``path`` imports (at the top or inside a function), package __init__s included."""
    names: list[str] = []
    for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fusion":
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names if alias.name.split(".")[0] == "fusion"]
    parents = {".".join(name.split(".")[:i]) for name in names for i in range(1, name.count(".") + 2)}
    return {file for file in map(_module_file, parents) if file is not None}


def _code_of(modality: str) -> set[Path]:
    """The closure of imports from the stage's entry point and processor, not entering the other processors."""
    others = {Path(f"fusion/preprocess/{m}.py") for m in MODALITIES if m != modality}
    seen: set[Path] = set()
    todo = [ENTRY, Path(f"fusion/preprocess/{modality}.py")]
    while todo:
        path = todo.pop()
        if path not in seen and path not in others:
            seen.add(path)
            todo += sorted(_imported(path) - seen)
    return seen


@pytest.mark.parametrize("modality", MODALITIES)
def test_a_preprocessing_stage_depends_on_all_of_its_code(modality):
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"][f"preprocess_{modality}"]["deps"]
    listed = [Path(d) for d in deps if not d.startswith("$")]
    code = _code_of(modality)
    # a package's __init__.py holds only its docstring (and fusion's, a thread-wait setting): no stage output
    missing = sorted(
        str(f) for f in code if f.name != "__init__.py" and not any(f == d or d in f.parents for d in listed)
    )
    assert not missing, f"add to preprocess_{modality}'s deps in dvc.yaml: {missing}"
    assert Path(f"fusion/preprocess/{modality}.py") in code and len(code) > 10  # the walk found the imports
    assert not any(Path(f"fusion/preprocess/{m}.py") in listed for m in MODALITIES if m != modality)
