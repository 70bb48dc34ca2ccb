"""Robustness of a trained model to missing and noisy modalities (the `robustness` stage), after MultiBench:
perturbations.py (the noise), inputs.py (what it acts on), curves.py (the metric per level), results.py (what was
measured), scores.py (relative and effective robustness), tracking.py (MLflow), report.py (files), evaluate.py
(the stage)."""
