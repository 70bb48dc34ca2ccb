"""DVC stage: the experiment as report.html (self-contained) and report.md with its figures (see `--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.report.main import main  # noqa: E402

# Same command line as `python -m fusion.report`: --params FILE, key=value overrides, options.
if __name__ == "__main__":
    main()
