"""Inference outside training: the model bundle (bundle.py), the MLflow pyfunc model that serves it
(pyfunc.py), request decoding (requests.py), model references (resolve.py) and the prediction table
(predictions.py) shared by serving, `python -m fusion.predict` and the evaluate stage."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def serving_batch_size(cfg: DictConfig) -> int:
    """Records preprocessed and scored at once when serving or predicting: ``serving.batch_size``, else the run's
    ``data.batch_size``. Kept here, free of heavy imports, so `python -m fusion.predict --help` starts fast."""
    return int(OmegaConf.select(cfg, "serving.batch_size", default=cfg.data.batch_size))
