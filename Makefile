# Two entry points, both self-contained on a fresh clone:
#   make demo  - create .venv, install overton with the train extra (CPU torch), build the bundled sample
#                corpus and train a tiny GPT-J on it
#   make test  - the same, plus the dev extra and Chromium (for the release page's tests); lint, run the tests
#                and the demo
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

.PHONY: demo test lint browser sample-card clean
demo: $(VENV)/.base
	$(VENV)/bin/overton demo

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

# Debian's Chromium and its driver, for the tests of the release page in a real browser (tests/browser.py);
# installed only when missing, through sudo only when not root
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "make: no chromium and no apt-get: install Chromium and chromedriver" >&2; exit 1; }; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  echo "installing chromium and chromium-driver with apt-get"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null || { \
	    $$sudo apt-get update -qq && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; }

# data_cards/sample: the card, plots, page and data of the bundled sample as `overton demo` builds them, the
# living example of a card; tests/test_demo.py fails when it is out of date
SAMPLE_FILES := README.md LICENSE.md index.html plots data
sample-card: $(VENV)/.base
	tmp=$$(mktemp -d) && $(VENV)/bin/overton demo --workspace $$tmp/ws >/dev/null && \
	  (cd $$tmp/ws && $(CURDIR)/$(VENV)/bin/overton card >/dev/null) && \
	  rm -rf data_cards/sample && mkdir -p data_cards/sample && \
	  for f in $(SAMPLE_FILES); do cp -r $$tmp/ws/datasets/overton/v0001/$$f data_cards/sample/; done && rm -rf $$tmp

test: lint browser
	$(VENV)/bin/pytest -n auto --dist loadfile  # one worker per core, a test file per worker
	$(MAKE) demo

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
