"""Confirmation of a study's leaders: retrain its best complete trials (and any named ones, e.g. trial 0, the
defaults) over several seeds on the validation split, and rank them by the mean objective. One seed's
validation accuracy on a few hundred records moves by a record or two between trials, so the single best trial
of a search is often a lucky draw; the mean over seeds is what a promotion should rest on (docs/tuning.md).
The test split is never read."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import optuna
from omegaconf import OmegaConf

from fusion.overrides import quoted_override
from fusion.search.promote import BASE_ATTR, complete_trials
from fusion.training.resume import RUN_CONFIG, RUN_INFO

TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "train.py"  # the project's training entry point
RESULTS = "confirm.json"  # written into the runs folder: every trial's per-seed objective
# Trials confirm on validation alone: without the test, none of the post-training work of a finished model runs
# (missing-modality tests, figures, logged model).
VALIDATION_ONLY = ("test_after_fit=false",)


@dataclass
class Confirmed:
    """One trial retrained over seeds: its objective per seed, in the order of the seeds."""

    trial: int
    search_value: float
    overrides: list[str]
    values: dict[int, float] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def std(self) -> float:
        """Sample standard deviation (0 for one seed)."""
        return statistics.stdev(self.values.values()) if len(self.values) > 1 else 0.0


def leaders(study: optuna.Study, top: int, also: Sequence[int] = ()) -> list[optuna.trial.FrozenTrial]:
    """The `top` best complete trials by the study's direction, then the complete trials numbered in `also`."""
    complete = complete_trials(study)
    numbers = {t.number for t in complete}
    missing = sorted(set(also) - numbers)
    if missing:
        raise SystemExit(
            f"error: trial(s) {missing} of study {study.study_name!r} are not complete; complete: {sorted(numbers)}"
        )
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    ranked = sorted(complete, key=lambda t: (sign * t.value, t.number))[:top]
    kept = {t.number for t in ranked}
    return ranked + [t for t in complete if t.number in set(also) - kept]


def trial_overrides(study: optuna.Study, trial: optuna.trial.FrozenTrial, seed: int) -> list[str]:
    """The overrides that retrain `trial` with `seed`: the search's fixed ones, the trial's own, validation only."""
    base = [o for o in study.user_attrs.get(BASE_ATTR, []) if not o.startswith("seed=")]
    return [*base, *trial.user_attrs.get("overrides", []), *VALIDATION_ONLY, f"seed={seed}"]


def confirm(
    study: optuna.Study,
    trials: Sequence[optuna.trial.FrozenTrial],
    seeds: Sequence[int],
    runs_dir: Path,
    train_value: Callable[[list[str], Path], float],
) -> list[Confirmed]:
    """Retrain each trial with each seed (`train_value(overrides, run_dir)` returns the objective) into
    `runs_dir/trial<N>-seed<S>`; returns them best mean first and writes `runs_dir/confirm.json`."""
    maximise = study.direction == optuna.study.StudyDirection.MAXIMIZE
    results = []
    for trial in trials:
        row = Confirmed(trial.number, float(trial.value), list(trial.user_attrs.get("overrides", [])))
        for seed in seeds:
            overrides = trial_overrides(study, trial, seed)
            row.values[seed] = float(train_value(overrides, runs_dir / f"trial{trial.number}-seed{seed}"))
            print(f"[confirm] trial {trial.number} seed {seed}: {row.values[seed]:.4f}", flush=True)
        results.append(row)
    results.sort(key=lambda r: (-r.mean if maximise else r.mean, r.trial))
    runs_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "study": study.study_name,
        "direction": "maximize" if maximise else "minimize",
        "seeds": list(seeds),
        "trials": [{**asdict(r), "mean": r.mean, "std": r.std} for r in results],
    }
    (runs_dir / RESULTS).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return results


def table(results: Sequence[Confirmed], seeds: Sequence[int]) -> str:
    """A Markdown table of the confirmed trials, best mean first."""
    head = ["trial", "search value", *(f"seed {s}" for s in seeds), "mean ± std", "overrides"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---:"] * (len(head) - 1) + ["---"]) + " |"]
    for r in results:
        cells = [str(r.trial), f"{r.search_value:.4f}", *(f"{r.values[s]:.4f}" for s in seeds)]
        cells += [f"{r.mean:.4f} ± {r.std:.4f}", " ".join(r.overrides) or "(the configuration itself)"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def train_objective(overrides: list[str], run_dir: Path) -> float:
    """Train with `train.py` (the entry point a search trial runs, in a process of its own) into `run_dir`;
    the objective is <task.monitor>_best, read from the run's run.json, as a search trial's."""
    if not TRAIN_SCRIPT.is_file():
        raise SystemExit(f"error: confirm retrains with {TRAIN_SCRIPT}, which is missing; run it in a project checkout")
    command = [sys.executable, str(TRAIN_SCRIPT), *overrides, quoted_override("hydra.run.dir", run_dir)]
    if subprocess.run(command, check=False).returncode != 0:
        raise SystemExit(f"error: retraining failed ({' '.join(command)}); its run folder: {run_dir}")
    key = f"{OmegaConf.load(run_dir / RUN_CONFIG).task.monitor}_best"  # the run's own resolved config
    info = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
    return float(info.get("metrics", {}).get(key, float("nan")))
