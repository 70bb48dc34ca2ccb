"""Hyperparameter search: an Optuna study run by `python train.py -m hparams_search=<name>` (a Hydra sweeper),
resumable and parallel through its database, pruned from the validation curve, tracked in MLflow, and promoted
to conf/experiment/ (`python -m fusion.search promote`). docs/tuning.md."""
