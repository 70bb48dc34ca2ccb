"""Insight into a trained run: attention maps per modality and across modalities, and each modality's
contribution (removal, gates, attention mass), as figures logged to MLflow (`python -m fusion.explain`)."""
