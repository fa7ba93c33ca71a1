# segzoo: the whole set-up on a fresh machine is `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# Keep TensorFlow quiet and on the CPU unless asked otherwise.
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test test-all demo bench lint clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -e .
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m "slow or not slow"

# Train, evaluate, predict, export a SavedModel and segment an image with the export
# in a process without segzoo; prints where each result is (demo_out/).
demo: install
	$(VENV)/bin/segzoo demo

bench: install
	$(PIP) install -r requirements-bench.txt
	for f in benchmarks/*.py; do $(PY) $$f || exit 1; done

lint: install
	$(VENV)/bin/ruff check segzoo tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
