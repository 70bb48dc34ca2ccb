"""`python -m fusion.explain run_id=<id> sample_id=<id>`: the attention figures and modality contributions of
any sample of any logged run, from the run's MLflow model (its bundle) and the processed data."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from fusion.cli import Option, parse_key_values
from fusion.data.datamodule import MultimodalDataModule
from fusion.explain.explainer import explain_samples, sample_folder
from fusion.explain.maps import LAYERS
from fusion.explain.samples import SampleNotFound, sample_item, split_loader
from fusion.serving.bundle import BundleError, ModelBundle
from fusion.serving.resolve import RUN_ID, bundle_dir
from fusion.tracking.store import absolute_tracking_uri

REQUESTED = "explain/requested"  # the artifact folder of on-demand explanations (explain/ holds the fixed set)

OPTIONS = {
    "run_id": Option(
        None, "the MLflow run (its id, or runs:/<id>/model, or a local model / bundle folder)", required=True
    ),
    "sample_id": Option(None, "the record id(s) to explain: one id or a list [a, b] (any split)", required=True),
    "tracking_uri": Option("sqlite:///mlflow.db", "the MLflow store of the run"),
    "processed_dir": Option(None, "the processed data holding the sample (default: the run's data.processed_dir)"),
    "output": Option(None, "where the files go (default: outputs/explain/<run id>/<sample>)"),
    "layer": Option("last", f"which layer a multi-layer map shows: {' | '.join(LAYERS)}"),
    "max_tokens": Option(48, "the most tokens a cross-modal heatmap labels per axis"),
    "removal_split": Option(None, "also average the removal measures over this split (e.g. test); null: skip"),
    "log": Option(True, f"log the files to the run's artifacts under {REQUESTED}/<sample>"),
}
EPILOG = """examples:
  python -m fusion.explain run_id=3f2a... sample_id=rec-00042
  python -m fusion.explain run_id=3f2a... sample_id=[rec-00042,rec-00043] removal_split=test log=false

Writes text_attention.html/.png, image_attention.png, audio_attention.png and cross_<query>_to_<key>.png per
sample, contribution.png/.csv, summary.json and index.html (all figures on one page)."""


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_key_values(
        "python -m fusion.explain",
        "Attention figures and modality contributions of samples of a logged run.",
        OPTIONS,
        argv,
        EPILOG,
    )
    # A run's model is downloaded into a scratch folder that goes when the figures are written.
    with tempfile.TemporaryDirectory(prefix="fusion-explain-") as scratch:
        explain_run(args, scratch)


def explain_run(args: DictConfig, scratch: str) -> None:
    """The figures of ``args.sample_id`` from the model of ``args.run_id`` (downloaded into ``scratch``), printed
    and, with ``args.log``, logged to the run."""
    ids = [str(i) for i in args.sample_id] if OmegaConf.is_list(args.sample_id) else [str(args.sample_id)]
    tracking_uri = absolute_tracking_uri(str(args.tracking_uri))
    try:
        folder = bundle_dir(str(args.run_id), tracking_uri, scratch)
        bundle = ModelBundle(folder)
        processed = Path(args.processed_dir or bundle.cfg.data.processed_dir)
        datamodule = MultimodalDataModule(
            processed, bundle.modalities, batch_size=int(bundle.cfg.data.batch_size), task=bundle.labels.task
        )
        samples = [sample_item(datamodule, i) for i in ids]
    except (BundleError, SampleNotFound, FileNotFoundError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    run = str(args.run_id).split("/")[1] if str(args.run_id).startswith("runs:/") else Path(str(args.run_id)).name
    name = sample_folder(ids[0]) if len(ids) == 1 else f"{sample_folder(ids[0])}+{len(ids) - 1}"
    out = Path(args.output or Path("outputs/explain") / run / name)
    settings = OmegaConf.create({"layer": args.layer, "max_tokens": int(args.max_tokens)})
    split = args.removal_split
    summary = explain_samples(
        bundle,
        samples,
        out,
        settings,
        split_batches=split_loader(datamodule, split) if split else None,
        split_name=split or "",
    )
    for sample in summary["samples"]:
        print(f"{sample['id']}: true {sample['label']}, predicted {sample['prediction']}")
        for measure, values in sample["contribution"].items():
            print(f"  {measure}: " + ", ".join(f"{m} {v:+.3f}" for m, v in values.items()))
    print(f"figures: {out} (open {out / 'index.html'})")
    if args.log and RUN_ID.fullmatch(run):
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri).log_artifacts(run, str(out), f"{REQUESTED}/{name}")
        print(f"logged to MLflow run {run} under {REQUESTED}/{name}")


if __name__ == "__main__":
    main()
