"""results.json -> Markdown: per dataset, mean ± std over seeds of every system's figures, the issue's acceptance
checks, and the section of benchmarks/RESULTS.md between the accuracy markers (the rest of the file is kept)."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from benchmarks.accuracy.runner.systems import catalogue
from benchmarks.machine import header
from benchmarks.tables import MISSING, Table, format_markdown, verdict

MODALITIES = ("text", "image", "audio")
START, END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"
ACC_DECIMALS = 3
SECONDS_DECIMALS = 0
FULL_SEEDS = 3  # fewer seeds, or fewer records than a dataset's default, mark the tables preliminary
FINGERPRINT_CHARS = 12  # of the dataset folder's SHA-256 shown in the notes (results.json keeps all 64)
MARGIN_POINTS = 3.0  # issue 13: the defaults beat the better baseline by at least this many points
POINTS = 100.0  # accuracy fraction -> points
BASELINES = ("logreg", "lenet")
DEFAULTS, CPU_REFERENCE = "project", "lenet"
README = Path(__file__).resolve().parents[1] / "README.md"  # what the datasets are and how to rerun
F1_COLUMN = "macro-F1"  # only in tables of results that hold it (results.json files older than it do not)
COLUMNS = [
    "system",
    "test acc",
    F1_COLUMN,
    "fit CPU s",
    "CPU s",
    "wall s",
    "fit s",
    *(f"{m} alone" for m in MODALITIES),
    *(f"w/o {m}" for m in MODALITIES),
    "seeds",
]


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); std is None for fewer than two values, both for none."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def format_mean_std(values: Sequence[float], decimals: int) -> str:
    """ "0.733 ± 0.012" (one value: "0.733"; none: n/a)."""
    mean, std = mean_std(values)
    if mean is None:
        return MISSING
    return f"{mean:.{decimals}f}" + ("" if std is None else f" ± {std:.{decimals}f}")


def runs_of(results: Mapping[str, Any], dataset: str, system: str) -> list[dict]:
    """The successful runs of a system on a dataset, in seed order."""
    rows = [r for r in results["runs"] if r["dataset"] == dataset and r["system"] == system and not r.get("error")]
    return sorted(rows, key=lambda r: r["seed"])


def figures(results: Mapping[str, Any], dataset: str, system: str) -> dict[str, list[float]]:
    """Per figure (test_acc, test_f1_macro, cpu_seconds, wall_seconds, fit_seconds, <m> alone, w/o <m>) the values
    over seeds. The project's defaults take their "alone" values from the modality=<m> runs of the same seeds."""
    rows = runs_of(results, dataset, system)
    out: dict[str, list[float]] = {
        key: [r[key] for r in rows if r.get(key) is not None]
        for key in ("test_acc", "test_f1_macro", "fit_cpu_seconds", "cpu_seconds", "wall_seconds", "fit_seconds")
    }
    for m in MODALITIES:
        if system == DEFAULTS:
            seeds = {r["seed"] for r in rows}
            unimodal = runs_of(results, dataset, f"project-{m}")
            out[f"{m} alone"] = [r["test_acc"] for r in unimodal if r["seed"] in seeds]
        else:
            out[f"{m} alone"] = [r["alone"][m] for r in rows if r.get("alone", {}).get(m) is not None]
        out[f"w/o {m}"] = [r["without"][m] for r in rows if r.get("without", {}).get(m) is not None]
    out["seeds"] = [r["seed"] for r in rows]
    return out


def dataset_table(results: Mapping[str, Any], dataset: str, systems: Mapping[str, str]) -> Table:
    """One row per system (label from `systems`): mean ± std over seeds of each figure (macro-F1 where the runs
    recorded it)."""
    info = results["datasets"][dataset]
    with_f1 = any(r.get("test_f1_macro") is not None for r in results["runs"] if r["dataset"] == dataset)
    columns = COLUMNS if with_f1 else [c for c in COLUMNS if c != F1_COLUMN]
    table = Table(f"{dataset}: {info.get('summary', '')}", columns, notes=_notes(info, with_f1))
    for name, label in systems.items():
        values = figures(results, dataset, name)
        failures = [r for r in results["runs"] if r["dataset"] == dataset and r["system"] == name and r.get("error")]
        if not values["seeds"] and not failures:
            continue
        cells = [
            format_mean_std(values["test_acc"], ACC_DECIMALS),
            *([format_mean_std(values["test_f1_macro"], ACC_DECIMALS)] if with_f1 else []),
            format_mean_std(values["fit_cpu_seconds"], SECONDS_DECIMALS),
            format_mean_std(values["cpu_seconds"], SECONDS_DECIMALS),
            format_mean_std(values["wall_seconds"], SECONDS_DECIMALS),
            format_mean_std(values["fit_seconds"], SECONDS_DECIMALS),
            *(format_mean_std(values[f"{m} alone"], ACC_DECIMALS) for m in MODALITIES),
            *(format_mean_std(values[f"w/o {m}"], ACC_DECIMALS) for m in MODALITIES),
        ]
        seeds = ",".join(str(s) for s in values["seeds"]) or "-"
        if failures:
            seeds += f" ({len(failures)} failed: {failures[0]['error'][:120]})"
        table.add(label, *cells, seeds)
    return table


