"""Config loading shared by the entry points: Hydra composition of conf/ and params.yaml for DVC."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

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
    """params.yaml plus `key=value` dotlist overrides, e.g. data.root=/path/to/dataset. A key that params.yaml does
    not hold (a typo would otherwise be ignored) and a config group (`model/text=...`, chosen when params.yaml is
    composed) are refused with the fix; `+key=value` adds a key, as in Hydra."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: {path} not found. Run from the project root, or regenerate it with `make params`.")
    cfg = OmegaConf.load(path)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise SystemExit(f"error: overrides must look like key=value, got: {' '.join(bad)}")
    groups = [o for o in overrides if "/" in o.split("=", 1)[0]]
    if groups:
        raise SystemExit(
            f"error: {' '.join(groups)} chooses a config group, which is chosen when {path} is composed from conf/, "
            f"not in a stage's overrides: run `python -m fusion.config {' '.join(groups)}` (it rewrites {path}), "
            "then the stage"
        )
    added = [o[1:] for o in overrides if o.startswith("+")]
    OmegaConf.set_struct(cfg, True)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o for o in overrides if not o.startswith("+")]))
    except ConfigKeyError as exc:
        raise SystemExit(
            f"error: {exc.full_key} is not a parameter in {path} (a typo?); `+{exc.full_key}=...` adds a new one"
        ) from None
    OmegaConf.set_struct(cfg, False)
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(added))


def stage_parser(description: str, epilog: str, modality_choices: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The common command line of the DVC stage scripts: [modality] --params FILE key=value..."""
    parser = argparse.ArgumentParser(
        description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if modality_choices:
        parser.add_argument("modality", choices=list(modality_choices), help="which modality to process")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override a parameter of the params file, e.g. data.root=/path/to/dataset (+key=value adds one it lacks)",
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
