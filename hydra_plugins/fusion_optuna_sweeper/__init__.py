"""The project's Optuna sweeper as a Hydra plugin: Hydra instantiates only sweeper classes defined under the
hydra_plugins package that its plugin scan found; the work is fusion/search/sweeper.py (OptunaSearch).
Settings: conf/hydra/sweeper/fusion_optuna.yaml."""

from hydra.plugins.sweeper import Sweeper

from fusion.search.sweeper import OptunaSearch


class FusionOptunaSweeper(OptunaSearch, Sweeper):
    """`hydra/sweeper: fusion_optuna` (conf/hparams_search/ selects it)."""
