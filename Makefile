# hlstream: `make run` streams mainnet into ./data; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-faults lint bench soak demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hlstream run

demo: $(STAMP)
	$(BIN)/hlstream demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder  # a file per worker at a time, in collection order (long files first: tests/conftest.py)

test-faults: $(STAMP)
	$(BIN)/python -m pytest -q -m faults

LINTED := hlstream tests bench  # common/, services/, sim/ are links into hlstream/

lint: $(STAMP)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.throughput --profile --no-tap --no-naive --out bench/results/throughput-profiled.json
	@echo 'flame graphs: bench/results/flame-{ingest,aggregator,writer}-{per frame}x{rate}.svg (not in git)'
	$(BIN)/python -m bench.ingest_burst
	$(BIN)/python -m bench.buslat
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.relay
	$(BIN)/python -m bench.archive

soak: $(STAMP)
	$(BIN)/python -m bench.soak --minutes 30 --rate 2000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
