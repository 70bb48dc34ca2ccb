"""The report step: an MLflow experiment as one self-contained HTML page and a Markdown file (runs table, training
curves, per-class F1, robustness curves, the best run's attention figures). `python -m fusion.report --help`.

collect (read the store) → document (figures and blocks) → render (HTML, Markdown) → main (config, files,
MLflow)."""
