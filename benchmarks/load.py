"""`python -m benchmarks.load [--quick] [key=value ...]`: the served model under load (issue 16). A tiny model is
trained on the generated sample and served by `mlflow models serve` on 127.0.0.1 with 1, 2 and 4 workers; N
clients send the request mix for T seconds; throughput, latency percentiles, errors and the server's peak memory
are reported per setting, then a client sweep (where the single-row p99 crosses the goal), hostile probes and the
in-process cost per request. Tables on the terminal, JSON in benchmarks/results/, and the section between
<!-- load:start --> and <!-- load:end --> of benchmarks/RESULTS.md. Knobs: benchmarks/load.yaml."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from benchmarks.common import Console, output_to
from benchmarks.load_clients import MEGABYTE, Watch, run_clients, summarise
from benchmarks.load_mix import KINDS, build_payloads, full_rows, rows_of
from benchmarks.load_probes import run_probes
from benchmarks.machine import describe, header, pick_device
from benchmarks.settings import load_settings
from benchmarks.tables import Table, format_markdown, format_text, verdict

CONFIG_PATH = Path(__file__).with_name("load.yaml")
ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- load:start -->", "<!-- load:end -->"
SECTION_TITLE = "## Serving under load (`python -m benchmarks.load`)"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every knob lives in benchmarks/load.yaml; override with key=value, e.g. clients=20 workers=[2].",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the quick: block): a smoke run")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override a value of benchmarks/load.yaml")
    return parser.parse_args(argv)


# ------------------------------------------------------------------ the model
def served_model(workspace: Any, settings: DictConfig, log_path: Path) -> tuple[Path, Path]:
    """Train the tiny model on the workspace's shards and write its MLflow model: (model folder, sample root)."""
    from fusion.serving.bundle import save_bundle
    from fusion.serving.pyfunc import save_bundle_model
    from fusion.stages.train import RUN_INFO, train
    from fusion.training.checkpoints import network_state

    cfg = workspace.fusion_config(list(settings.training.overrides), workspace.shards())
    with output_to(log_path):
        train(cfg)
        info = json.loads((Path(cfg.paths.output_dir) / RUN_INFO).read_text(encoding="utf-8"))
        bundle = save_bundle(
            workspace.root / "bundle", cfg, network_state(info["best_checkpoint"]), cfg.data.processed_dir
        )
        model = save_bundle_model(bundle, workspace.root / "model")
    return model, workspace.sample()


def _median_seconds(call: Any, repeats: int) -> float:
    call()  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def service_times(model_dir: Path, payloads: dict[str, list[bytes]], settings: DictConfig) -> dict[str, dict]:
    """Median seconds per kind, in process (no HTTP): the whole predict() (MLflow's schema check and the model),
    and its two parts: decoding and preprocessing the rows, and the network's forward pass."""
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(str(model_dir), model_config={"torch_threads": int(settings.torch_threads)})
    fusion_model = model.unwrap_python_model()
    decoder, bundle = fusion_model.decoder, fusion_model.bundle
    repeats, times = int(settings.service_time.repeats), {}
    for kind in KINDS:
        rows = json.loads(payloads[kind][0])["dataframe_records"]
        frame = pd.DataFrame(rows)
        samples = decoder.samples(rows)
        batch = bundle.batch(samples)
        times[kind] = {
            "total": _median_seconds(lambda frame=frame: model.predict(frame), repeats),
            "preprocess": _median_seconds(lambda rows=rows: decoder.samples(rows), repeats),
            "forward": _median_seconds(lambda batch=batch: bundle.scores(batch), repeats),
        }
    return times


# ------------------------------------------------------------------ one server, one load
def start(model_dir: Path, workers: int, settings: DictConfig, log: Path):
    from fusion.serving.server import server_env, start_model_server

    env = server_env(
        model_config={"torch_threads": int(settings.torch_threads)},
        UVICORN_TIMEOUT_WORKER_HEALTHCHECK=str(int(settings.worker_healthcheck_seconds)),
    )
    return start_model_server(
        str(model_dir),
        log,
        env,
        workers=workers,
        cwd=log.parent,
        start_timeout_seconds=float(settings.start_timeout_seconds),
        extra_args=["--timeout", str(int(settings.request_timeout_seconds))],
    )


