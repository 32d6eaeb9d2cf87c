# One command each: `make demo` (sets up, then runs the built-in demo) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONHASHSEED := 0

.PHONY: setup system test demo bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/cpu-constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -c requirements/cpu-constraints.txt -e '.[dev,voices,eval]'
	touch $(STAMP)

# Debian packages that corpora and their tests use when present: flite's voices, GCIDE text.
system:
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends flite dict-gcide; \
	else echo "make system: needs root and apt-get; the flite and GCIDE tests will skip"; fi

# Test files run on up to 4 processes (one per core; each file keeps its fixtures in one).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

demo: $(STAMP)
	$(BIN)/python -m jtts.demo

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
