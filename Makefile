# Two commands matter: `make bench` (the benchmark) and `make test` (the suite). Both create
# the virtual environment on first use.
VENV    ?= .venv
PYTHON  ?= python3
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed-stamp
EXPERIMENT ?= experiments/shortcut_ablation.toml
NAME     = $(basename $(notdir $(EXPERIMENT)))
ARGS    ?=

.PHONY: install install-unlocked lock test test-fast bench held-out report ui perf gpu-check lint clean clean-cache

LOCK     = requirements.lock

# The exact versions (with hashes) that produced the committed reports; `make lock` refreshes it.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	echo locked > $(STAMP)

install: $(STAMP)

## development against the newest versions pyproject.toml allows, not the lock
install-unlocked:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	echo unlocked > $(STAMP)

## resolve the newest allowed versions again and write them, with hashes, to requirements.lock
lock:
	$(PYTHON) -m venv .lock-venv  # pip-tools in a venv of its own, so the locked one stays exact
	.lock-venv/bin/python -m pip install --quiet pip-tools
	.lock-venv/bin/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe --extra test --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml

## the whole suite (what CI runs), in two worker processes (pytest-xdist) that take tests one
## by one, the minute-long ones first (tests/conftest.py); TEST_JOBS=0 runs it in this process.
## --maxschedchunk 1: without it, xdist hands each worker its first quarter of the tests in one
## block, so one worker got nearly every end-to-end test while the other ran the quick ones.
TEST_JOBS ?= 2
XDIST     = -n $(TEST_JOBS) --dist load --maxschedchunk 1
test: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) $(ARGS)

## the inner loop: everything but the end-to-end runs and the Ray cluster
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow and not ray" $(ARGS)

## the default experiment, the analyses of its stored nets, then its report, compared claim by
## claim with the committed one it replaces (a failed run or analysis, or a verdict that differs
## from the committed report's, makes the exit code non-zero; the report is written whatever finished)
bench: $(STAMP)
	$(BIN)/resnet-bench run $(EXPERIMENT) --analyse $(ARGS); rc=$$?; \
	$(BIN)/resnet-bench report $(NAME) --against-committed && exit $$rc

## the default's held-out seeds: fig6's runs of its depths 20 and 56 on seeds 4-7 (16 runs, about
## 13 minutes), which the default's report decides its three claims on beside its own seeds
held-out: $(STAMP)
	$(BIN)/resnet-bench run experiments/fig6.toml --set 'grid.depths=[20,56]' --set 'grid.seeds=[4,5,6,7]' $(ARGS)
	$(BIN)/resnet-bench report $(NAME)

report: $(STAMP)
	$(BIN)/resnet-bench report $(NAME)

## browse the tracked runs (MLflow 3's default store: ./mlflow.db + ./mlruns); prints the
## address of EXPERIMENT's runs first
ui: $(STAMP)
	$(BIN)/resnet-bench ui $(NAME) $(ARGS)

perf: $(STAMP)
	$(BIN)/resnet-bench perf --model resnet18 --model resnet34 --model resnet50 --image-size 64 --batch-size 32 \
		--baseline keras --pipeline --sweep $(EXPERIMENT) --set 'grid.seeds=[0,1]' \
		$(if $(DATA),--data "$(DATA)") --out reports/perf.md

## the GPU path in one command (sized for about 8 minutes on one GPU; toy sizes and a "no GPU" report elsewhere)
gpu-check: $(STAMP)
	$(BIN)/resnet-bench gpu-check --out reports/gpu.md

lint: $(STAMP)
	$(BIN)/ruff check resnet_bench tests
	$(BIN)/ruff format --check resnet_bench tests

## remove the data cache (decoded photo folders, generated sets; made again when needed): make clean keeps it
clean-cache: $(STAMP)
	$(BIN)/resnet-bench data clear-cache

clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