def measure(
    url: str,
    pid: int,
    payloads: dict[str, list[bytes]],
    settings: DictConfig,
    clients: int,
    seconds: float,
    think: float,
) -> dict[str, Any]:
    """One load run against a started server: the summary, peak RSS, and the CPU used by others meanwhile."""
    with Watch(pid) as watch:
        outcomes = run_clients(
            url,
            payloads,
            dict(settings.mix),
            clients,
            seconds,
            float(settings.warmup_seconds),
            think,
            float(settings.client_timeout_seconds),
            float(settings.client_idle_seconds),
            int(settings.seed),
        )
    return {
        **summarise(outcomes, seconds, int(settings.batch_rows)),
        "clients": clients,
        "seconds": seconds,
        "think_seconds": think,
        "peak_rss_mib": watch.peak_rss / MEGABYTE,
        "others_cores": watch.others_cores,
        "ours_cores": watch.ours_cores,
        "load_average": os.getloadavg(),
    }


def meets_goal(run: dict[str, Any], goal: DictConfig) -> bool:
    p99 = run["single"]["p99"]
    return (
        run["clients"] >= int(goal.clients)
        and run["seconds"] >= float(goal.seconds)
        and run["errors"] == 0
        and run["think_seconds"] == 0
        and p99 is not None
        and p99 < float(goal.p99_seconds)
    )


# ------------------------------------------------------------------ tables
def _p(values: dict[str, Any]) -> str:
    return " / ".join("n/a" if values[k] is None else f"{values[k]:.3g}" for k in ("p50", "p95", "p99"))


def p99_met(run: dict[str, Any], goal: DictConfig) -> bool:
    return run["errors"] == 0 and run["single"]["p99"] is not None and run["single"]["p99"] < float(goal.p99_seconds)


def load_table(runs: list[dict[str, Any]], settings: DictConfig, title: str, whole_goal: bool = True) -> Table:
    check = "goal" if whole_goal else f"no error, p99 < {settings.goal.p99_seconds} s"
    table = Table(
        title,
        [
            "workers",
            "clients",
            "pause (s)",
            "s",
            "req/s",
            "rows/s",
            "single-row p50 / p95 / p99 (s)",
            f"{settings.batch_rows}-row p50 / p95 / p99 (s)",
            "errors",
            "peak RSS (MiB)",
            "others' CPU (cores)",
            check,
        ],
    )
    for run in runs:
        table.add(
            run["workers"],
            run["clients"],
            run["think_seconds"],
            run["seconds"],
            run["requests_per_second"],
            run["rows_per_second"],
            _p(run["single"]),
            _p(run["batch"]),
            run["errors"] if not run["errors"] else f"{run['errors']} {run['errors_by_kind']}",
            run["peak_rss_mib"],
            run["others_cores"],
            verdict(meets_goal(run, settings.goal) if whole_goal else p99_met(run, settings.goal)),
        )
    return table


