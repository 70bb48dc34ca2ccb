# Two commands do all the set-up: `make demo` (the pipeline on the sample data) and `make test`.
# Needs only Python 3.11 and git: uv is installed into .tools/ when it is not on PATH.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION ?= 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
RUN := $(UV) run --frozen
# `make sweep` trains every option of conf/fusion, comma-joined from the folder; ARGS adds Hydra overrides.
empty :=
comma := ,
FUSIONS := $(subst $(empty) $(empty),$(comma),$(sort $(basename $(notdir $(wildcard conf/fusion/*.yaml)))))
ARGS ?=
COMPARE := $(RUN) python -m fusion.tracking.compare
REPORT := $(RUN) python -m fusion.report

.PHONY: help setup demo lint test docs-check params bench ui clean sweep compare report serve search

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

setup: $(UV)  ## create .venv from uv.lock (torch 2.11 and friends)
	$(UV) sync --frozen --all-extras --compile-bytecode

demo: setup  ## run the whole DVC pipeline on the bundled sample data, then show where results are
	@# dvc.lock is the reference run's (committed); this machine's run rewrites it with its own run ids, paths and
	@# float32 training, so git is told to leave the local copy out of `git status` (docs/robustness.md, reproducibility).
	@git update-index --skip-worktree dvc.lock 2>/dev/null || true
	$(RUN) dvc repro
	@$(RUN) dvc metrics show
	@echo
	@echo "Results:"
	@echo "  metrics      outputs/evaluate/metrics.json      (dvc metrics show)"
	@echo "  plots        outputs/evaluate/plots/            (dvc plots show, then open dvc_plots/index.html)"
	@echo "  confusion    outputs/evaluate/confusion_matrix.png"
	@echo "  rejected     data/processed/*/rejected.jsonl"
	@echo "  robustness   outputs/robustness/robustness.json (scores), robustness.png, curves in dvc plots show"
	@echo "  by record    outputs/evaluate/test_records.csv  (each test record's outcome and the modalities it holds;"
	@echo "               accuracy by those modalities: test_by_modalities.json beside it)"
	@echo "  attention    outputs/evaluate/explain/index.html (figures of fixed test samples, also in MLflow)"
	@echo "  predictions  outputs/evaluate/predictions.csv   (python -m fusion.predict for new data)"
	@echo "  report       outputs/report/report.html         (every run of the experiment on one page)"
	@echo "  compare      outputs/compare/compare.md         (the committed reference sweep: results/reference/)"
	@echo "  MLflow UI    make ui   (or: $(RUN) mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1)"
	@echo "               then open http://127.0.0.1:5000"

lint: setup  ## ruff check (the rules in pyproject.toml) and ruff format --check (`ruff format .` fixes the layout)
	$(RUN) ruff check .
	$(RUN) ruff format --check .

# pytest-xdist workers for `make test`: auto = one per core; each module's tests stay on one worker (loadscope), so
# its fixtures (a trained run, a repro) are built once; TEST_WORKERS=0 runs the suite in this process
TEST_WORKERS ?= auto
test: setup lint  ## ruff check and format check, then the whole test suite (slow tests included) on every core
	$(RUN) pytest -n $(TEST_WORKERS) --dist loadscope

docs-check: setup  ## every shell command of README.md, CONTRIBUTING.md and docs/ is run or mapped to its tests
	$(RUN) pytest tests/test_docs.py

sweep: setup  ## train every conf/fusion option in one Hydra sweep (ARGS="modality=text+image ..."), then compare
	$(RUN) python train.py -m fusion=$(FUSIONS) $(ARGS)
	$(COMPARE)
	$(REPORT)

STUDY ?= fusion
search: setup  ## Optuna search conf/hparams_search/$(STUDY).yaml (resumable: rerun to continue; docs/tuning.md), then its table
	$(RUN) python train.py -m hparams_search=$(STUDY) $(ARGS)
	$(RUN) python -m fusion.search show --study $(STUDY)

compare: setup  ## table per task of every finished MLflow run, best first: outputs/compare/compare.{md,csv,png}
	$(COMPARE)

report: setup  ## the experiment as one self-contained HTML page and Markdown: outputs/report/report.{html,md}
	$(REPORT)

MODEL ?=
serve: setup  ## serve a model on 127.0.0.1:5001: make serve MODEL=runs:/<run id>/model or MODEL=models:/<name>@champion
	@test -n "$(MODEL)" || { echo "give the model: make serve MODEL=runs:/<run id>/model (run id in outputs/train/run.json) or MODEL=models:/<name>@champion (python -m fusion.register)"; exit 2; }
	MLFLOW_TRACKING_URI=sqlite:///mlflow.db $(RUN) mlflow models serve -m "$(MODEL)" --env-manager local --host 127.0.0.1 -p 5001

bench: setup  ## speed benchmarks: tables on screen, JSON in benchmarks/results/ (ARGS="--only training --quick")
	$(RUN) python -m benchmarks.run $(ARGS)

params:  ## regenerate params.yaml (what DVC stages read) from conf/
	$(RUN) python -m fusion.config

ui: setup  ## open the MLflow UI on localhost
	$(RUN) mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean:  ## remove pipeline outputs and runs (keeps .venv)
	rm -rf data outputs mlflow.db mlartifacts dvc_plots
