"""The package's dependencies point one way (CONTRIBUTING.md, "Layers"): read every module's imports with
`ast` and fail on an import the rules forbid; a synthetic tree shows the check fails when one is added."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Modules that import nothing of the package but each other (and the pure-matplotlib figure helpers).
CORE = ("fusion.tasks", "fusion.pretrained", "fusion.meta", "fusion.cli", "fusion.tracking.figures")
ENTRY_POINTS = ("pipelines", "train", "fusion.stages")
# importer prefix -> prefixes it must not import
FORBIDDEN = {
    "fusion.models": (
        "fusion.data",
        "fusion.preprocess",
        "fusion.training",
        "fusion.stages",
        "fusion.serving",
        "fusion.explain",
        "fusion.robustness",
        "fusion.report",
        "fusion.tracking",
        "fusion.ingest",
    ),
    "fusion.data": ("fusion.models", "fusion.training", "fusion.stages", "fusion.serving", "fusion.explain"),
    "fusion.preprocess": ("fusion.models", "fusion.training", "fusion.stages", "fusion.serving", "fusion.explain"),
    "fusion.training": ("fusion.serving", "fusion.explain", "fusion.stages", "fusion.robustness", "fusion.report"),
    "fusion.serving": ("fusion.training", "fusion.stages"),
    "fusion.explain": ("fusion.training", "fusion.stages"),
    "fusion.robustness": ("fusion.stages",),
    # writing and reporting results never loads the model or measures: the report stage stays cached on training code
    "fusion.robustness.report": ("fusion.robustness.curves", "fusion.training", "fusion.models", "fusion.data"),
    "fusion.report": ("fusion.robustness.curves", "fusion.robustness.evaluate", "fusion.training", "fusion.models"),
    "fusion.predict": ("fusion.training", "fusion.stages"),
}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> set[str]:
    """Absolute names of everything `path` imports (relative imports resolved), at any depth of the module."""
    name = module_name(path, root)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from fusion import stages`
    return found


def violations(root: Path) -> list[str]:
    """Every forbidden import in the package, `pipelines/` and `train.py` under ``root``."""
    files = [*sorted((root / "fusion").rglob("*.py")), *sorted((root / "pipelines").glob("*.py")), root / "train.py"]
    found = []
    for path in (f for f in files if f.is_file()):
        name = module_name(path, root)
        for target in sorted(imports(path, root)):
            if any(_within(name, core) for core in CORE):
                if (
                    _within(target, "fusion")
                    and target != "fusion"
                    and not any(_within(target, c) or _within(c, target) for c in CORE)
                ):
                    found.append(f"{name} imports {target}: core modules import only each other")
                continue
            for entry in ENTRY_POINTS:
                if (
                    _within(target, entry)
                    and not _within(name, entry)
                    and not _within(name, "pipelines")
                    and name != "train"
                ):
                    found.append(
                        f"{name} imports {target}: nothing in the library imports an entry point or a stage ({entry})"
                    )
            for importer, banned in FORBIDDEN.items():
                if _within(name, importer):
                    found += [
                        f"{name} imports {target}: {importer} must not import {b}" for b in banned if _within(target, b)
                    ]
    return found


def test_layers_point_one_way():
    assert violations(ROOT) == []


def test_pipelines_are_imported_by_nothing():
    files = [*(ROOT / "fusion").rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    users = [str(f.relative_to(ROOT)) for f in files if any(_within(t, "pipelines") for t in imports(f, ROOT))]
    assert users == []


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "fusion", root / "fusion", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "pipelines", root / "pipelines", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "train.py", root / "train.py")
    return root


def test_a_forbidden_import_is_caught(tmp_path):
    """The check is no tautology: a copy of the tree passes, and each kind of forbidden import makes it fail."""
    root = _copy_tree(tmp_path)
    assert violations(root) == []
    planted = {
        root / "fusion/models/leak.py": "from fusion.preprocess.text import TextProcessor\n",
        root / "fusion/serving/leak.py": "import fusion.training.module\n",
        root / "fusion/explain/leak.py": "from ..training import checkpoints\n",
        root / "fusion/tasks/leak.py": "from fusion.data import manifest\n",
        root / "fusion/data/leak.py": "def late():\n    from fusion.stages.train import train\n",
    }
    for path, source in planted.items():
        path.write_text(source, encoding="utf-8")
    found = violations(root)
    assert sorted({line.split(" imports ")[0] for line in found}) == [
        "fusion.data.leak",
        "fusion.explain.leak",
        "fusion.models.leak",
        "fusion.serving.leak",
        "fusion.tasks.leak",
    ]
    assert "fusion.explain must not import fusion.training" in " ".join(found)


WAITS = {"run", "check_output", "check_call", "call", "wait", "communicate"}


def untimed_subprocess_calls(folder: Path) -> list[str]:
    """`subprocess.run/check_output/check_call/call(...)` and `<process>.wait()/.communicate()` without timeout=."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WAITS):
                continue
            owner = ast.unparse(node.func.value)
            if node.func.attr not in ("wait", "communicate") and owner != "subprocess":
                continue
            if node.func.attr == "wait" and node.args:  # threading.Event.wait(seconds)
                continue
            if not any(keyword.arg == "timeout" for keyword in node.keywords):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_every_test_subprocess_has_a_timeout(tmp_path):
    """One hung child process must fail its test, not block CI; the check itself catches a planted call."""
    assert untimed_subprocess_calls(ROOT / "tests") == []
    (tmp_path / "test_planted.py").write_text("import subprocess\nsubprocess.run(['true'])\n", encoding="utf-8")
    assert untimed_subprocess_calls(tmp_path) == ["test_planted.py:2: subprocess.run(['true'])"]
