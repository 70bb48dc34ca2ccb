"""Every third-party module the code imports comes from a distribution pyproject.toml declares itself, not one that
arrives only as another package's dependency (which a new release of that package may drop). The library and its
entry points may use the runtime dependencies and the extras; benchmarks/ and tests/ the dev group as well."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from tests.helpers.config import ROOT

LOCAL = {"fusion", "pipelines", "benchmarks", "tests", "hydra_plugins", "train"}
DEV_DIRS = ("benchmarks", "tests")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_canonical(re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)) for requirement in requirements}


def _declared() -> tuple[set[str], set[str]]:
    """(what the library may import: dependencies and extras, what benchmarks/ and tests/ may import as well)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    runtime = _names(project["project"]["dependencies"])
    runtime |= {name for extra in project["project"]["optional-dependencies"].values() for name in _names(extra)}
    return runtime, _names(project["dependency-groups"]["dev"])


def _third_party_imports(path: Path) -> set[str]:
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return {top for top in tops if top not in sys.stdlib_module_names and top not in LOCAL}


def _sources() -> list[Path]:
    tops = ["fusion", "pipelines", "hydra_plugins", *DEV_DIRS]
    return [ROOT / "train.py", *(path for top in tops for path in sorted((ROOT / top).rglob("*.py")))]


def _undeclared(path: Path, allowed: set[str], distributions: dict[str, list[str]]) -> list[str]:
    return sorted(
        f"{top} ({', '.join(distributions.get(top, ['not installed']))})"
        for top in _third_party_imports(path)
        if not {_canonical(d) for d in distributions.get(top, [])} & allowed
    )


def test_every_imported_distribution_is_declared():
    runtime, dev = _declared()
    distributions = packages_distributions()
    problems = {}
    for path in _sources():
        relative = path.relative_to(ROOT)
        allowed = runtime | dev if relative.parts[0] in DEV_DIRS else runtime
        if missing := _undeclared(path, allowed, distributions):
            problems[str(relative)] = missing
    assert not problems, f"declare these in pyproject.toml (then `uv lock`): {problems}"
    assert len(_sources()) > 100


@pytest.mark.parametrize(
    ("source", "allowed", "expected"),
    [
        ("import yaml\nfrom scipy.stats import chi2\n", {"pyyaml"}, ["scipy (scipy)"]),
        ("import os, json\nfrom fusion.meta import x\nfrom . import y\n", set(), []),
        ("import PIL.Image\n", {"pillow"}, []),
    ],
)
def test_the_check_maps_imports_to_distributions(tmp_path, source, allowed, expected):
    path = tmp_path / "module.py"
    path.write_text(source, encoding="utf-8")
    assert _undeclared(path, allowed, packages_distributions()) == expected
