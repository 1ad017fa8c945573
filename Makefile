# volsight: `make run` sets everything up and opens the window; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, so the package's torch range is already satisfied (an unpinned torch may pull
# a multi-GB CUDA build). Override on a CUDA machine, e.g. TORCH_SPEC="torch==2.13.0+cu128".
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.volsight-installed

.PHONY: venv run test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: venv
	$(VENV)/bin/volsight $(ARGS)

# pytest-xvfb starts a virtual X server (Xvfb) for the GUI tests when one is installed.
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	for b in tests/benchmarks/bench_*.py; do $(PY) -m tests.benchmarks.$$(basename $$b .py) || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
