"""The Hydra sweeper behind `python train.py -m hparams_search=<name>`: an Optuna 5 study whose objective
launches one training job per trial (Hydra's launcher) and returns <task.monitor>_best.

Resumable: the study lives in an RDB (hydra.sweeper.storage); rerunning the command loads it and runs only
the trials still missing to n_trials (complete + pruned); a trial whose process died is marked FAIL once its
heartbeat is older than grace_seconds and its parameters are queued again. Parallel: every worker running
the same command joins the same study. Optuna is imported when a search starts, not when Hydra scans plugins."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

DIRECTIONS = {"max": "maximize", "min": "minimize"}


class SearchError(RuntimeError):
    """A search setting that cannot work; the message names the setting and the fix."""


class TrialJobError(RuntimeError):
    """A trial's training job ended with an error (the trial is marked FAIL and the search goes on)."""


class OptunaSearch:
    """The sweeper's work (setup, sweep); Hydra requires the plugin class itself to live under hydra_plugins/
    (hydra_plugins/fusion_optuna_sweeper/). Settings: conf/hydra/sweeper/fusion_optuna.yaml."""

    def __init__(self, sampler: Any = None, pruner: Any = None, **settings: Any) -> None:
        self.sampler, self.pruner = sampler, pruner  # already instantiated by Hydra from their _target_
        self.settings = OmegaConf.create(settings)
        self.config: Optional[DictConfig] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: List[str]) -> None:
        import optuna

        from fusion.search.parent import PARENT_ATTR, create_parent, tracking_client, update_parent
        from fusion.search.promote import BASE_ATTR, SEED_ATTR
        from fusion.search.space import parse_space
        from fusion.search.storage import finished_count, open_storage

        s = self.settings
        parsed = OverridesParser.create().parse_overrides(arguments)
        space = parse_space(OmegaConf.to_container(s.params) or {}, [o for o in parsed if o.is_sweep_override()])
        if not space:
            raise SearchError(
                "hydra.sweeper.params is empty: give the search space in the hparams_search file, e.g. "
                "params: {optim.optimizer.lr: tag(log, interval(1e-4, 1e-2))}"
            )
        base = [o.input_line for o in parsed if not o.is_sweep_override()]  # every trial's fixed overrides
        recorded = [o for o in base if not o.startswith("hparams_search=")]  # what promote's comment lists
        direction = s.direction or DIRECTIONS[str(self.config.task.mode)]
        storage = open_storage(
            str(s.storage), s.heartbeat_seconds, s.grace_seconds, int(s.retry_failed), float(s.sqlite_timeout_seconds)
        )
        sampler, pruner = self.sampler, self.pruner or optuna.pruners.NopPruner()
        tracking = tracking_client(self.config.logger)
        try:
            study = optuna.create_study(
                study_name=str(s.study_name), storage=storage, sampler=sampler, pruner=pruner, direction=direction
            )
            study.set_user_attr(BASE_ATTR, recorded)
            study.set_user_attr(SEED_ATTR, int(self.config.seed))
            if tracking is not None:
                study.set_user_attr(PARENT_ATTR, create_parent(*tracking, study, str(s.storage)))
            if s.get("start_from_defaults", True):
                _enqueue_defaults(study, space, self.config)
        except optuna.exceptions.DuplicatedStudyError:
            # A resumed or joining worker: a seeded sampler would replay the creator's draws (repeat trials).
            if sampler is not None:
                sampler.reseed_rng()
            study = optuna.load_study(study_name=str(s.study_name), storage=storage, sampler=sampler, pruner=pruner)
            _check_same_study(study, direction, recorded)
        parent = self._wait_for_parent(study, PARENT_ATTR) if tracking is not None else None
        n_trials, done = int(s.n_trials), finished_count(study)
        print(
            f"[search] study {study.study_name!r} in {s.storage}: {done}/{n_trials} trials finished, "
            f"direction {direction}, MLflow parent run {parent}",
            flush=True,
        )
        if done < n_trials:
            states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            study.optimize(
                lambda trial: self._objective(trial, space, base, parent),
                n_trials=n_trials - done,
                callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=states)],
                catch=(TrialJobError,),
                gc_after_trial=True,
            )
        if tracking is not None:
            update_parent(tracking[0], parent, study, n_trials)
        _print_best(study)

    def _wait_for_parent(self, study, attr: str) -> str:
        """The parent run id; a worker joining a study just created by another waits for it to be written."""
        deadline = time.monotonic() + float(self.settings.parent_wait_seconds)
        while True:
            parent = study.user_attrs.get(attr)
            if parent or time.monotonic() > deadline:
                break
            time.sleep(float(self.settings.parent_poll_seconds))
        if not parent:
            raise SearchError(
                f"study {study.study_name!r} has no MLflow parent run ({attr}) after "
                f"hydra.sweeper.parent_wait_seconds={self.settings.parent_wait_seconds}: it was created "
                f"with logger=none; search it with logger=none too, or use a new study_name"
            )
        return parent

    def _objective(self, trial, space, base: list[str], parent: str | None) -> float:
        """Launch the trial's training job; its result (or its pruning or failure) becomes the trial's."""
        import optuna

        from fusion.overrides import quoted_override
        from fusion.search.space import override_value, suggest

        values = suggest(trial, space)
        overrides = [f"{key}={override_value(value)}" for key, value in values.items()]
        trial.set_user_attr("overrides", overrides)
        s = self.settings
        link = [
            quoted_override("+search.study", s.study_name),
            quoted_override("+search.storage", s.storage),
            f"+search.trial={trial.number}",
            f"+search.trial_id={trial._trial_id}",
            f"+search.sqlite_timeout_seconds={s.sqlite_timeout_seconds}",
        ]
        if parent:
            link.append(f"+search.parent_run_id={parent}")
        print(f"[search] trial {trial.number}: {' '.join(overrides)}", flush=True)
        try:
            (ret,) = self.launcher.launch([tuple(base + overrides + link)], initial_job_idx=trial.number)
        except SystemExit as exc:  # train.py turns training errors (e.g. a non-finite loss) into SystemExit
            raise TrialJobError(f"trial {trial.number}: {exc}") from None
        run_id = _run_id(ret.cfg)
        if run_id:
            trial.set_user_attr("mlflow_run_id", run_id)
        if ret.status == JobStatus.FAILED:
            error = ret._return_value
            state = "PRUNED" if isinstance(error, optuna.TrialPruned) else "FAIL"
            self._tag_run(run_id, state)
            if state == "PRUNED":
                raise error
            raise TrialJobError(f"trial {trial.number} failed: {type(error).__name__}: {error}") from error
        value = float(ret.return_value)
        if value != value:  # nan: the monitored metric was never logged
            self._tag_run(run_id, "FAIL")
            raise TrialJobError(f"trial {trial.number}: the objective {self.config.task.monitor}_best is nan")
        self._tag_run(run_id, "COMPLETE")
        return value

    def _tag_run(self, run_id: str | None, state: str) -> None:
        """search/state on the trial's run; a pruned run is marked KILLED (Lightning ended it as FAILED)."""
        from fusion.search.parent import tracking_client
        from fusion.search.trial import STATE_TAG

        tracking = tracking_client(self.config.logger) if run_id else None
        if tracking is None:
            return
        client = tracking[0]
        client.set_tag(run_id, STATE_TAG, state)
        if state == "PRUNED":
            client.set_terminated(run_id, "KILLED")


