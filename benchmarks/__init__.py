"""Performance benchmarks of the pipeline (`python -m benchmarks.run`): tables on the terminal, figures in JSON."""

# Before anything loads torch: the fusion package sets OpenMP's wait policy (fusion/__init__.py), which must be
# in place when torch loads OpenMP, so the benchmarks run torch as train.py and the stage scripts do.
import fusion  # noqa: F401
