"""DVC stage: generate the synthetic multimodal sample dataset (see `--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.config import load_params, stage_parser  # noqa: E402
from fusion.data.sample import format_summary, generate_sample  # noqa: E402

EPILOG = """examples:
  python pipelines/sample.py
  python pipelines/sample.py sample.num_records=200 sample.output_dir=/tmp/sample
  python pipelines/sample.py --params other_params.yaml sample.seed=1 sample.write_splits=true"""


def main() -> None:
    parser = stage_parser(
        "Generate the deterministic synthetic text/image/audio sample dataset "
        "(manifest.jsonl + text/ image/ audio/) from the `sample` parameters.",
        EPILOG,
    )
    args = parser.parse_args()
    cfg = load_params(args.params, args.overrides).sample
    print(format_summary(generate_sample(cfg, Path(cfg.output_dir))))


if __name__ == "__main__":
    main()
