# `make run` and `make test` work on a fresh machine: both create .venv first if it is missing.
# EXTRAS picks the optional extras installed with lth (CI: `make test EXTRAS=test,ray,tensorboard,rl`, so that the
# Ray executor's, TensorBoard's and lth rl's tests run instead of skipping); the torch pin of constraints.txt holds.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= test
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: run test test-all bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

run: $(STAMP)
	$(BIN)/lth run

test: $(STAMP)
	$(BIN)/pytest -q

test-all:
	$(MAKE) test EXTRAS=test,ray,tensorboard,rl

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean-venv:
	rm -rf $(VENV)
