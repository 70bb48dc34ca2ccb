"""`python -m fusion.search promote --study NAME --out conf/experiment/NAME.yaml [--storage URL] [--trial N]`:
write the best (or trial N's) overrides as a Hydra experiment config; `show` prints the study's trials."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence


def _default_storage() -> str:
    """hydra.sweeper.storage's default (conf/hydra/sweeper/fusion_optuna.yaml)."""
    from omegaconf import OmegaConf

    from fusion.config import CONF_DIR

    return str(OmegaConf.load(CONF_DIR / "hydra" / "sweeper" / "fusion_optuna.yaml").storage)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fusion.search", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("promote", "write a trial's overrides as conf/experiment/<name>.yaml"),
        ("show", "print the study's trials"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--study", required=True, help="hydra.sweeper.study_name of the search")
        sub.add_argument("--storage", default=None, help="the study's RDB URL (default: hydra.sweeper.storage)")
        if name == "promote":
            sub.add_argument("--out", required=True, type=Path, help="e.g. conf/experiment/best.yaml")
            sub.add_argument("--trial", type=int, default=None, help="this trial instead of the best")
    args = parser.parse_args(argv)
    import optuna

    from fusion.search.promote import promote
    from fusion.search.storage import open_storage

    storage = open_storage(
        args.storage or _default_storage(),
        heartbeat_seconds=None,
        grace_seconds=None,
        retry_failed=0,
        sqlite_timeout_seconds=60.0,
    )
    if args.command == "show":
        study = optuna.load_study(study_name=args.study, storage=storage)
        print(study.trials_dataframe().to_string(index=False))
        return
    path = promote(storage, args.study, args.out, args.trial)
    print(f"wrote {path}")
    if path.resolve().parent.name == "experiment" and path.resolve().parent.parent.name == "conf":
        print(
            f"train it: python train.py +experiment={path.stem}; for DVC: python -m fusion.config +experiment="
            f"{path.stem} (make params) then dvc repro, or dvc exp run -S +experiment={path.stem}"
        )


if __name__ == "__main__":
    main()
