# The README's commands. Each one sets itself up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: lint install model test browser pubsub-emulator infra-check demo bench bench-ceiling bench-gpu clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

## Build the built-in EfficientNet-Lite0 into the cache (done on first use anyway).
model: install
	$(PY) main.py model

## The main job, locally: photos into a local bucket, classified, logged, sunk into DuckDB, queried in SQL.
## The stack starts Google's Pub/Sub emulator itself and stops it at the end.
demo: pubsub-emulator model
	$(PY) main.py demo

## Google's Pub/Sub emulator is installed (Debian: google-cloud-cli-pubsub-emulator): else one line, and stop.
pubsub-emulator:
	@$(PYTHON) -m functions.local.pubsub_emulator

## Headless Chromium and its driver for the browser tests (Debian's packages; needs root or sudo).
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

## Run every test: ruff, the Python suite (its files spread over up to 4 processes, each starting and
## stopping one Pub/Sub emulator) and, beside it, the offline checks of infra/ (mostly waiting on package
## registries; their output follows the suite's). Fails if either fails.
test: pubsub-emulator install browser lint
	@mkdir -p .cache; infra/check.sh >.cache/infra-check.log 2>&1 & checks=$$!; \
	$(PY) -m pytest -q -n logical --maxprocesses 4 --dist loadfile; tests=$$?; \
	wait $$checks; infra=$$?; \
	echo "--- infra/check.sh (exit $$infra):"; cat .cache/infra-check.log; \
	exit $$(( tests != 0 || infra != 0 ))

## ruff's checks, configured in pyproject.toml.
lint: install
	$(PY) -m ruff check .

## Offline checks of infra/ and the container files: every block against the providers' schemas, tests/infra (python-hcl2, hadolint, the images' requirements resolved for their platforms) and checkov.
infra-check:
	infra/check.sh

## Benchmarks: ratios against baselines measured in the same run (hey is the HTTP load generator).
bench: install
	@command -v hey >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq hey >/dev/null; }
	$(PY) -m bench.run --quick

## Serving ceiling without a GPU: the null model over HTTP, 1 vs 2 server processes, CPU-ms per image by stage.
bench-ceiling: install
	@command -v hey >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq hey >/dev/null; }
	$(PY) -m bench.ceiling

## The same load against the GPU path (GPU_MODEL: a .keras file on a JAX host); stops at once without a GPU.
GPU_MODEL ?=
bench-gpu:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m bench.gpu --model "$(GPU_MODEL)"

clean:
	rm -rf $(VENV) .venv-infra .venv-checkov .pytest_cache