def _enqueue_defaults(study, space, config: DictConfig) -> None:
    """The new study's first trial is the configuration the search starts from (conf/ plus the fixed overrides),
    so its best trial is at least as good as that configuration on the objective; skipped, with a note, when the
    space cannot suggest one of its values (the space should then be widened to contain it)."""
    from fusion.search.space import config_point

    point, outside = config_point(config, space)
    if outside:
        print(
            f"[search] the starting configuration is outside the search space ({', '.join(outside)}): "
            f"not tried first; widen hydra.sweeper.params to contain it",
            flush=True,
        )
        return
    study.enqueue_trial(point)
    print(f"[search] trial 0 is the starting configuration: {point}", flush=True)


def _check_same_study(study, direction: str, base: list[str]) -> None:
    from fusion.search.promote import BASE_ATTR

    if study.direction.name.lower() != direction:
        raise SearchError(
            f"study {study.study_name!r} was created to {study.direction.name.lower()}, this search "
            f"would {direction}: set hydra.sweeper.direction to match, or use a new "
            f"hydra.sweeper.study_name"
        )
    before = study.user_attrs.get(BASE_ATTR)
    if before is not None and sorted(before) != sorted(base):
        raise SearchError(
            f"study {study.study_name!r} was searched with the fixed overrides {before}, this command "
            f"gives {base}: trials would not be comparable. Rerun with the same overrides, or use a "
            f"new hydra.sweeper.study_name"
        )


def _run_id(cfg: DictConfig | None) -> str | None:
    """The trial run's MLflow run id, from run.json in its run folder (written when training starts)."""
    if cfg is None:
        return None
    info = Path(str(cfg.paths.output_dir)) / "run.json"
    return json.loads(info.read_text(encoding="utf-8")).get("run_id") if info.is_file() else None


def _print_best(study) -> None:
    import optuna

    if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        best = study.best_trial
        print(f"[search] best trial {best.number}: {best.value} with {best.params}", flush=True)
        print(
            f"[search] promote it: python -m fusion.search promote --study {study.study_name} "
            f"--out conf/experiment/<name>.yaml",
            flush=True,
        )
