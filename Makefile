# One command to set up and run, one to set up and test. Everything lands in .venv.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup lock run repro test lint ui bench bench-peers server clean serve score push pull reproduce screenshots

# requirements.lock pins every transitive dependency to the versions the suite was run with;
# the project itself is installed on top without resolving anything again.
$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv with the locked dependencies (requirements.lock)

lock:  ## re-resolve requirements.lock from pyproject.toml's pins (after changing a dependency)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu --no-header --annotation-style line \
		-o requirements.lock

run: setup  ## train on the default data with the Prefect flow, print a summary
	$(BIN)/python -m flows run

repro: setup  ## the same stages through DVC
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

test: lint  ## lint, type check and the whole test suite (what CI runs)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: setup  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# One worker and no job runner (adapters/tracking.py ui_command); another port: make ui PORT=5050
PORT = 5000
ui: setup  ## MLflow UI on http://127.0.0.1:$(PORT) for the project's tracking store
	$(BIN)/python -m flows ui --port $(PORT)

serve: setup  ## local Prefect server (http://127.0.0.1:4200) + the training and scoring deployments
	$(BIN)/python -m flows serve --start-server --port 4200

score: setup  ## batch-score the files waiting in data/incoming/ with @champion
	$(BIN)/python -m flows score

push: setup  ## dvc push data and models to the default remote (remote.url in params.yaml)
	$(BIN)/python -m flows push

pull: setup  ## dvc pull them back (e.g. in a fresh clone)
	$(BIN)/python -m flows pull

reproduce: setup  ## retrain a registered version and compare metrics: make reproduce VERSION=3
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m flows reproduce --version $(VERSION)

screenshots: setup  ## headless Chromium: Data Docs (offline), experiment and registry pages (reports/screenshots/)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python tools/ui_screenshots.py

server: setup  ## a long-lived Prefect server on 127.0.0.1:4200; flows reuse it (no start-up per run)
	@echo "In other shells: export PREFECT_API_URL=http://127.0.0.1:4200/api  (then make run / python -m flows run)"
	PREFECT_UI_ENABLED=false $(BIN)/prefect server start --host 127.0.0.1 --port 4200 --no-ui

# Every bench/*.py except helpers (_*.py) and the data generator; each prints one JSON line,
# which is also appended to bench/results.jsonl with the script name and the time.
BENCHES ?= $(filter-out bench/_% bench/synth.py,$(sort $(wildcard bench/*.py)))

bench: setup  ## run the benchmarks (the scale one takes a while at 1M rows)
	@set -e; for b in $(BENCHES); do \
		echo "== $$b" >&2; \
		out=$$(PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python $$b | tail -n 1); echo "$$out"; \
		printf '{"script": "%s", "utc": "%s", "commit": "%s", "result": %s}\n' "$$b" \
			"$$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$(git rev-parse --short HEAD)" "$$out" \
			>> bench/results.jsonl; \
	done

bench-peers: setup  ## bench/quality.py's peers: FLAML into .venv, AutoGluon into .venv-autogluon
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "flaml[automl]==2.8.0" "xgboost==2.1.4"
	test -x .venv-autogluon/bin/python || $(PYTHON) -m venv .venv-autogluon
	.venv-autogluon/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements-autogluon.txt

clean:  ## remove outputs (keeps .venv and the tracking store)
	rm -rf data/raw data/validated data/processed models metrics plots reports .pipeline
