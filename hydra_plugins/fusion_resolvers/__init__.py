"""Registers the project's OmegaConf resolvers when Hydra scans its plugins.

`dvc exp run` composes conf/ with Hydra itself (`.dvc/config`: hydra.enabled) after scanning `hydra_plugins`
under the repository root (DVC's `hydra.plugins_path`); importing this package is how it learns
`${fusion.files_dir:...}` (fusion/data/layout.py)."""

from fusion.data.layout import register_resolvers

register_resolvers()
