# `make run` and `make test` work on a fresh machine: both create .venv first if it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean-venv

$(BIN)/lth: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(BIN)/lth

run: $(BIN)/lth
	$(BIN)/lth run

test: $(BIN)/lth
	$(BIN)/pytest -q

bench: $(BIN)/lth
	$(BIN)/python benchmarks/throughput.py

clean-venv:
	rm -rf $(VENV)
