"""DVC stage: evaluate the trained checkpoint on the test split (see `--help`)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.config import load_params, stage_parser  # noqa: E402
from fusion.stages.evaluate import evaluate  # noqa: E402

EPILOG = """examples:
  python pipelines/evaluate.py

Writes <paths.evaluate_dir>/metrics.json (`dvc metrics show`), plots/*.csv (`dvc plots show`) and
confusion_matrix.png, and logs test metrics to the training run in MLflow."""


def main() -> None:
    parser = stage_parser("Evaluate the best checkpoint of the train stage on the test split.", EPILOG)
    args = parser.parse_args()
    print(json.dumps(evaluate(load_params(args.params, args.overrides)), indent=2))


if __name__ == "__main__":
    main()
