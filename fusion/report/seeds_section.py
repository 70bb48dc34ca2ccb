"""The report's "over seeds" section: fusion/tracking/seeds.py's tables (mean ± std, intervals, significance,
fusion gain, cost) as report blocks."""

from __future__ import annotations

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from fusion.report.render import Block, Heading, Paragraph, Table
from fusion.tracking.seeds import seed_groups, seeds_cells
from fusion.tracking.store import absolute_tracking_uri


def seeds_blocks(cfg: DictConfig) -> list[Block]:
    options = cfg.get("compare", {}).get("seeds")
    if not options or not options.enabled:
        return []
    client = MlflowClient(tracking_uri=absolute_tracking_uri(cfg.logger.tracking_uri))
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    tables = seed_groups(client, experiment.experiment_id, options) if experiment else []
    if not tables:
        return []
    blocks: list[Block] = [
        Heading(2, "Over seeds", "over-seeds"),
        Paragraph(
            "Configurations (every setting but the seed) with mean ± std and the "
            f"{float(options.confidence):.0%} "
            "t-interval over seeds; `vs best`: paired bootstrap of the per-record test outcome against the best "
            "configuration (`*` significant, `n.s.` not); fusion gain over the best single-modality "
            "configuration; cost: mean seconds to the best validation value."
        ),
    ]
    for table in tables:
        header, rows = seeds_cells(table)
        blocks += [
            Heading(3, f"{table[0].task} ({table[0].metric}) over seeds", f"{table[0].task}-seeds"),
            Table(header, rows, numeric={header[2], "s to best", "cost rank"}, best_first=True),
        ]
    return blocks
