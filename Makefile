# Two commands matter: `make bench` (the benchmark) and `make test` (the suite). Both create
# the virtual environment on first use.
VENV    ?= .venv
PYTHON  ?= python3
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed-stamp
EXPERIMENT ?= experiments/shortcut_ablation.toml
NAME     = $(basename $(notdir $(EXPERIMENT)))
ARGS    ?=

.PHONY: install test bench report ui perf lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## the suite (about 6 minutes on 2 cores; `make test ARGS='-m "not slow"'` for the quick part)
test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

## the default experiment, then its report (a failed run makes the exit code non-zero)
bench: $(STAMP)
	$(BIN)/resnet-bench run $(EXPERIMENT) $(ARGS); rc=$$?; \
	$(BIN)/resnet-bench report $(NAME) && exit $$rc

report: $(STAMP)
	$(BIN)/resnet-bench report $(NAME)

## browse every tracked run (MLflow 3's default store: ./mlflow.db + ./mlruns)
ui: $(STAMP)
	$(BIN)/mlflow ui

perf: $(STAMP)
	$(BIN)/resnet-bench perf --model resnet18 --model resnet34 --model resnet50 --image-size 64 --batch-size 32 \
		--baseline keras --pipeline \
		--data "$(DATA)" --out reports/perf.md

lint: $(STAMP)
	$(BIN)/ruff check resnet_bench tests
	$(BIN)/ruff format --check resnet_bench tests

clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
