"""DVC stage: preprocess one modality of the dataset into shards (see `--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.config import load_params, stage_parser  # noqa: E402
from fusion.data.manifest import MODALITIES, ManifestError  # noqa: E402
from fusion.preprocess.common import (  # noqa: E402
    RejectedRecordsError,
    format_rejections,
    format_summary,
    run_preprocess,
)

EPILOG = """examples:
  python pipelines/preprocess.py audio
  python pipelines/preprocess.py image data.root=/data/memes preprocess.image.size=128
  python pipelines/preprocess.py text --strict

Writes <data.processed_dir>/<modality>/ (shards, meta.json, records.jsonl, rejected.jsonl)."""


def main() -> None:
    parser = stage_parser(
        "Decode one modality's raw files into training-ready tensor shards; records "
        "that cannot be used are listed with their reason in rejected.jsonl.",
        EPILOG,
        MODALITIES,
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail if any record is rejected, keeping the previous output (preprocess.strict=true)",
    )
    args = parser.parse_args()
    cfg = load_params(args.params, [*args.overrides, *(["preprocess.strict=true"] if args.strict else [])])
    try:
        summary = run_preprocess(args.modality, cfg)
    except ManifestError as exc:
        raise SystemExit(f"error: {exc}") from None
    except RejectedRecordsError as exc:
        print(format_summary(exc.summary), file=sys.stderr)
        print(format_rejections(exc.rejections, int(cfg.preprocess.rejections_shown)), file=sys.stderr)
        raise SystemExit(f"error: {exc}") from None
    print(format_summary(summary))


if __name__ == "__main__":
    main()
