"""DVC stage `sample`: generate the synthetic multimodal sample dataset from params.yaml."""

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from fusion.data.sample import format_summary, generate_sample

EPILOG = """examples:
  python pipelines/sample.py
  python pipelines/sample.py sample.num_records=200 sample.output_dir=/tmp/sample
  python pipelines/sample.py --params other_params.yaml sample.seed=1 sample.write_splits=true
"""


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line interface of the stage."""
    parser = argparse.ArgumentParser(
        description="Generate the deterministic synthetic text/image/audio sample dataset "
                    "(manifest.jsonl + text/ image/ audio/) from the `sample` section of params.yaml.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="params file holding a `sample` section (default: %(default)s)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="OmegaConf dotlist overrides on the params, e.g. sample.num_records=200")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Load params, apply overrides, generate the dataset and print its summary."""
    args = parse_args(argv)
    if not args.params.is_file():
        sys.exit(f"error: params file not found: {args.params.resolve()}")
    params = OmegaConf.merge(OmegaConf.load(args.params), OmegaConf.from_dotlist(args.overrides))
    if "sample" not in params:
        sys.exit(f"error: {args.params} has no `sample` section")
    cfg = params.sample
    summary = generate_sample(cfg, Path(cfg.output_dir))
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