def report_tables(report: dict[str, Any], settings: DictConfig) -> list[Table]:
    mix = ", ".join(f"{k} {v}" for k, v in settings.mix.items())
    main = load_table(report["runs"], settings, "Load: `mlflow models serve --workers W`, clients back to back")
    main.notes += [
        f"Each client sends a request, reads the answer, then pauses {settings.think_seconds} s (0: a closed loop), "
        f"for {settings.seconds} s after a {settings.warmup_seconds} s warm-up; request mix (weights): {mix}; "
        f"a batch has {settings.batch_rows} rows, each modality missing with probability "
        f"{settings.missing_probability}. Images and audio are base64 in the JSON body.",
        f"Each worker runs torch with {settings.torch_threads} thread(s) (serving.torch_threads) and MLflow's default "
        f"thread pool for requests. Peak RSS: the server's uvicorn process(es), sampled every 0.25 s.",
        "others' CPU: cores the rest of the machine (other users) kept busy during the run, on average.",
        f"goal: {settings.goal.clients} clients, {settings.goal.seconds} s, no error, single-row p99 < "
        f"{settings.goal.p99_seconds} s.",
    ]
    sweep = load_table(
        report["sweep"],
        settings,
        "Where the single-row p99 crosses the goal: fewer clients, or clients pausing between requests",
        whole_goal=False,
    )
    sweep.notes.append(
        f"The best worker setting of the table above; {settings.sweep.seconds} s per row. The last "
        f"row: {settings.goal.clients} clients pausing {settings.sweep.paced_think_seconds} s on "
        f"average (exponential) between requests, like people using an application."
    )
    service = Table(
        "In-process cost per request (mlflow.pyfunc.load_model(...).predict, no HTTP)",
        [
            "kind",
            "rows",
            "predict ms",
            "decode + preprocess ms",
            "forward ms",
            "MLflow and the rest ms",
            "ms per row",
            "requests/s per core",
        ],
    )
    for kind, parts in report["service_seconds"].items():
        rows = rows_of(kind, int(settings.batch_rows))
        total = parts["total"]
        service.add(
            kind,
            rows,
            total * 1000,
            parts["preprocess"] * 1000,
            parts["forward"] * 1000,
            max(0.0, total - parts["preprocess"] - parts["forward"]) * 1000,
            total * 1000 / rows,
            1 / total,
        )
    service.notes.append(
        "Measured in the benchmark's own process, under the same load from others as the runs; "
        f"torch with {settings.torch_threads} thread(s). Preprocessing is the training code's "
        "(fusion/preprocess/), with the base64 written to a temporary file first."
    )
    probes = Table(
        "Hostile requests (one each, 1-worker server after its load)",
        ["request", "HTTP", "seconds", "answer bytes", "server RSS growth (MiB)", "answer (start)"],
    )
    for probe in report["probes"]:
        probes.add(
            probe["probe"],
            probe["status"],
            probe["seconds"],
            probe["answer_bytes"],
            probe["rss_growth_mib"],
            probe["answer"],
        )
    return [main, sweep, service, probes]


def reading(report: dict[str, Any], settings: DictConfig) -> str:
    """What the figures say about the goal, in numbers: the CPU one request of the mix costs, the throughput that
    allows on the cores the run had, and what it means for clients sending back to back (Little's law)."""
    mix = {k: float(v) for k, v in settings.mix.items() if float(v) > 0}
    cost = sum(report["service_seconds"][k]["total"] * w for k, w in mix.items()) / sum(mix.values())
    best = max(report["runs"], key=lambda r: r["requests_per_second"])
    met = [r for r in report["sweep"] if r["think_seconds"] == 0 and p99_met(r, settings.goal)]
    paced = [r for r in report["sweep"] if r["think_seconds"] > 0]
    lines = [
        f"**Reading.** One request of this mix costs {cost * 1000:.0f} ms of CPU in the model alone (in process, "
        f"table above), so one core scores at most {1 / cost:.1f} requests/s. The best setting served "
        f"{best['requests_per_second']:.1f} requests/s with {best['workers']} worker(s) while others kept "
        f"{best['others_cores']:.2f} of the {report['machine']['cores']} cores busy. With {best['clients']} "
        f"clients sending back to back, each waits for the requests queued before its own: about "
        f"{best['clients']} / {best['requests_per_second']:.1f} = "
        f"{best['clients'] / best['requests_per_second']:.1f}"
        f" s per request on average (Little's law), so the single-row p99 of "
        f"{best['single']['p99']:.2f} s is the queue, not a slow request."
    ]
    if met:
        lines.append(
            f"Back to back, the p99 stays under {settings.goal.p99_seconds} s up to {met[-1]['clients']} "
            f"client(s) (sweep)."
        )
    for run in paced:
        lines.append(
            f"{run['clients']} clients pausing {run['think_seconds']:.0f} s between requests: "
            f"{run['requests_per_second']:.1f} requests/s, single-row p99 {run['single']['p99']:.2f} s, "
            f"{run['errors']} error(s)."
        )
    return " ".join(lines)


