# One entry point. Every target bootstraps what it needs on a fresh machine:
# a .venv with the locked dependencies, and tesseract (eng+ara) through apt when missing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= --durations=15

export DAGSTER_HOME := $(CURDIR)/.dagster_home
export MLFLOW_DISABLE_TELEMETRY := true
export RAGAS_DO_NOT_TRACK := true
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE ?= 1

.PHONY: install tesseract chromium demo serve ui mlflow test lint bench lock clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@

tesseract:  ## tesseract with English, Arabic and orientation detection (OSD)
	@if ! command -v tesseract >/dev/null || ! tesseract --list-langs 2>/dev/null | grep -qx ara \
		|| ! tesseract --list-langs 2>/dev/null | grep -qx osd \
		|| ! fc-list :lang=ar 2>/dev/null | grep -q .; then \
		echo "installing tesseract-ocr with English, Arabic and OSD, and an Arabic font"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			tesseract-ocr tesseract-ocr-eng tesseract-ocr-ara tesseract-ocr-osd \
			fonts-dejavu-core fontconfig >/dev/null; \
	fi

chromium:  ## headless Chromium for the UI test (Debian's package; Playwright drives it)
	@if ! command -v chromium >/dev/null; then \
		echo "installing chromium"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			chromium >/dev/null; \
	fi

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $@

demo: install tesseract $(DAGSTER_HOME)/dagster.yaml  ## ingest the sample inbox, run the lifecycle job
	$(BIN)/llmops demo

serve: install  ## OpenAI-compatible RAG endpoint on the champion (LLMOPS_API_KEYS / LLMOPS_JWT_SECRET)
	$(BIN)/llmops serve

ui: install $(DAGSTER_HOME)/dagster.yaml  ## Dagster UI + daemon on the same instance as `make demo`
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow: install  ## MLflow UI on the embedded store (asset metadata links here: MLFLOW_UI_URL)
	$(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/.mlruns/mlflow.db} \
		-h 127.0.0.1 -p 5000

test: install tesseract chromium  ## lint + the whole test suite (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile

bench: install tesseract  ## benchmarks: ratios against baselines measured in the same run
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lock: install  ## refresh requirements.lock from requirements.in
	$(BIN)/pip install --quiet -r requirements.in
	$(BIN)/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements.lock

clean:
	rm -rf .dagster_home .data .mlruns
