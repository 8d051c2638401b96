# `make run` and `make test` work on a fresh machine: both create .venv first if it is missing.
# EXTRAS: the optional dependencies installed with lth, e.g. `make test EXTRAS=test,rl` (CI) for `lth rl`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= test
comma := ,
INSTALLED := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: run test bench clean-venv

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

run: $(INSTALLED)
	$(BIN)/lth run

test: $(INSTALLED)
	$(BIN)/pytest -q

bench: $(INSTALLED)
	$(BIN)/python benchmarks/throughput.py

clean-venv:
	rm -rf $(VENV)
