"""Each stage in dvc.yaml lists every module of the package its command runs, so `dvc repro` re-runs the stage when
its code changes. The walk follows imports from the stage's entry point (at the top or inside a function) and stops
only where the stage's command cannot go, each stop named below with its reason."""

from pathlib import Path

import pytest
import yaml

from tests.helpers.config import ROOT
from tests.test_layering import imports

MODALITIES = ("text", "image", "audio")
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]

# Only an Optuna sweep (`python train.py -m search=...`) builds the pruning callback; no stage runs one.
SWEEP_ONLY = {Path("fusion/search/pruning.py")}
# train's cmd sets test_after_fit=false, so it never publishes (explain figures, serving bundle, registry):
# the evaluate stage does, and lists that code. A change there should not retrain.
PUBLISH_ONLY = {Path("fusion/explain"), Path("fusion/serving"), Path("fusion/register.py")}
NOT_RUN = {"train": PUBLISH_ONLY}


def _module_file(name: str) -> Path | None:
    path = Path(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def _imported(path: Path) -> set[Path]:
    """Files of the package that ``path`` imports (at the top or inside a function), package __init__s included."""
    names = [name for name in imports(ROOT / path, ROOT) if name.split(".")[0] == "fusion"]
    parents = {".".join(name.split(".")[:i]) for name in names for i in range(1, name.count(".") + 2)}
    return {file for file in map(_module_file, parents) if file is not None}


def _covered(path: Path, listed: set[Path]) -> bool:
    return path in listed or any(entry in path.parents for entry in listed)


def _code_of(entries: list[Path], stops: set[Path]) -> set[Path]:
    """The closure of imports from ``entries``, not entering the modules (or packages) in ``stops``."""
    seen: set[Path] = set()
    todo = list(entries)
    while todo:
        path = todo.pop()
        if path not in seen and not _covered(path, stops):
            seen.add(path)
            todo += sorted(_imported(path) - seen)
    return seen


def _missing(stage: str, code: set[Path]) -> list[str]:
    listed = {Path(d) for d in STAGES[stage]["deps"] if not d.startswith("$")}
    # a package's __init__.py holds only its docstring (and fusion's, a thread-wait setting): no stage output
    return sorted(str(f) for f in code if f.name != "__init__.py" and not _covered(f, listed))


def _entry(stage: str) -> Path:
    return Path(STAGES[stage]["cmd"].split()[1])


@pytest.mark.parametrize("modality", MODALITIES)
def test_a_preprocessing_stage_depends_on_all_of_its_code(modality):
    """The other modalities' processors are left out, so a change to one does not re-run another."""
    stage = f"preprocess_{modality}"
    others = {Path(f"fusion/preprocess/{m}.py") for m in MODALITIES if m != modality}
    code = _code_of([_entry(stage), Path(f"fusion/preprocess/{modality}.py")], others | SWEEP_ONLY)
    missing = _missing(stage, code)
    assert not missing, f"add to {stage}'s deps in dvc.yaml: {missing}"
    assert Path(f"fusion/preprocess/{modality}.py") in code and len(code) > 10  # the walk found the imports
    assert not others & set(map(Path, STAGES[stage]["deps"]))


@pytest.mark.parametrize("stage", [s for s in STAGES if not s.startswith("preprocess_")])
def test_a_stage_depends_on_all_of_the_code_it_runs(stage):
    code = _code_of([_entry(stage)], SWEEP_ONLY | NOT_RUN.get(stage, set()))
    missing = _missing(stage, code)
    assert not missing, f"add to {stage}'s deps in dvc.yaml: {missing}"
    assert len(code) > 5  # the walk found the imports


def test_the_train_stage_does_not_publish():
    """What lets train leave out the publishing code; evaluate, which publishes, depends on all of it."""
    assert "test_after_fit=false" in STAGES["train"]["cmd"].split()
    evaluate_deps = set(map(Path, STAGES["evaluate"]["deps"]))
    assert PUBLISH_ONLY <= evaluate_deps


def test_the_walk_stops_where_a_stage_cannot_go():
    """Without the stops, train reaches the publishing code and evaluate the sweep's pruning callback."""
    assert _missing("train", _code_of([_entry("train")], SWEEP_ONLY)) != []
    assert "fusion/search/pruning.py" in _missing("evaluate", _code_of([_entry("evaluate")], set()))
