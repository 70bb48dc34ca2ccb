"""Train a fusion model: `python train.py modality=text+image fusion=late trainer=gpu` (Hydra; `--help`)."""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from fusion.stages.train import TRAINING_ERRORS, train
from fusion.training.resume import run_folder
from fusion.training.strategies import relaunches_script

SWEEP_WITH_DDP = (
    "error: trainer={} cannot run inside a -m sweep: Lightning starts the other ranks by running the "
    "same command again, so each would start the whole sweep. Run each configuration without -m "
    "(e.g. a shell loop), or sweep with one device per run."
)


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Each run writes to its own Hydra folder (a resumed run, `ckpt_path=last|<run folder>|<.ckpt>`, to the
    interrupted run's); returns <task.monitor>_best (e.g. val/acc_best) for sweeps (-m)."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN and relaunches_script(cfg.trainer):
        raise SystemExit(SWEEP_WITH_DDP.format(hydra_cfg.runtime.choices.get("trainer")))
    try:
        cfg.paths.output_dir = str(
            run_folder(cfg.ckpt_path, Path(hydra_cfg.runtime.output_dir), f"-{cfg.modality.slug}-{cfg.fusion.name}")
        )
        return train(cfg).get(f"{cfg.task.monitor}_best", float("nan"))
    except TRAINING_ERRORS as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
