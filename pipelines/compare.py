"""DVC stage: compare the experiment's finished training runs, one table per task (see `--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.tracking.compare import main  # noqa: E402

# Same command line as `python -m fusion.tracking.compare`: --params FILE, key=value overrides, options.
if __name__ == "__main__":
    main()
