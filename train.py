"""Train a fusion model: `python train.py modality=text+image fusion=late trainer=gpu` (Hydra; `--help`)."""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fusion.training.train import train


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Each run writes to its own Hydra folder; returns <task.monitor>_best (e.g. val/acc_best) for sweeps (-m)."""
    cfg.paths.output_dir = HydraConfig.get().runtime.output_dir
    return train(cfg).get(f"{cfg.task.monitor}_best", float("nan"))


if __name__ == "__main__":
    main()
