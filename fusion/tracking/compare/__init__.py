"""The compare step: every finished training run of the MLflow experiment, one table per task, best first.

`python -m fusion.tracking.compare` (also `python pipelines/compare.py`, the DVC stage `compare` and
`make compare`) reads the runs, writes `compare.markdown` and `compare.csv` (params.yaml), prints the
Markdown and logs both files with a bar chart to a run named `compare` (tag kind=compare) in the experiment
`<experiment>-reports` (logger.reports_experiment), so the training experiment's table holds training runs only.
Runs with a `kind` tag (compare and report runs), unfinished runs and runs without their task's main test
metric are left out.

A run's task comes from its tag `task` or params `task/name`, `task/metric` (the main test metric key)
and `task/mode` (max or min; `task.name`-style keys are read too); runs without them are the original
task: multiclass, test/acc, max. Rows are compared only within a task.

Split along its jobs: `query` reads the runs into tables, `render` writes them (Markdown, CSV, chart), `log`
records the result as an MLflow run and `cli` is the step from the config with its command line (whose run
selection options fusion.report shares). This package re-exports their public names.
"""

from fusion.tracking.compare.cli import (
    EPILOG,
    OUTPUTS,
    build_parser,
    config_from_args,
    main,
    run_compare,
    selection_config,
    selection_parser,
)
from fusion.tracking.compare.log import COMPARE_KIND, NOTE_LIMIT, REPORTS_SUFFIX, log_comparison, reports_experiment
from fusion.tracking.compare.query import (
    DEFAULT_METRIC,
    DEFAULT_MODE,
    DEFAULT_TASK,
    EFFECTIVE_KEY,
    F1_KEY,
    RELATIVE_KEY,
    WITHOUT,
    CompareError,
    Comparison,
    Row,
    TaskTable,
    compare_runs,
)
from fusion.tracking.compare.render import (
    CSV_COLUMNS,
    ROBUSTNESS_HEADERS,
    gain_note,
    plot_comparison,
    table_cells,
    to_csv,
    to_markdown,
)

__all__ = [
    "COMPARE_KIND",
    "CSV_COLUMNS",
    "DEFAULT_METRIC",
    "DEFAULT_MODE",
    "DEFAULT_TASK",
    "EFFECTIVE_KEY",
    "EPILOG",
    "F1_KEY",
    "NOTE_LIMIT",
    "OUTPUTS",
    "RELATIVE_KEY",
    "REPORTS_SUFFIX",
    "ROBUSTNESS_HEADERS",
    "WITHOUT",
    "CompareError",
    "Comparison",
    "Row",
    "TaskTable",
    "build_parser",
    "compare_runs",
    "config_from_args",
    "gain_note",
    "log_comparison",
    "main",
    "plot_comparison",
    "reports_experiment",
    "run_compare",
    "selection_config",
    "selection_parser",
    "table_cells",
    "to_csv",
    "to_markdown",
]
