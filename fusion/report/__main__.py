"""`python -m fusion.report`: see fusion/report/main.py (`--help`)."""

from fusion.report.main import main

main()