def _notes(info: Mapping[str, Any], with_f1: bool = False) -> list[str]:
    bayes = info.get("bayes_optimal_accuracy", {})
    bounds = ", ".join(f"{k} {v:.2f}" for k, v in bayes.items())
    data = f"{info.get('records', '?')} records ({_splits(info)})"
    if "seed" in info:  # a benchmark dataset's draw (a folder of one's own has none)
        data += f", dataset seed {info['seed']}"
    if info.get("modalities"):  # a folder of one's own: the project's fused runs use what it holds
        held = "+".join(info["modalities"])
        data += f", holding {held}" + (
            f" (the project's runs with modality={held})" if len(info["modalities"]) < len(MODALITIES) else ""
        )
    if info.get("fingerprint"):
        built = " (`build` prints it)" if "seed" in info else ""  # a folder of one's own was not built here
        data += f", files' fingerprint {info['fingerprint'][:FINGERPRINT_CHARS]}{built}"
    if info.get("class_counts"):
        test = info["class_counts"].get("test", {})
        data += (
            f"; long-tailed classes, the most frequent {info['class_ratio']:g} times the rarest (test records per "
            f"class: {', '.join(f'{k} {v}' for k, v in test.items())})"
        )
    if info.get("label_noise"):
        wrong = info.get("mislabeled", {})
        data += (
            f"; {info['label_noise']:.0%} of the training and validation labels wrong ({wrong.get('train', '?')} and "
            f"{wrong.get('val', '?')} records), the test labels right"
        )
    f1 = (
        ["macro-F1: the fused model's test F1 per class, averaged over the classes (each counts alike, however rare)."]
        if with_f1
        else []
    )
    return [
        f"{data}; Bayes-optimal upper bounds (dataset.json): {bounds}." if bounds else f"{data}.",
        "Mean ± sample standard deviation over the training seeds (the data and its split stay fixed).",
        *f1,
        "fit CPU s: user + system time of fitting the fused model (ours: MLflow's time/fit_cpu_seconds, the "
        "train.py process during trainer.fit; baselines: their in-process fit); the time check compares it. "
        "CPU s: user + system time of the whole run (ours: the train.py process from start-up to exit, with its "
        "loader workers, testing, the test without each modality, the explain step and model logging; "
        "baselines: in-process fit and test of the fused model, decoding excluded). wall s: the same span on the "
        "clock; the machine may be shared, so wall times are noisy. fit s: "
        "the wall clock of fitting alone (ours: MLflow's time/fit_seconds).",
        "Alone: our defaults' column is the modality=<m> run's test accuracy; logistic regression's is its model of "
        "that modality; LeNet's a LeNet trained on that modality alone. A record without the modality gets the "
        "training majority class. w/o: the fused model with that modality marked missing in every test record.",
    ]


def _splits(info: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in info.get("splits", {}).items())


def checks_table(results: Mapping[str, Any], dataset: str) -> Table:
    """Issue 13's acceptance checks on this dataset, as far as the runs allow."""
    table = Table(f"{dataset}: issue 13 acceptance checks", ["check", "figure", "verdict"])
    ours = _mean(figures(results, dataset, DEFAULTS)["test_acc"])
    best_name, best = _best(results, dataset, "test_acc")
    if ours is not None and best is not None:
        margin = (ours - best) * POINTS
        table.add(
            f"defaults beat the better baseline by ≥ {MARGIN_POINTS:g} points",
            f"{ours:.3f} vs {best:.3f} ({best_name}): {margin:+.1f} points",
            verdict(margin >= MARGIN_POINTS),
        )
    ours_cpu = _mean(figures(results, dataset, DEFAULTS)["fit_cpu_seconds"])
    reference = _mean(figures(results, dataset, CPU_REFERENCE)["fit_cpu_seconds"])
    if ours_cpu is not None and reference is not None:
        table.add(
            f"defaults train (fit CPU s) in no more CPU time than {CPU_REFERENCE}",
            f"{ours_cpu:.0f} s vs {reference:.0f} s",
            verdict(ours_cpu <= reference),
        )
    for m in MODALITIES:
        alone = _mean(figures(results, dataset, f"project-{m}")["test_acc"])
        name, baseline = _best(results, dataset, f"{m} alone")
        if alone is not None and baseline is not None:
            table.add(
                f"modality={m} reaches the better baseline's {m} alone",
                f"{alone:.3f} vs {baseline:.3f} ({name})",
                verdict(alone >= baseline),
            )
    return table


