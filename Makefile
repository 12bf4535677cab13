# The two commands: `make run` (the proxy on example.config.yaml) and `make test` (everything
# CI runs). Both create the virtualenv they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= example.config.yaml

.PHONY: venv run mock check-config test lint typecheck fmt clean bench bench-quick

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)  ## the proxy on $(CONFIG) (port 18000)
	$(BIN)/llm-proxy serve --config $(CONFIG)

mock: $(STAMP)  ## a fake OpenAI API on 127.0.0.1:18001, for offline use
	$(BIN)/llm-proxy mock-upstream

check-config: $(STAMP)
	$(BIN)/llm-proxy check-config $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check llm_proxy tests
	$(BIN)/ruff format --check llm_proxy tests

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck  ## lint, types, then the whole test suite
	$(BIN)/pytest -q

fmt: $(STAMP)
	$(BIN)/ruff format llm_proxy tests
	$(BIN)/ruff check --fix llm_proxy tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

bench: $(STAMP)  ## direct vs bare forwarder vs llm-proxy; JSON into bench-results/
	@command -v wrk >/dev/null || (command -v apt-get >/dev/null && apt-get install -y -q wrk >/dev/null) || echo "wrk not installed: using the built-in load generator"
	$(BIN)/python -m tests.perf.bench $(BENCH_ARGS)

bench-quick: $(STAMP)  ## the same, in seconds (a smoke test of the harness)
	$(BIN)/python -m tests.perf.bench --quick
