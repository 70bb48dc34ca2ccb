"""`python -m fusion.tracking.compare`: see fusion/tracking/compare/cli.py (`--help`)."""

from fusion.tracking.compare.cli import main

main()
