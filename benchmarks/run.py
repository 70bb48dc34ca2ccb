"""`python -m benchmarks.run [--quick] [--only a,b] [--output x.json] [--markdown x.md] [key=value ...]`:
run the benchmark sections, print one table per measurement and write every figure to JSON."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from benchmarks.common import Console, Context, SectionResult
from benchmarks.machine import describe, device_slug, header, pick_device
from benchmarks.settings import load_settings
from benchmarks.tables import format_markdown, format_text

# In run order: the dataset is generated and preprocessed by the first, and reused by the others.
SECTIONS = ("preprocess", "loader", "training", "attention", "ddp")
RESULTS_DIR = Path(__file__).with_name("results")
SECONDS_PER_MINUTE = 60


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        epilog="Every size lives in benchmarks/config.yaml; override with key=value, e.g. training.epochs=3.",
    )
    parser.add_argument("--only", help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the config's quick: block): a smoke test")
    parser.add_argument("--output", help="JSON file (default: benchmarks/results/<device>[-quick].json)")
    parser.add_argument("--markdown", help="also write the tables as Markdown to this file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override a value of benchmarks/config.yaml")
    return parser.parse_args(argv)


def selected_sections(only: str | None) -> list[str]:
    """The sections named by --only, in run order; all of them without it."""
    if not only:
        return list(SECTIONS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"error: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return [n for n in SECTIONS if n in names]


def default_output(slug: str, quick: bool) -> Path:
    return RESULTS_DIR / f"{slug}{'-quick' if quick else ''}.json"


def duration(seconds: float) -> str:
    """ "45 s" or "12 min": the scale a person waits in."""
    return f"{seconds:.0f} s" if seconds < SECONDS_PER_MINUTE * 2 else f"{seconds / SECONDS_PER_MINUTE:.0f} min"


def run_section(name: str, ctx: Context) -> tuple[SectionResult | None, str | None]:
    """The section's result, or its error (traceback in the log) so the other sections still run."""
    try:
        return importlib.import_module(f"benchmarks.{name}").run(ctx), None
    except Exception as exc:
        with open(ctx.log_path, "a", encoding="utf-8") as log:
            log.write(f"\nsection {name} failed:\n{traceback.format_exc()}")
        return None, f"{type(exc).__name__}: {exc}"


def markdown_report(report: dict[str, Any], results: dict[str, SectionResult]) -> str:
    """The whole run as Markdown: machine, then each section's tables."""
    lines = [
        "## Benchmark results",
        "",
        f"Run {report['started']}{' (--quick)' if report['quick'] else ''}.",
        "",
        "```",
        header(report["machine"]),
        "```",
        "",
    ]
    for name, section in report["sections"].items():
        lines += [f"### {name}", ""]
        if "error" in section:
            lines += [f"failed: {section['error']}", ""]
            continue
        lines += [format_markdown(table, heading_level=4) for table in results[name].tables]
    return "\n".join(lines)


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings(args.quick, args.overrides)
    sections = selected_sections(args.only)
    device = pick_device(str(settings.device))
    output = Path(args.output) if args.output else default_output(device_slug(device), args.quick)
    log_path = output.with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("", encoding="utf-8")
    console = Console()
    machine = describe(device)
    console.print(header(machine))
    expected = sum(int(settings[name].expected_seconds) for name in sections)
    console.print(
        f"Sections: {', '.join(sections)}; expected ~{duration(expected)} on an idle 2-core CPU. "
        f"Library output goes to {log_path}.\n"
    )

    from benchmarks.workspace import Workspace  # after the header: it imports the fusion package

    workspace = Workspace(settings.dataset, console, log_path, settings.workdir)
    ctx = Context(
        settings=settings, device=device, workspace=workspace, console=console, log_path=log_path, machine=machine
    )
    report: dict[str, Any] = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine,
        "settings": OmegaConf.to_container(settings),
        "sections": {},
    }
    results: dict[str, SectionResult] = {}
    try:
        for name in sections:
            console.print(f"== {name} (expected ~{duration(int(settings[name].expected_seconds))})")
            started = time.perf_counter()
            result, error = run_section(name, ctx)
            seconds = time.perf_counter() - started
            entry: dict[str, Any] = {"seconds": seconds}
            if result is None:
                entry["error"] = error
                console.print(f"{name} failed: {error} (traceback in {log_path})\n")
            else:
                results[name] = result
                entry.update(figures=result.figures, tables=[t.to_json() for t in result.tables])
                for table in result.tables:
                    console.print(format_text(table) + "\n")
            console.print(f"({name}: {duration(seconds)})\n")
            report["sections"][name] = entry
            write_json(output, report)  # after every section, so an interrupted run keeps what it measured
    finally:
        workspace.close(bool(settings.keep_workdir))
    console.print(f"wrote {output}")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown_report(report, results), encoding="utf-8")
        console.print(f"wrote {args.markdown}")
    return 1 if any("error" in s for s in report["sections"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
