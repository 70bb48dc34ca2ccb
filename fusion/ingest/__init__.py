"""Turn the layouts datasets already come in into the pipeline's `manifest.jsonl`: `python -m fusion.ingest --help`.

One module per source format (a `FORMAT` with its name, help, layout and `add_arguments` / `ingest` functions);
all of them write through `fusion.ingest.writer.ManifestWriter`, which enforces the data contract and reports
every row it could not map, with the reason.
"""
