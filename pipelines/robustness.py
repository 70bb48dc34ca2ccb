"""DVC stage: the trained model's robustness to missing and noisy modalities (see `--help`)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.config import load_params, stage_parser  # noqa: E402
from fusion.robustness.evaluate import evaluate_robustness  # noqa: E402

EPILOG = """examples:
  python pipelines/robustness.py
  python pipelines/robustness.py 'robustness.levels=[0.0,0.5,1.0]'
  python pipelines/robustness.py --params outputs/runs/<run>/config.yaml \
      paths.robustness_dir=outputs/runs/<run>/robustness          # a train.py run

Tests the best checkpoint of paths.checkpoint_dir on the test split with each modality removed and at each
noise level of each perturbation (conf/robustness/). Writes <paths.robustness_dir>/curves.csv (`dvc plots
show`), robustness.json (`dvc metrics show`: relative and effective robustness) and robustness.png, and logs
them to the training run in MLflow. Effective robustness needs a late-fusion run on the same data whose
robustness was evaluated with the same settings; without one it is left out and the output says how to get it."""


def main() -> None:
    parser = stage_parser("Evaluate the trained model with each modality removed and under growing noise.", EPILOG)
    args = parser.parse_args()
    print(json.dumps(evaluate_robustness(load_params(args.params, args.overrides)), indent=2))


if __name__ == "__main__":
    main()
