"""Config loading shared by the entry points: Hydra composition of conf/ and params.yaml for DVC."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from fusion.data.layout import missing_dirs, register_resolvers

register_resolvers()  # ${fusion.files_dir:...} in conf/data; hydra_plugins/ registers it for `dvc exp run`
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides and resolve it, as `dvc exp run` does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def flatten(node: Any, sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """A nested dict as flat {"a<sep>b<sep>c": leaf} (lists are leaves)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, sep, f"{prefix}{key}{sep}"))
        return out
    return {prefix[: -len(sep)] if prefix else prefix: node}


def write_params(path: str | Path, overrides: Sequence[str] = ()) -> None:
    """Write the composed config to params.yaml, the file DVC stages read; a data.dirs folder that does not
    exist in the dataset stops here, with the fix, rather than in `dvc repro`."""
    cfg = compose(overrides)
    problems = missing_dirs(cfg.data.root, cfg.data.manifest, dict(cfg.data.dirs))
    if problems:
        raise SystemExit("error: " + "\n       ".join(problems))
    Path(path).write_text(OmegaConf.to_yaml(cfg), encoding="utf-8")


def load_params(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """params.yaml plus `key=value` dotlist overrides, e.g. data.root=/path/to/dataset."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: {path} not found. Run from the project root, or regenerate it with `make params`.")
    cfg = OmegaConf.load(path)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise SystemExit(f"error: overrides must look like key=value, got: {' '.join(bad)}")
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))


def stage_parser(description: str, epilog: str, modality_choices: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The common command line of the DVC stage scripts: [modality] --params FILE key=value..."""
    parser = argparse.ArgumentParser(
        description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if modality_choices:
        parser.add_argument("modality", choices=list(modality_choices), help="which modality to process")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="override a parameter, e.g. data.root=/path/to/dataset"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m fusion.config [overrides]`: regenerate params.yaml from conf/."""
    parser = argparse.ArgumentParser(description="Compose conf/ into params.yaml for DVC stages.")
    parser.add_argument("--output", default=str(PROJECT_ROOT / "params.yaml"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. modality=text+image")
    args = parser.parse_args(argv)
    write_params(args.output, args.overrides)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
