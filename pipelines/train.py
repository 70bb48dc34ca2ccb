"""DVC stage: train the configured fusion model on the preprocessed shards (see `--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.config import load_params, stage_parser  # noqa: E402
from fusion.stages.train import TRAINING_ERRORS, train  # noqa: E402

EPILOG = """examples:
  python pipelines/train.py
  python pipelines/train.py trainer.max_epochs=2 fusion.name=late
  python pipelines/train.py test_after_fit=false ckpt_path=last   # resume a killed run, then `dvc commit train`

Reads params.yaml; writes checkpoints and run.json to paths.output_dir and logs to MLflow.
For experiments prefer `python train.py ...` (Hydra: config groups, -m sweeps)."""


def main() -> None:
    parser = stage_parser("Train the fusion model of params.yaml and track the run in MLflow.", EPILOG)
    args = parser.parse_args()
    try:
        metrics = train(load_params(args.params, args.overrides))
    except TRAINING_ERRORS as exc:
        raise SystemExit(f"error: {exc}") from None
    print({k: round(v, 4) for k, v in sorted(metrics.items())})


if __name__ == "__main__":
    main()
