# Two entry points, both self-contained on a fresh clone:
#   make demo  - create .venv, install overton with the train extra (CPU torch), build the bundled sample
#                corpus and train a tiny GPT-J on it
#   make test  - the same, plus the dev extra; lint, run the tests and the demo
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.base: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0  # the small CPU build first, so '.[train]' keeps it
	$(PY) -m pip install --quiet -e '.[train]'
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install --quiet -e '.[dev,train]'
	touch $@

.PHONY: demo test lint clean
demo: $(VENV)/.base
	$(VENV)/bin/overton demo

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

test: lint
	$(VENV)/bin/pytest -n auto --dist loadfile  # one worker per core, a test file per worker
	$(MAKE) demo

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