def _mean(values: Sequence[float]) -> float | None:
    return mean_std(values)[0]


def _best(results: Mapping[str, Any], dataset: str, key: str) -> tuple[str | None, float | None]:
    """The baseline with the higher mean of `key`, and that mean."""
    means = {b: _mean(figures(results, dataset, b)[key]) for b in BASELINES}
    means = {b: v for b, v in means.items() if v is not None}
    if not means:
        return None, None
    name = max(means, key=means.get)
    return name, means[name]


def section(
    results: Mapping[str, Any],
    systems: Mapping[str, str],
    command: str,
    results_path: str,
    readme_path: str = "accuracy/README.md",
) -> str:
    """The Markdown section for RESULTS.md, markers included (links as seen from the file it goes into)."""
    parts = [
        START,
        "## Accuracy on real signals (issue 13)",
        "",
        f"Written by `{command}` (finished {results.get('finished', '?')}); every raw number is in "
        f"[`{results_path}`]({results_path}). What the datasets are and how to rerun: "
        f"[`benchmarks/accuracy/README.md`]({readme_path}).",
        "",
        *_caveats(results),
        "```",
        header(results["machine"]),
        "```",
        "",
    ]
    for dataset in results["datasets"]:
        checks = checks_table(results, dataset)
        parts += [
            format_markdown(dataset_table(results, dataset, systems)),
            *([format_markdown(checks)] if checks.rows else []),
        ]
    parts.append(END)
    return "\n".join(parts) + "\n"


def _caveats(results: Mapping[str, Any]) -> list[str]:
    """Paragraphs that qualify the figures: a preliminary size, a busy machine."""
    out = []
    settings = results.get("settings", {})
    seeds, records = settings.get("seeds", []), settings.get("records")
    if len(seeds) < FULL_SEEDS or records is not None:
        out += [
            f"**Preliminary**: {records or 'default'} records per dataset, {len(seeds)} seed(s) (the benchmark's "
            f"defaults: each dataset's full size, {FULL_SEEDS} seeds).",
            "",
        ]
    load = results.get("load_average")
    if load:
        # A results.json is saved after every run, so a table of a run still going has no "finished" yet.
        finished = f"{load['finished']:.1f}" if "finished" in load else "(still running)"
        out += [
            f"Load average (1 min) when the run started / finished: {load['started']:.1f} / "
            f"{finished} on {results['machine']['cores']} cores; above the core count, other work "
            f"shared the CPU and wall times are inflated (CPU times much less).",
            "",
        ]
    return out


def replace_section(document: str, new_section: str) -> str:
    """`document` with the text between (and including) the accuracy markers replaced; appended if absent."""
    start, end = document.find(START), document.find(END)
    if start >= 0 and end > start:
        return document[:start] + new_section.rstrip("\n") + document[end + len(END) :]
    return (document.rstrip("\n") + "\n\n" if document.strip() else "") + new_section


def write_section(path: Path, new_section: str) -> None:
    """Insert or replace the section in the Markdown file at `path` (created if missing)."""
    document = path.read_text(encoding="utf-8") if path.is_file() else ""
    path.write_text(replace_section(document, new_section), encoding="utf-8")


def in_table_order(systems: Mapping[str, str]) -> dict[str, str]:
    """``systems`` (name -> label) in the catalogue's order: results.json keeps its keys sorted, so a table drawn
    again from it (``table``) would otherwise list LeNet before this project."""
    order = list(catalogue())
    return dict(sorted(systems.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))


def publish(results: Mapping[str, Any], results_path: Path, tables_path: Path, markdown: Path | None) -> str:
    """Write the section to `tables_path` and, when given, into the `markdown` file, each linking results.json and
    the benchmark's README relative to itself; the text written to `tables_path`."""
    command = results.get("command", "python -m benchmarks.accuracy run")

    def render(where: Path) -> str:
        link, readme = (_relative(target, where.parent) for target in (results_path, README))
        return section(results, in_table_order(results["systems"]), command, link, readme)

    text = render(tables_path)
    tables_path.write_text(text, encoding="utf-8")
    if markdown:
        write_section(markdown, render(markdown))
    return text


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def labels(systems: Iterable, project_overrides: Sequence[str] = ()) -> dict[str, str]:
    """name -> table label of runner.systems.System objects; this project's systems name the overrides every run
    of theirs took (``--set``, ``--quick``), so a variant's row never reads as the defaults'."""
    suffix = f", with {' '.join(project_overrides)}" if project_overrides else ""
    return {s.name: s.label + (suffix if s.kind == "project" else "") for s in systems}
