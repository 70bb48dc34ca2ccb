"""`python -m benchmarks.accuracy build|run|table|paired|groups|variants`: build a real-signal dataset, run the accuracy
benchmark, rewrite its tables from a results.json, test a modality-alone gap record by record, break test accuracy
down by the modalities that tell each record's label, or compare variants of this project with a reference run
record by record. `--help` on each command lists its options."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Sequence

from benchmarks.accuracy.datasets.plan import MODALITIES
from benchmarks.accuracy.datasets.registry import DATASETS, DEFAULT_DATASETS

BENCHMARKS_DIR = Path(__file__).resolve().parents[1]
DEFAULT_OUT = BENCHMARKS_DIR / "results" / "accuracy"
DEFAULT_MARKDOWN = BENCHMARKS_DIR / "RESULTS.md"
DEFAULT_SEEDS = "0,1,2"
# --quick: a smoke test of the whole flow in minutes, not a measurement.
QUICK_RECORDS, QUICK_SEEDS, QUICK_EPOCHS = 100, "0", 2
QUICK_OVERRIDES = (f"trainer.max_epochs={QUICK_EPOCHS}",)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build one dataset folder (manifest.jsonl, text/, image/, audio/)")
    build.add_argument("name", choices=sorted(DATASETS))
    build.add_argument("--out", type=Path, required=True, help="the dataset folder to write (replaced if present)")
    build.add_argument("--records", type=int, help="number of records (default: the dataset's, 1500)")
    build.add_argument("--seed", type=int, default=0, help="dataset seed: same seed, same bytes (default 0)")
    build.add_argument("--quiet", action="store_true", help="no progress bar")

    run = commands.add_parser("run", help="train every system on every dataset and seed; tables to RESULTS.md")
    run.add_argument(
        "--datasets",
        default=",".join(DEFAULT_DATASETS),
        help=f"comma-separated, of {', '.join(DATASETS)}, or the folder of a dataset of your own (its "
        f"manifest.jsonl, each record with a split; named by the folder) (default: {','.join(DEFAULT_DATASETS)})",
    )
    run.add_argument("--seeds", help=f"comma-separated training seeds (default {DEFAULT_SEEDS}; --quick {QUICK_SEEDS})")
    run.add_argument(
        "--systems",
        help="comma-separated: project, project-tuned, project-text, project-image, "
        "project-audio, logreg, lenet (default: all; project-tuned when tuned.yaml "
        "has overrides)",
    )
    run.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")
    run.add_argument("--data-dir", type=Path, help="where the datasets are built or found (default <out>/data)")
    run.add_argument("--records", type=int, help=f"records per dataset (default 1500; --quick {QUICK_RECORDS})")
    run.add_argument("--dataset-seed", type=int, default=0, help="seed of the datasets (fixed across training seeds)")
    run.add_argument("--project", type=Path, help="the checkout whose train.py is measured (default: this one)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override for every run of this project (repeatable; preprocess.* keys reach its "
        "preprocessing too), e.g. --set fusion=gated: a variant measured from this checkout, named in "
        "results.json and the tables; RESULTS.md is then left alone unless --markdown names it",
    )
    run.add_argument(
        "--markdown",
        type=Path,
        help=f"Markdown file whose accuracy section is replaced (default {DEFAULT_MARKDOWN}; --quick or --set: none)",
    )
    run.add_argument("--no-markdown", action="store_true", help="leave RESULTS.md alone")
    run.add_argument("--resume", action="store_true", help="keep the successful runs of <out>/results.json")
    run.add_argument(
        "--rebuild", action="store_true", help="rebuild the datasets even if built before (after changing a builder)"
    )
    run.add_argument("--preprocess-timeout", type=float, help="seconds per preprocessing subprocess")
    run.add_argument("--train-timeout", type=float, help="seconds per train.py subprocess")
    run.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: {QUICK_RECORDS} records, seed {QUICK_SEEDS}, {QUICK_EPOCHS} epochs everywhere",
    )

    table = commands.add_parser("table", help="rewrite accuracy.md (and a Markdown section) from a results.json")
    table.add_argument("results", type=Path, help="a results.json written by `run`")
    table.add_argument("--markdown", type=Path, help="also replace the accuracy section of this Markdown file")

    paired = commands.add_parser(
        "paired",
        help="a modality alone against logistic regression, record by record (McNemar's exact test per seed)",
    )
    paired.add_argument("results", type=Path, help="a results.json written by `run` (its run folders still there)")
    paired.add_argument(
        "dataset", type=Path, help="the dataset folder those runs used (e.g. <data-dir>/avdigits-n1500-s0)"
    )
    paired.add_argument("--modalities", default=",".join(MODALITIES), help="comma-separated (default: all three)")

    groups = commands.add_parser(
        "groups",
        help="each project run's test accuracy on the records whose informative modalities are the same (the fused "
        "model against each modality alone where only that modality tells the label)",
    )
    groups.add_argument("results", type=Path, help="a results.json written by `run` (its run folders still there)")
    groups.add_argument(
        "dataset", type=Path, help="the dataset folder those runs used (e.g. <data-dir>/avnoisy-n1500-s0)"
    )
    groups.add_argument("--markdown", action="store_true", help="print a Markdown table instead of text")

    variants = commands.add_parser(
        "variants",
        help="variants of this project (runs with --set, or of other checkouts) against a reference run, record by "
        "record (paired bootstrap over the test records)",
    )
    variants.add_argument("reference", type=Path, help="the reference's results.json (e.g. a run of the defaults)")
    variants.add_argument("variants", type=Path, nargs="+", help="each variant's results.json, on the same data")
    variants.add_argument("--system", default="project", help="which system's runs to compare (default project)")
    variants.add_argument("--markdown", action="store_true", help="print a Markdown table instead of text")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python -m benchmarks.accuracy " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    {"build": _build, "run": _run, "table": _table, "paired": _paired, "groups": _groups, "variants": _variants}[
        args.command
    ](args, command)


def _build(args: argparse.Namespace, command: str) -> None:
    from benchmarks.accuracy.datasets.build import build, fingerprint
    from benchmarks.accuracy.datasets.registry import builder
    from benchmarks.accuracy.datasets.speech import SpeechError

    try:
        info = build(builder(args.name), args.out, args.records, args.seed, progress=not args.quiet)
    except SpeechError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {args.out}: {info['records']} records, present {info['present']}, splits {info['splits']}")
    print("Bayes-optimal upper bounds: " + ", ".join(f"{k} {v:.3f}" for k, v in info["bayes_optimal_accuracy"].items()))
    print(f"fingerprint {fingerprint(args.out)} (a results.json's datasets.<name>.fingerprint: the same files)")


def _run(args: argparse.Namespace, command: str) -> None:
    from benchmarks.accuracy.runner import project
    from benchmarks.accuracy.runner.run import Settings, own_dataset, run
    from benchmarks.accuracy.runner.systems import checked_overrides, select, tuned_overrides

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in datasets if d not in DATASETS and own_dataset(d) is None]
    if unknown:
        raise SystemExit(
            f"error: unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}, or give a folder "
            f"that holds a manifest.jsonl (docs/data-contract.md)"
        )
    try:
        seeds = [int(s) for s in (args.seeds or (QUICK_SEEDS if args.quick else DEFAULT_SEEDS)).split(",")]
    except ValueError:
        raise SystemExit(f"error: --seeds must be comma-separated integers, got {args.seeds!r}") from None
    overrides = checked_overrides(args.overrides)
    variant = args.quick or overrides  # not the defaults' figures: RESULTS.md only when named
    markdown = None if args.no_markdown else args.markdown or (None if variant else DEFAULT_MARKDOWN)
    settings = Settings(
        datasets=datasets,
        seeds=seeds,
        systems=select(args.systems, tuned_overrides()),
        out=args.out,
        data_dir=args.data_dir or args.out / "data",
        records=args.records or (QUICK_RECORDS if args.quick else None),
        dataset_seed=args.dataset_seed,
        checkout=(args.project or project.PROJECT_ROOT).resolve(),
        project_overrides=(*(QUICK_OVERRIDES if args.quick else ()), *overrides),
        markdown=markdown,
        resume=args.resume,
        rebuild=args.rebuild,
        preprocess_timeout=args.preprocess_timeout or project.PREPROCESS_TIMEOUT_SECONDS,
        train_timeout=args.train_timeout or project.TRAIN_TIMEOUT_SECONDS,
        command=command,
    )
    if args.quick:
        settings.baseline_epochs = QUICK_EPOCHS
    results = run(settings)
    print((settings.out / "accuracy.md").read_text(encoding="utf-8"))
    failed = [r for r in results["runs"] if r.get("error")]
    if failed:
        raise SystemExit(
            f"error: {len(failed)} run(s) failed, e.g. {failed[0]['system']} on {failed[0]['dataset']}: "
            f"{failed[0]['error']} (logs under {settings.out / 'logs'})"
        )


def _table(args: argparse.Namespace, command: str) -> None:
    from benchmarks.accuracy.runner import summary

    results = json.loads(args.results.read_text(encoding="utf-8"))
    print(summary.publish(results, args.results, args.results.parent / "accuracy.md", args.markdown))


def _paired(args: argparse.Namespace, command: str) -> None:
    from benchmarks.accuracy.baselines import rawdata
    from benchmarks.accuracy.runner import paired
    from benchmarks.tables import format_text

    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise SystemExit(f"error: unknown modality(ies) {', '.join(unknown)}; choose from {', '.join(MODALITIES)}")
    info = args.dataset / "dataset.json"
    if not info.is_file():
        raise SystemExit(f"error: {info} is missing: give the dataset folder that `build` or `run` wrote")
    name = json.loads(info.read_text(encoding="utf-8"))["name"]
    results = json.loads(args.results.read_text(encoding="utf-8"))
    data = rawdata.load(args.dataset, progress=False)
    try:
        rows = [r for m in modalities for r in paired.compare(results, args.results, data, name, m)]
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if not rows:
        raise SystemExit(f"error: {args.results} has no successful project-<modality> run of {name}")
    print(format_text(paired.table(rows)))


def _groups(args: argparse.Namespace, command: str) -> None:
    from benchmarks.accuracy.runner import groups
    from benchmarks.tables import format_markdown, format_text

    if not args.results.is_file():
        raise SystemExit(f"error: {args.results} is missing: give the results.json that `run` wrote (under its --out)")
    results = json.loads(args.results.read_text(encoding="utf-8"))
    try:
        record_groups = groups.record_groups(args.dataset)
        name = json.loads((args.dataset / "dataset.json").read_text(encoding="utf-8"))["name"]
        by_system = groups.accuracy_by_group(results, args.results, record_groups, name)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if not by_system:
        raise SystemExit(f"error: {args.results} has no successful project run of {name}")
    result = groups.table(by_system, results.get("systems", {}), name)
    print(format_markdown(result) if args.markdown else format_text(result))


def _variants(args: argparse.Namespace, command: str) -> None:
    from benchmarks.accuracy.runner import variants
    from benchmarks.tables import format_markdown, format_text

    def load(path: Path):
        if not path.is_file():
            raise SystemExit(f"error: {path} is missing: give the results.json that `run` wrote (under its --out)")
        return json.loads(path.read_text(encoding="utf-8")), path

    reference = load(args.reference)
    try:
        rows = variants.compare(reference, [load(p) for p in args.variants], args.system)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if not rows:
        raise SystemExit(
            f"error: no dataset and seed holds a successful {args.system} run in both {args.reference} and a variant"
        )
    result = variants.table(rows, *reference, args.system)
    print(format_markdown(result) if args.markdown else format_text(result))


if __name__ == "__main__":
    main()