def markdown_section(report: dict[str, Any], tables: list[Table]) -> str:
    lines = [
        START,
        SECTION_TITLE,
        "",
        f"Run {report['started']} ({report['seconds'] / 60:.0f} min), "
        f"load average {report['load_average'][0]:.1f} at the start.",
        "",
        "```",
        header(report["machine"]),
        "```",
        "",
    ]
    lines += [format_markdown(table, heading_level=3) for table in tables]
    lines += [report.get("reading", ""), END]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, section: str) -> None:
    """Replace the text between the markers of ``path`` (appended at the end when they are missing)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if START in text and END in text:
        before, rest = text.split(START, 1)
        text = before + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------ the run
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings(args.quick, args.overrides, path=CONFIG_PATH)
    console = Console()
    machine = describe(pick_device("cpu"))
    console.print(header(machine))
    from benchmarks.workspace import Workspace

    output = ROOT / str(settings.results)
    log_path = output.with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("", encoding="utf-8")
    workspace = Workspace(settings.dataset, console, log_path, settings.workdir)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "load_average": os.getloadavg(),
        "settings": OmegaConf.to_container(settings),
        "runs": [],
        "sweep": [],
        "probes": [],
    }
    try:
        model_dir, sample_root = served_model(workspace, settings, log_path)
        payloads = build_payloads(full_rows(sample_root), settings, int(settings.seed))
        report["service_seconds"] = service_times(model_dir, payloads, settings)
        console.progress(
            "load",
            "in-process ms per request: "
            + ", ".join(f"{k} {v['total'] * 1000:.1f}" for k, v in report["service_seconds"].items()),
        )
        for workers in settings.workers:
            server = start(model_dir, int(workers), settings, workspace.root / f"server-{workers}w.log")
            try:
                run = {
                    "workers": int(workers),
                    **measure(
                        server.url,
                        server.process.pid,
                        payloads,
                        settings,
                        int(settings.clients),
                        float(settings.seconds),
                        float(settings.think_seconds),
                    ),
                }
            finally:
                server.stop()
            report["runs"].append(run)
            console.progress(
                "load",
                f"{workers} worker(s): {run['requests_per_second']:.1f} req/s, single p99 "
                f"{run['single']['p99']}, errors {run['errors']}, others {run['others_cores']:.2f}"
                f" cores",
            )
        best = min(report["runs"], key=lambda r: r["single"]["p99"] or float("inf"))["workers"]
        server = start(model_dir, best, settings, workspace.root / "server-sweep.log")
        try:
            paced = [(int(settings.goal.clients), float(settings.sweep.paced_think_seconds))]
            for clients, think in [*((int(c), 0.0) for c in settings.sweep.clients), *paced]:
                run = {
                    "workers": best,
                    **measure(
                        server.url,
                        server.process.pid,
                        payloads,
                        settings,
                        clients,
                        float(settings.sweep.seconds),
                        think,
                    ),
                }
                report["sweep"].append(run)
                console.progress(
                    "load",
                    f"sweep {clients} clients, pause {think} s: single p99 "
                    f"{run['single']['p99']}, errors {run['errors']}",
                )
        finally:
            server.stop()
        server = start(model_dir, 1, settings, workspace.root / "server-probes.log")
        try:
            report["probes"] = run_probes(
                server.url, server.process.pid, settings.probes, float(settings.client_timeout_seconds)
            )
        finally:
            server.stop()
    finally:
        workspace.close(bool(settings.keep_workdir))
    report["seconds"] = time.perf_counter() - started
    report["reading"] = reading(report, settings)
    tables = report_tables(report, settings)
    for table in tables:
        console.print(format_text(table) + "\n")
    output.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    console.print(report["reading"] + "\n")
    console.print(f"wrote {output}")
    if settings.results_markdown:
        write_markdown(ROOT / str(settings.results_markdown), markdown_section(report, tables))
        console.print(f"wrote {settings.results_markdown} (between {START} and {END})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
