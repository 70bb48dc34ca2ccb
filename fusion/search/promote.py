"""Promotion: the best (or a chosen) trial's overrides as a Hydra experiment config, conf/experiment/<name>.yaml,
that `python train.py +experiment=<name>`, `python -m fusion.config +experiment=<name>` (make params) and
`dvc exp run -S +experiment=<name>` accept. Config groups (e.g. fusion) become defaults-list overrides, other
keys nested values; the seed is written too, so the file reproduces the trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf

from fusion.config import CONF_DIR

BASE_ATTR, SEED_ATTR = "base_overrides", "seed"  # study user attributes written by the sweeper


def is_group(key: str, conf_dir: Path = CONF_DIR) -> bool:
    """A key selecting an option of a config group (conf/<key>/ is a folder), e.g. fusion or model/text."""
    return (conf_dir / key.replace(".", "/")).is_dir()


PROMOTED_BY = "`python -m fusion.search promote`"


def experiment_yaml(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, conf_dir: Path = CONF_DIR, by: str = PROMOTED_BY
) -> str:
    """The YAML text of the trial's experiment config (a @package _global_ file); `by` says what chose it."""
    groups = {k: v for k, v in trial.params.items() if is_group(k, conf_dir)}
    values = OmegaConf.create({})
    for key, value in trial.params.items():
        if key not in groups:
            OmegaConf.update(values, key, value, force_add=True)
    body: dict[str, Any] = OmegaConf.to_container(values)
    seed = study.user_attrs.get(SEED_ATTR)
    if seed is not None:
        body["seed"] = seed
    base = study.user_attrs.get(BASE_ATTR, [])
    header = [
        "# @package _global_",
        f"# Promoted from Optuna study {study.study_name!r}, trial {trial.number} (objective {trial.value!r}) by {by}.",
        "# The search ran with these fixed overrides (not part of this file; add them to reproduce it exactly):",
        f"#   {' '.join(base) if base else '(none)'}",
    ]
    parts = ["\n".join(header)]
    if groups:
        parts.append(
            OmegaConf.to_yaml(
                {"defaults": [{f"override /{k.replace('.', '/')}": v} for k, v in groups.items()]}
            ).rstrip()
        )
    if body:
        parts.append(OmegaConf.to_yaml(body).rstrip())
    return "\n".join(parts) + "\n"


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's complete trials; an error that says what to do when there is none yet."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise SystemExit(
            f"error: study {study.study_name!r} has no complete trial yet; run or resume the search first "
            f"(python train.py -m hparams_search=<name>)"
        )
    return complete


def promote(storage, study_name: str, out: Path, trial_number: int | None = None, by: str = PROMOTED_BY) -> Path:
    """Write the best complete trial (or trial `trial_number`) of the study to `out`."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    complete = complete_trials(study)
    if trial_number is None:
        trial = study.best_trial
    else:
        matches = [t for t in complete if t.number == trial_number]
        if not matches:
            raise SystemExit(
                f"error: trial {trial_number} of study {study_name!r} is not complete; complete trials: "
                f"{sorted(t.number for t in complete)}"
            )
        trial = matches[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(experiment_yaml(study, trial, by=by), encoding="utf-8")
    return out
