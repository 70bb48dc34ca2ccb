"""Train a fusion model: `python train.py modality=text+image fusion=late trainer=gpu` (Hydra; `--help`)."""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fusion.training.resume import run_folder
from fusion.training.train import TRAINING_ERRORS, train


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Each run writes to its own Hydra folder (a resumed run, `ckpt_path=last|<run folder>|<.ckpt>`, to the
    interrupted run's); returns <task.monitor>_best (e.g. val/acc_best) for sweeps (-m)."""
    try:
        cfg.paths.output_dir = str(run_folder(cfg.ckpt_path, Path(HydraConfig.get().runtime.output_dir),
                                              f"-{cfg.modality.slug}-{cfg.fusion.name}"))
        return train(cfg).get(f"{cfg.task.monitor}_best", float("nan"))
    except TRAINING_ERRORS as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
