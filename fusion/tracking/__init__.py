"""Experiment tracking: MLflow logger set-up, lineage tags, figures."""
