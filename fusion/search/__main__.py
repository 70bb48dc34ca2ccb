"""`python -m fusion.search promote --study NAME --out conf/experiment/NAME.yaml [--storage URL] [--trial N]`:
write the best (or trial N's) overrides as a Hydra experiment config; `show` prints the study's trials;
`confirm --study NAME --top 3 --trials 0 --seeds 0,1,2 --out conf/experiment/NAME.yaml` retrains the leaders
over seeds on the validation split and promotes the best mean."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence


def _default_storage() -> str:
    """hydra.sweeper.storage's default (conf/hydra/sweeper/fusion_optuna.yaml)."""
    from omegaconf import OmegaConf

    from fusion.config import CONF_DIR

    return str(OmegaConf.load(CONF_DIR / "hydra" / "sweeper" / "fusion_optuna.yaml").storage)


def _numbers(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 0,1,2; got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fusion.search", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("promote", "write a trial's overrides as conf/experiment/<name>.yaml"),
        ("show", "print the study's trials"),
        ("confirm", "retrain the best trials over seeds (validation only) and promote the best mean"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--study", required=True, help="hydra.sweeper.study_name of the search")
        sub.add_argument("--storage", default=None, help="the study's RDB URL (default: hydra.sweeper.storage)")
        if name in ("promote", "confirm"):
            sub.add_argument("--out", required=True, type=Path, help="e.g. conf/experiment/best.yaml")
        if name == "promote":
            sub.add_argument("--trial", type=int, default=None, help="this trial instead of the best")
        if name == "confirm":
            sub.add_argument("--top", type=int, default=3, help="retrain this many best complete trials (default 3)")
            sub.add_argument(
                "--trials", type=_numbers, default=[], help="also these trials, e.g. 0 (the defaults, trial 0)"
            )
            sub.add_argument("--seeds", type=_numbers, default=[0, 1, 2], help="training seeds (default 0,1,2)")
            sub.add_argument(
                "--runs-dir", type=Path, default=None, help="the retrained runs (default: outputs/confirm/<study>)"
            )
    args = parser.parse_args(argv)
    import optuna

    from fusion.search.promote import PROMOTED_BY, promote
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
    if args.command == "confirm":
        from fusion.search.confirm import RESULTS, confirm, leaders, table, train_objective

        if args.top < 1 or not args.seeds:
            parser.error("confirm needs --top >= 1 and at least one seed")
        study = optuna.load_study(study_name=args.study, storage=storage)
        runs_dir = args.runs_dir or Path("outputs") / "confirm" / args.study
        results = confirm(study, leaders(study, args.top, args.trials), args.seeds, runs_dir, train_objective)
        print(table(results, args.seeds))
        print(f"per-seed values: {runs_dir / RESULTS}")
        best = results[0]
        trial = best.trial
        by = (
            f"`python -m fusion.search confirm`, the best mean on the validation split over seeds "
            f"{','.join(map(str, args.seeds))}: {best.mean:.4f} ± {best.std:.4f}"
        )
    else:
        trial, by = args.trial, PROMOTED_BY
    path = promote(storage, args.study, args.out, trial, by=by)
    print(f"wrote {path}")
    if path.resolve().parent.name == "experiment" and path.resolve().parent.parent.name == "conf":
        print(
            f"train it: python train.py +experiment={path.stem}; for DVC: python -m fusion.config +experiment="
            f"{path.stem} (make params) then dvc repro, or dvc exp run -S +experiment={path.stem}"
        )


if __name__ == "__main__":
    main()
