"""Runs every system on every dataset and seed, times it and tabulates mean ± std into benchmarks/RESULTS.md."""
