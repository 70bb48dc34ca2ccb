"""The `key=value` command lines of the user commands (`python -m fusion.predict`, `python -m fusion.explain`):
options in Hydra's style, with a `--help` that lists every key, its default and what it does."""

from __future__ import annotations

import argparse
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf


class Option:
    """One key of a key=value command line: its default (None = required unless ``optional``) and help."""

    def __init__(self, default: Any, help: str, required: bool = False):
        self.default, self.help, self.required = default, help, required


def parse_key_values(
    prog: str, description: str, options: Mapping[str, Option], argv: Sequence[str] | None, epilog: str = ""
) -> DictConfig:
    """Parse ``key=value`` arguments into a config of ``options`` (values typed as YAML: 3, true, null, [a, b]).
    An unknown key, a missing required one or a bare word exits with the usage and the fix."""
    keys = "\n".join(
        f"  {key}={'<required>' if o.required else _show(o.default)}\n      {o.help}" for key, o in options.items()
    )
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"keys:\n{keys}\n\n{epilog}".rstrip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("settings", nargs="*", metavar="key=value", help="settings (see keys below)")
    args = parser.parse_args(argv)
    bare = [s for s in args.settings if "=" not in s]
    if bare:
        parser.error(f"{bare[0]!r} is not key=value; e.g. {next(iter(options))}=...")
    given = OmegaConf.from_dotlist(list(args.settings))
    unknown = sorted(set(given.keys()) - set(options))
    if unknown:
        parser.error(f"unknown key {unknown[0]!r}; known keys: {', '.join(options)}")
    cfg = OmegaConf.create({key: o.default for key, o in options.items()})
    cfg = OmegaConf.merge(cfg, given)
    missing = [key for key, o in options.items() if o.required and cfg[key] in (None, "")]
    if missing:
        parser.error(f"missing {', '.join(f'{k}=...' for k in missing)} ({options[missing[0]].help})")
    return cfg


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
