"""Real-signal accuracy benchmark (issue 13, part 5): `python -m benchmarks.accuracy build|run|table`.

Two tri-modal datasets built offline from real signals (`datasets/`), two classic baselines implemented here
(`baselines/`: per-modality logistic regression with late fusion, a LeNet late-fusion network trained with SGD)
and a runner (`runner/`) that trains this project's defaults as a user would and writes mean ± std tables to
benchmarks/RESULTS.md. How to use it: benchmarks/accuracy/README.md.
"""
